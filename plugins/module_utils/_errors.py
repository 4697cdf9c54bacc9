# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""Errors that carry what a user needs to fix their input: the thing, the field, the value."""

from __future__ import annotations


class PodnetError(Exception):
    """A failure to report to the user as is, without a traceback."""


class ConfError(PodnetError):
    """A network conf is invalid: names the file (or network), the field and the value."""

    def __init__(self, where: str, field: str | None, value: object, reason: str) -> None:
        self.where = where
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(self.render())

    def render(self) -> str:
        head = self.where
        if self.field:
            head += f': field "{self.field}"'
        if self.value is not None:
            return f"{head}: {self.reason} (value: {self.value!r})"
        return f"{head}: {self.reason}"


class IpamError(PodnetError):
    """Address management failed (exhausted range, taken address, bad request)."""


class NetlinkError(PodnetError):
    """A kernel operation failed; the message says which and on what."""


class CommandError(PodnetError):
    """An external command (nft, iptables, a CNI plugin) failed."""

    def __init__(self, argv: list[str], rc: int, stdout: str, stderr: str) -> None:
        self.argv = argv
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        detail = (stderr or stdout).strip()
        super().__init__(f"command {' '.join(argv)!r} failed (rc={rc}): {detail}")
