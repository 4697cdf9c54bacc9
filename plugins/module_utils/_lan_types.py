# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""What macvlan and ipvlan share: a pod interface made on a host "master" link, on its LAN.

The pod gets a link of its own on the master's segment, with no host-side link and no host
routing in between: the pod is a neighbour of the LAN's hosts. The kernel never delivers
traffic between such a link and the master itself, so the pod cannot reach the host through
it (rkt documents this). Teardown needs only the pod side: a pod whose master has gone away
must still come off its network (bugs.md C07).
"""

from __future__ import annotations

import errno
import hashlib
import os
from dataclasses import dataclass

from ansible_collections.podnet.cni.plugins.module_utils import _netns
from ansible_collections.podnet.cni.plugins.module_utils._attachment import (
    HostSide,
    PodSide,
    Undo,
    add_routes,
    configure_pod_address,
    finish_layer3,
    masquerade_problems,
    owner,
    pod_side_problems,
)
from ansible_collections.podnet.cni.plugins.module_utils._errors import ConfError, NetlinkError
from ansible_collections.podnet.cni.plugins.module_utils._links import (
    LinkError,
    Netlink,
    write_sysctl,
)

# Ledger section: master -> {"kind", "owners"}. A master's macvlan and ipvlan ports live in pod
# namespaces the host cannot list, so the ledger is what tells a mix apart before the kernel.
LEDGER_SECTION = "lan_masters"


@dataclass(frozen=True)
class LanKind:
    """One kernel link kind that hangs off a master: its modes and the kind it excludes."""

    name: str
    modes: dict[str, int]
    default_mode: str
    rivals: tuple[str, ...]
    temp_prefix: str

    def mode(self, conf) -> str:
        return conf.conf.get("mode") or self.default_mode


# Mode values are the kernel's (MACVLAN_MODE_* bit flags, IPVLAN_MODE_* enum).
MACVLAN = LanKind(
    name="macvlan",
    modes={"private": 1, "vepa": 2, "bridge": 4, "passthru": 8},
    default_mode="bridge",
    rivals=("ipvlan", "ipvtap"),
    temp_prefix="mvl",
)
IPVLAN = LanKind(
    name="ipvlan",
    modes={"l2": 0, "l3": 1, "l3s": 2},
    default_mode="l2",
    rivals=("macvlan", "macvtap"),
    temp_prefix="ivl",
)

_support: dict[str, str | None] = {}


# --- checks before any change ------------------------------------------------------------------


def check(kind: LanKind, host: HostSide, conf) -> None:
    """Everything that can be known before a change: master, MTU, rival kind, kernel support."""
    where = f'network "{conf.name}"'
    master = conf.conf["master"]
    link = host.netlink.link(master)
    if link is None:
        raise ConfError(
            where, "master", master, f'interface "{master}" does not exist in the host namespace'
        )
    problem = mtu_problem(conf.mtu, link["mtu"], master)
    if problem:
        raise ConfError(where, "mtu", conf.mtu, problem)

    rival = rival_on_master(kind, master, host.ledger.entries, _host_uppers(host.netlink, link))
    if rival:
        raise ConfError(
            where,
            "master",
            master,
            f'interface "{master}" already carries {rival} links: macvlan and ipvlan cannot '
            "share a master",
        )

    reason = unsupported_reason(kind, host.netlink)
    if reason:
        raise NetlinkError(f"{where}: type {kind.name}: {reason}")


def mtu_problem(wanted: int | None, master_mtu: int, master: str) -> str | None:
    """Why an MTU cannot be used on a link of this master, or None (None = the master's)."""
    if wanted is None or wanted <= master_mtu:
        return None
    return f'is larger than the MTU {master_mtu} of master "{master}"'


def rival_on_master(
    kind: LanKind, master: str, ledger_entries: dict, host_uppers: list[str]
) -> str | None:
    """The excluded kind already on the master, by the ledger or by host-side links."""
    recorded = ledger_entries.get(LEDGER_SECTION, {}).get(master)
    if recorded and recorded.get("owners") and recorded.get("kind") != kind.name:
        return recorded["kind"]
    return next((upper for upper in host_uppers if upper in kind.rivals), None)


def _host_uppers(netlink: Netlink, master: dict) -> list[str]:
    """Kinds of the links of the host namespace stacked on the master."""
    found = []
    for name in netlink.links():
        link = netlink.link(name)
        if link and link["peer"] == master["index"] and link["index"] != master["index"]:
            found.append(link["kind"] or "")
    return found


def unsupported_reason(kind: LanKind, netlink: Netlink) -> str | None:
    """Why this kernel cannot make links of the kind, or None; asked once per process.

    The probe asks for one on the loopback: a kernel that knows the kind refuses that master
    (EINVAL), one that does not (no module, none loadable) answers EOPNOTSUPP. Nothing is made.
    """
    if kind.name not in _support:
        _support[kind.name] = _probe(kind, netlink)
    return _support[kind.name]


def _probe(kind: LanKind, netlink: Netlink) -> str | None:
    loopback = netlink.index("lo")
    if loopback is None:
        return None  # cannot probe; the real request will tell
    probe = f"{kind.temp_prefix}p{os.getpid() % 100000000}"
    try:
        netlink.create(ifname=probe, kind=kind.name, link=loopback)
    except LinkError as exc:
        return support_from_errno(kind, exc.code)
    netlink.delete(probe)
    return None


def support_from_errno(kind: LanKind, code: int | None) -> str | None:
    """Read a probe's answer: EOPNOTSUPP means the kernel has no such link kind."""
    if code == errno.EOPNOTSUPP:
        return (
            f"the kernel has no {kind.name} support (no {kind.name} module built in or "
            "loadable: creating one answers 'Operation not supported')"
        )
    return None


# --- add, remove, drift ------------------------------------------------------------------------


def temp_name(kind: LanKind, pod: str, ifname: str) -> str:
    """A stable pod-side name to create under, so a crashed run's leftover is recognised."""
    digest = hashlib.sha256(f"{pod}/{ifname}".encode()).hexdigest()
    return f"{kind.temp_prefix}{digest[:8]}"


def add(
    kind: LanKind,
    host: HostSide,
    pod: PodSide,
    conf,
    ifname: str,
    leases: list,
    undo: Undo,
) -> dict:
    """Attach the pod; every step pushes its undo so a later failure leaves nothing behind."""
    check(kind, host, conf)
    master = conf.conf["master"]
    mode = kind.mode(conf)
    key = owner(pod.name, conf.name)

    _claim_master(host, kind, master, key)
    undo.push(_release_master, host, master, key)

    # Made under a temporary name straight in the pod, then renamed: the pod's ifname may well
    # exist in the host namespace (eth0), and the link never shows up there.
    temp = temp_name(kind, pod.name, ifname)
    pod.netlink.delete(temp)
    _create_in_pod(kind, host.netlink, host.netlink.index(master), mode, temp, pod.netns, conf)
    undo.push(pod.netlink.delete, temp)
    _rename(pod.netlink, kind, temp, ifname)
    undo.push(pod.netlink.delete, ifname)

    record = {
        "master": master,
        "mode": mode,
        "mtu": pod.netlink.link(ifname)["mtu"],
        "host_ifname": None,
        "masquerade": False,
        "routes": [],
        "sysctls": [],
    }
    if not leases:  # L2 only: the link, up, and nothing else
        pod.netlink.set_up(ifname)
        record["mac"] = pod.netlink.link(ifname)["mac"]
        return record

    # Neighbours learn the new addresses at once: a pod re-made with a new MAC would otherwise
    # be unreachable until their neighbour entries expire.
    versions = {lease.address.version for lease in leases}
    with _netns.entered(pod.netns):
        write_sysctl(f"net/ipv4/conf/{ifname}/arp_notify", "1")
        if 6 in versions:
            write_sysctl(f"net/ipv6/conf/{ifname}/ndisc_notify", "1")
    gateways: dict[int, str] = {}
    for lease in leases:
        configure_pod_address(pod.netlink, ifname, str(lease.address), lease.prefixlen)
        gateways.setdefault(lease.address.version, str(lease.gateway))
    routes, shadowed = add_routes(pod.netlink, ifname, conf.ipam.get("routes", []), gateways)

    record.update(finish_layer3(host, pod, conf, ifname, leases, (routes, shadowed), undo))
    return record


def _create_in_pod(
    kind: LanKind, host: Netlink, master_index: int, mode: str, temp: str, netns: str, conf
) -> None:
    spec = {
        "ifname": temp,
        "kind": kind.name,
        "link": master_index,
        f"{kind.name}_mode": kind.modes[mode],
    }
    if conf.mtu:
        spec["mtu"] = conf.mtu
    fd = os.open(netns, os.O_RDONLY)
    try:
        spec["net_ns_fd"] = fd
        host.create(**spec)
    except LinkError as exc:
        raise NetlinkError(_create_failure(kind, conf, exc)) from exc
    finally:
        os.close(fd)


def _create_failure(kind: LanKind, conf, exc: Exception) -> str:
    code = getattr(exc, "code", None)
    master = conf.conf["master"]
    head = f'network "{conf.name}": cannot create {kind.name} on master "{master}"'
    if code == errno.EBUSY:
        return (
            f"{head}: the master is taken by links that exclude this one (macvlan and ipvlan "
            "cannot share a master; a passthru macvlan wants it alone)"
        )
    reason = support_from_errno(kind, code)
    if reason is None:
        reason = os.strerror(code) if isinstance(code, int) and code > 0 else str(exc)
    return f"{head}: {reason}"


def _rename(pod: Netlink, kind: LanKind, temp: str, ifname: str) -> None:
    try:
        pod.rename(temp, ifname)
    except LinkError as exc:
        raise NetlinkError(f'cannot rename {kind.name} to "{ifname}" in the pod: {exc}') from exc


def _claim_master(host: HostSide, kind: LanKind, master: str, key: str) -> None:
    masters = host.ledger.entries.setdefault(LEDGER_SECTION, {})
    entry = masters.setdefault(master, {"kind": kind.name, "owners": []})
    if key not in entry["owners"]:
        entry["owners"].append(key)
    host.ledger.save()


def _release_master(host: HostSide, master: str, key: str) -> None:
    masters = host.ledger.entries.setdefault(LEDGER_SECTION, {})
    entry = masters.get(master)
    if entry is None:
        return
    if key in entry["owners"]:
        entry["owners"].remove(key)
    if not entry["owners"]:
        del masters[master]


def remove(host: HostSide, pod: PodSide, attachment: dict) -> None:
    """Detach; never needs the master (it may be gone: C07), nor the pod (it may be gone too)."""
    if pod.netlink is not None:
        pod.netlink.delete(attachment["ifname"])
    if attachment.get("masquerade"):
        host.nat_for(attachment).remove_masquerade(pod.name, attachment["network"])
    _release_master(host, attachment["master"], owner(pod.name, attachment["network"]))


def problems(kind: LanKind, host: HostSide, pod: PodSide, attachment: dict) -> list[str]:
    found = pod_side_problems(pod, attachment)
    if pod.netlink is not None and not found:
        link = pod.netlink.link(attachment["ifname"])
        if link is not None and link["kind"] != kind.name:
            found.append(
                f'interface "{attachment["ifname"]}" is a {link["kind"]}, not a {kind.name}'
            )
    if host.netlink.link(attachment["master"]) is None:
        found.append(f'master "{attachment["master"]}" is missing')
    return found + masquerade_problems(host, pod.name, attachment)
