# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""NAT for pod traffic (masquerade and port forwarding): the interface, the backend choice.

A backend keeps its rules findable by a (pod, network) tag alone, so teardown never needs the
addresses that saved state may have lost. Everything acts on the calling thread's network
namespace: the module runs in the host namespace, tests enter a sandbox one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from ansible_collections.podnet.cni.plugins.module_utils._addr import parse_cidr, parse_ip
from ansible_collections.podnet.cni.plugins.module_utils._command import find_tool, run
from ansible_collections.podnet.cni.plugins.module_utils._errors import PodnetError

BACKENDS = ("nftables", "iptables")

# Pods reach their own subnet and multicast groups with their real address, as CNI does.
MULTICAST_V4 = "224.0.0.0/4"

# One lock for every namespace: the read-compare-write of a change must not interleave with
# another run's, and serialising across namespaces costs nothing at this rate.
LOCK_PATH = "/run/lock/podnet-nat.lock"


@dataclass(frozen=True)
class Masquerade:
    """One tagged masquerade; address or subnet is None when a backend finds only part of it."""

    pod: str
    network: str
    address: str | None
    subnet: str | None


@dataclass(frozen=True)
class PortForward:
    """Host port (on host_ip, or every local address when None) sent to a pod's address:port.

    subnet is the pod's subnet on that network: its other pods, and the pod itself, reach the
    forward through the host (hairpin) and are masqueraded so the replies come back the same way.
    """

    pod: str
    protocol: str
    host_ip: str | None
    host_port: int
    address: str
    port: int
    subnet: str

    @property
    def key(self) -> tuple[str | None, str, int]:
        return (self.host_ip, self.protocol, self.host_port)

    def overlaps(self, other: PortForward) -> bool:
        """rkt's rule: same protocol and host port, and either host IP is "any" or both equal."""
        return (
            self.protocol == other.protocol
            and self.host_port == other.host_port
            and (self.host_ip is None or other.host_ip is None or self.host_ip == other.host_ip)
        )


class Nat(Protocol):
    name: str

    def ensure_masquerade(self, pod: str, network: str, address: str, subnet: str) -> bool: ...

    def has_masquerade(self, pod: str, network: str, address: str, subnet: str) -> bool: ...

    def remove_masquerade(self, pod: str, network: str | None = None) -> bool: ...

    def masquerades(self) -> list[Masquerade]: ...

    def ensure_forwards(self, pod: str, forwards: list[PortForward]) -> bool: ...

    def has_forwards(self, pod: str, forwards: list[PortForward]) -> bool: ...

    def remove_forwards(self, pod: str) -> bool: ...

    def forwards(self) -> list[PortForward]: ...


class NatBackend:
    """The change flow both backends share: lock, read, plan, apply only when the plan is not
    empty. A backend supplies the planners (its lines for a change, [] when the kernel already
    holds it), the listings and the one-transaction apply; every call acts on the calling
    thread's network namespace."""

    name = ""

    def ensure_masquerade(self, pod: str, network: str, address: str, subnet: str) -> bool:
        address, subnet = masquerade_target(address, subnet)
        what = f'masquerade {address} for pod "{pod}" on network "{network}"'
        return self._change(what, self._plan_masquerade, pod, network, address, subnet)

    def has_masquerade(self, pod: str, network: str, address: str, subnet: str) -> bool:
        address, subnet = masquerade_target(address, subnet)
        return not self._plan_masquerade(pod, network, address, subnet)

    def remove_masquerade(self, pod: str, network: str | None = None) -> bool:
        on = f' on network "{network}"' if network else ""
        what = f'remove the masquerade of pod "{pod}"{on}'
        return self._change(what, self._plan_unmasquerade, pod, network)

    def ensure_forwards(self, pod: str, forwards: list[PortForward]) -> bool:
        forwards = [check_forward(f) for f in forwards]
        return self._change(f'port forwards of pod "{pod}"', self._plan_forwards, pod, forwards)

    def has_forwards(self, pod: str, forwards: list[PortForward]) -> bool:
        forwards = [check_forward(f) for f in forwards]
        return not self._plan_forwards(pod, forwards)

    def remove_forwards(self, pod: str) -> bool:
        what = f'remove the port forwards of pod "{pod}"'
        return self._change(what, self._plan_forwards, pod, [])

    def _change(self, what: str, planner, *args) -> bool:
        # Read and plan under the lock, so no other run changes the rules in between.
        with nat_lock():
            lines = planner(*args)
            if not lines:
                return False
            self._apply(lines, what)
        return True

    def masquerades(self) -> list[Masquerade]:
        raise NotImplementedError

    def forwards(self) -> list[PortForward]:
        raise NotImplementedError

    def _plan_masquerade(self, pod: str, network: str, address: str, subnet: str) -> list[str]:
        raise NotImplementedError

    def _plan_unmasquerade(self, pod: str, network: str | None) -> list[str]:
        raise NotImplementedError

    def _plan_forwards(self, pod: str, forwards: list[PortForward]) -> list[str]:
        raise NotImplementedError

    def _apply(self, lines: list[str], what: str) -> None:
        raise NotImplementedError


