"""Offline stand-in for the get-pip script that ansible-test downloads for its sanity venvs.

scripts/test installs it into ~/.ansible/test/cache/ under the name ansible-test looks for.
It bootstraps pip from the interpreter's own ensurepip, then installs what was asked from the
package index the machine is configured for.
"""

from __future__ import annotations

import os
import subprocess
import sys

GET_PIP_ONLY_FLAGS = ("--no-setuptools", "--no-wheel")


def main() -> int:
    # ensurepip wipes PIP_* settings from os.environ, so run it in a child and keep our own copy.
    env = dict(os.environ)
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
    wanted = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_FLAGS]
    return subprocess.call([sys.executable, "-m", "pip", "install", "--upgrade", *wanted], env=env)


if __name__ == "__main__":
    sys.exit(main())
