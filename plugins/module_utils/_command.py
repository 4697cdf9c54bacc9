# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""Running host tools (nft, iptables, CNI plugins) as argument lists, never shell strings."""

from __future__ import annotations

import os
import shutil
import subprocess

from ansible_collections.podnet.cni.plugins.module_utils._errors import CommandError

# Where tools live on Debian even when PATH is minimal (Ansible may run with a bare PATH).
_SBIN = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


def find_tool(name: str) -> str | None:
    """Return the path of a host tool, looking in sbin dirs that a minimal PATH may lack."""
    found = shutil.which(name)
    if found:
        return found
    for directory in _SBIN:
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def run(
    argv: list[str],
    stdin: str | None = None,
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> tuple[int, str, str]:
    """Run argv in the calling thread's network namespace; raise CommandError if check fails.

    A command still running after timeout seconds is killed and reported as failed (rc 124).
    """
    try:
        completed = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            env={**os.environ, "LC_ALL": "C", **(env or {})},
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise CommandError(argv, 124, "", f"no answer within {timeout:g} s: killed") from None
    if check and completed.returncode != 0:
        raise CommandError(argv, completed.returncode, completed.stdout, completed.stderr)
    return completed.returncode, completed.stdout, completed.stderr