def nat_backend(prefer: str = "auto") -> Nat:
    """The backend to use: "auto" takes nftables when `nft` works, else iptables."""
    if prefer not in ("auto", *BACKENDS):
        raise PodnetError(
            f'NAT backend "{prefer}" is unknown: use "auto", "nftables" or "iptables"'
        )

    wanted = BACKENDS if prefer == "auto" else (prefer,)
    reasons = []
    for name in wanted:
        backend, reason = _probe(name)
        if backend is not None:
            return backend
        reasons.append(reason)
    raise PodnetError("no usable NAT backend: " + "; ".join(reasons))


def usable_backends() -> list[Nat]:
    """Every backend that works here, so a teardown can sweep rules left by the other one."""
    found = []
    for name in BACKENDS:
        backend, _reason = _probe(name)
        if backend is not None:
            found.append(backend)
    return found


def _probe(name: str) -> tuple[Nat | None, str]:
    # Imported here: the backends import this module's shared pieces.
    if name == "nftables":
        from ansible_collections.podnet.cni.plugins.module_utils._nat_nft import NftNat

        nft = find_tool("nft")
        if nft is None:
            return None, "nftables: the nft command is not installed"
        rc, _out, err = run([nft, "list", "tables"], check=False)
        if rc != 0:
            return None, f"nftables: `nft list tables` failed: {err.strip()}"
        return NftNat(nft), ""

    from ansible_collections.podnet.cni.plugins.module_utils._nat_iptables import IptablesNat

    save, restore = find_tool("iptables-save"), find_tool("iptables-restore")
    if save is None or restore is None:
        return None, "iptables: iptables-save or iptables-restore is not installed"
    rc, _out, err = run([save, "-t", "nat"], check=False)
    if rc != 0:
        return None, f"iptables: `iptables-save -t nat` failed: {err.strip()}"
    return IptablesNat(save, restore), ""


@contextlib.contextmanager
def nat_lock() -> Iterator[None]:
    """Hold the NAT lock for one read-compare-write; best effort if /run/lock is unusable."""
    try:
        os.makedirs(os.path.dirname(LOCK_PATH), exist_ok=True)
        handle = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        yield
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)


def check_tag_name(kind: str, value: str) -> str:
    """Pod and network names end up quoted inside rule comments: refuse what would break out."""
    if (
        not isinstance(value, str)
        or not value
        or not value.isascii()
        or not value.isprintable()
        or any(char in value for char in " \"'\\")
    ):
        raise PodnetError(
            f"masquerade: {kind} name {value!r} cannot be used as a rule tag: it must be "
            "printable ASCII without spaces, quotes or backslashes"
        )
    return value


def masquerade_tag(pod: str, network: str, comment: str, limit: int, backend: str) -> str:
    """A pod's masquerade tag as a backend renders it, refused when the backend would cut it."""
    check_tag_name("pod", pod)
    check_tag_name("network", network)
    if len(comment) > limit:
        raise PodnetError(
            f'masquerade for pod "{pod}" on network "{network}": the tag "{comment}" is longer '
            f"than the {limit} characters {backend} keeps in a comment"
        )
    return comment


def masquerade_target(address: str, subnet: str) -> tuple[str, str]:
    """Normalise (pod address, pod subnet): '10.1.0.7', '10.1.0.7/24' -> '10.1.0.0/24'."""
    try:
        ip = parse_ip(address)
        network = parse_cidr(subnet)
    except ValueError as exc:
        raise PodnetError(f"masquerade: {exc}") from exc

    if ip.version != 4 or network.version != 4:
        raise PodnetError(
            f"masquerade: only IPv4 is supported so far (address {address}, subnet {subnet})"
        )
    return str(ip), str(network.cidr)


FORWARD_PROTOCOLS = ("tcp", "udp")


def check_forward(forward: PortForward) -> PortForward:
    """Normalise one forward for a backend: IPv4 only, ports 1-65535, tcp or udp."""
    check_tag_name("pod", forward.pod)
    where = f'port forward of pod "{forward.pod}"'
    if forward.protocol not in FORWARD_PROTOCOLS:
        raise PodnetError(f'{where}: protocol "{forward.protocol}" is not tcp or udp')
    for label, port in (("host port", forward.host_port), ("pod port", forward.port)):
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise PodnetError(f"{where}: {label} {port!r} is not a port number (1-65535)")
    try:
        host_ip = None if forward.host_ip is None else parse_ip(forward.host_ip)
        address, subnet = parse_ip(forward.address), parse_cidr(forward.subnet)
    except ValueError as exc:
        raise PodnetError(f"{where}: {exc}") from exc
    if any(ip is not None and ip.version != 4 for ip in (host_ip, address, subnet)):
        raise PodnetError(f"{where}: only IPv4 forwards are supported so far")
    return PortForward(
        forward.pod,
        forward.protocol,
        None if host_ip is None else str(host_ip),
        forward.host_port,
        str(address),
        forward.port,
        str(subnet.cidr),
    )
