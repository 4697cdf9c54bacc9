# Sourced by the scripts: the environment that makes the venv and the collection visible.
# shellcheck shell=bash
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${PODNET_VENV:-$repo/.venv}
export PATH="$venv/bin:/usr/sbin:/sbin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$venv/collections"
export PYTHONPATH="$venv/collections${PYTHONPATH:+:$PYTHONPATH}"
export ANSIBLE_PYTHON_INTERPRETER="$venv/bin/python"
export ANSIBLE_LOCALHOST_WARNING=false
export ANSIBLE_INVENTORY_UNPARSED_WARNING=false
