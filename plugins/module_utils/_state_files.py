# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""Atomic JSON files and an advisory lock, for everything podnet.cni keeps on disk."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator

from ansible_collections.podnet.cni.plugins.module_utils._errors import PodnetError


def write_json(path: str, content: object, mode: int = 0o644) -> None:
    """Write JSON so readers see the old file or the new one, never a torn one."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(content, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str, text: str, mode: int = 0o644) -> None:
    """Write a text file atomically (temp file in the same dir, then rename)."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: str, kind: type | None = None) -> object | None:
    """The parsed file, or None when it does not exist; a damaged one is a clear error."""
    try:
        with open(path) as handle:
            content = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise PodnetError(f"state file {path} cannot be read: {exc}") from exc
    if kind is not None and not isinstance(content, kind):
        raise PodnetError(
            f"state file {path} is damaged: expected a JSON {kind.__name__}, "
            f"found {type(content).__name__}"
        )
    return content


@contextlib.contextmanager
def locked(directory: str) -> Iterator[None]:
    """Hold an exclusive flock on <directory>/lock (a separate, stable file) for the body."""
    os.makedirs(directory, exist_ok=True)
    fd = os.open(os.path.join(directory, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
