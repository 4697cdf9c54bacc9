# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""Network namespaces: create, enter and remove them in-process, without forking.

A namespace is pinned by bind-mounting its nsfs file onto a path (iproute2's /run/netns
convention), so it outlives the thread that made it and `ip netns exec` can use it.
Entering is a `setns` on the calling thread only; netlink sockets opened while inside stay
bound to that namespace after the thread returns, which is how one process manages many pods.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import threading
from collections.abc import Iterator

from ansible_collections.podnet.cni.plugins.module_utils._errors import NetlinkError

NETNS_DIR = "/run/netns"

_CLONE_NEWNET = 0x40000000
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_SHARED = 1 << 20
_MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def default_path(pod: str, netns_dir: str = NETNS_DIR) -> str:
    """The namespace path iproute2 would use for a pod name."""
    return os.path.join(netns_dir, pod)


def is_netns(path: str) -> bool:
    """True when path is a pinned network namespace (an nsfs file), not a plain file."""
    try:
        return os.stat(path).st_dev == os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return False


def identity(path: str) -> tuple[int, int]:
    """(device, inode) of a namespace file: equal for two paths naming the same namespace."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def current_path() -> str:
    """The calling thread's own network namespace."""
    return f"/proc/{os.getpid()}/task/{threading.get_native_id()}/ns/net"


def _ensure_shared_dir(netns_dir: str) -> None:
    """Make netns_dir a shared mount, as iproute2 does, so every mount namespace sees pods."""
    os.makedirs(netns_dir, mode=0o755, exist_ok=True)
    target = netns_dir.encode()
    if _libc.mount(b"none", target, None, _MS_SHARED | _MS_REC, None) == 0:
        return
    if ctypes.get_errno() != errno.EINVAL:
        return  # not fatal: bind mounts still work in this mount namespace
    if _libc.mount(target, target, b"none", _MS_BIND | _MS_REC, None) == 0:
        _libc.mount(b"none", target, None, _MS_SHARED | _MS_REC, None)


def create(path: str) -> None:
    """Create a new network namespace pinned at path; fail if path already exists."""
    _ensure_shared_dir(os.path.dirname(path))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444)
    except FileExistsError as exc:
        raise NetlinkError(f'cannot create namespace "{path}": it already exists') from exc
    os.close(fd)
    failure: list[OSError] = []

    def unshare_and_pin() -> None:
        # unshare() moves only this short-lived thread; the caller's namespace is untouched.
        try:
            _check(_libc.unshare(_CLONE_NEWNET), "unshare(CLONE_NEWNET)")
            source = f"/proc/self/task/{threading.get_native_id()}/ns/net".encode()
            _check(_libc.mount(source, path.encode(), None, _MS_BIND, None), "bind mount")
        except OSError as exc:
            failure.append(exc)

    worker = threading.Thread(target=unshare_and_pin, name="podnet-netns")
    worker.start()
    worker.join()
    if failure:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise NetlinkError(f'cannot create namespace "{path}": {failure[0]}')


def delete(path: str) -> bool:
    """Unpin and remove a namespace file; a missing one is success. True if one was removed."""
    if not os.path.lexists(path):
        return False
    _libc.umount2(path.encode(), _MNT_DETACH)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


@contextlib.contextmanager
def entered(path: str) -> Iterator[None]:
    """Run the body with the calling thread inside the namespace at path, then come back."""
    home = os.open(current_path(), os.O_RDONLY)
    try:
        try:
            target = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise NetlinkError(f'cannot open namespace "{path}": {exc.strerror}') from exc
        try:
            _check(_libc.setns(target, _CLONE_NEWNET), f'setns into "{path}"')
        finally:
            os.close(target)
        try:
            yield
        finally:
            _check(_libc.setns(home, _CLONE_NEWNET), "setns back to the host namespace")
    finally:
        os.close(home)
