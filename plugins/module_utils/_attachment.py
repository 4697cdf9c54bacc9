# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""What ptp and bridge share: the two sides of an attachment and the pod-side address setup.

An attachment is one pod on one network: a pod-side interface (eth<i>), usually a host-side
link, an address leased from the network's IPAM, routes, and perhaps a masquerade.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ansible_collections.podnet.cni.plugins.module_utils._host_state import HostLedger
from ansible_collections.podnet.cni.plugins.module_utils._links import Netlink

IP_FORWARD = "net/ipv4/ip_forward"
IP6_FORWARD = "net/ipv6/conf/all/forwarding"
MASQUERADE_PROBLEM = "masquerade for"  # a drift fixed in place, without re-making the link


def forwarding_sysctl(version: int) -> str:
    """The host sysctl that lets a family's pod traffic through the host."""
    return IP_FORWARD if version == 4 else IP6_FORWARD


def host_prefix(version: int) -> int:
    return 32 if version == 4 else 128


@dataclass
class HostSide:
    """The host namespace (the one the module runs in) and what is shared there."""

    netlink: Netlink
    ledger: HostLedger
    nat_prefer: str = "auto"
    _nat: object = field(default=None, repr=False)
    plugin_dirs: list[str] = field(default_factory=list)  # where CNI plugin binaries are
    data_dir: str | None = None  # the host-local lease dir the module was given

    @property
    def nat(self):
        if self._nat is None:
            from ansible_collections.podnet.cni.plugins.module_utils._nat import nat_backend

            self._nat = nat_backend(self.nat_prefer)
        return self._nat

    def nat_for(self, attachment: dict):
        """The backend that made an attachment's masquerade, whatever nat_backend says now."""
        name = attachment.get("nat_backend")
        if not name or name == self.nat.name:
            return self.nat
        from ansible_collections.podnet.cni.plugins.module_utils._nat import nat_backend

        return nat_backend(name)


@dataclass
class PodSide:
    """One pod's namespace; netlink is None when the namespace is already gone."""

    name: str
    netns: str
    netlink: Netlink | None


def owner(pod: str, network: str) -> str:
    """The key under which host-wide changes are counted for one attachment."""
    return f"{pod}:{network}"


def host_veth_name(pod: str, ifname: str) -> str:
    """A stable host-side name, so a leftover of a crashed run is recognised and replaced."""
    digest = hashlib.sha256(f"{pod}/{ifname}".encode()).hexdigest()
    return f"veth{digest[:8]}"


def subnet_of(lease) -> str:
    """The network a lease belongs to, host bits cleared (10.1.0.7/24 -> 10.1.0.0/24)."""
    from netaddr import IPNetwork

    return str(IPNetwork(f"{lease.address}/{lease.prefixlen}").cidr)


def configure_pod_address(
    pod: Netlink, ifname: str, address: str, prefixlen: int, prefix_route: bool = True
) -> None:
    pod.add_address(ifname, address, prefixlen, prefix_route)
    pod.set_up(ifname)


def add_routes(
    pod: Netlink, ifname: str, routes: list[dict], gateway: str | dict[int, str] | None
) -> tuple[list[dict], list[dict]]:
    """IPAM routes, each via its own gw, else via the network's gateway of that family.

    gateway is one address, or {4: v4 gateway, 6: v6 gateway} for a dual-stack attachment;
    a route of a family the attachment has no gateway for is skipped.
    Returns (installed, shadowed): a route whose destination another interface of the pod
    already serves (an earlier network's default route, say) is left to that one.
    """
    installed, shadowed = [], []
    for route in routes:
        dst, version = _route_dst(route["dst"])
        via = route.get("gw") or (gateway.get(version) if isinstance(gateway, dict) else gateway)
        if isinstance(gateway, dict) and version not in gateway and not route.get("gw"):
            continue
        if pod.add_route(dst, ifname, gateway=via):
            installed.append(route)
            continue
        family = 2 if version == 4 else 10
        shown = _shown(dst)
        ours = any(r["dst"] == shown and r["gateway"] == via for r in pod.routes(ifname, family))
        (installed if ours else shadowed).append(route)
    return installed, shadowed


def has_default_route(routes: list[dict], version: int = 4) -> bool:
    return any(_route_dst(route["dst"]) == _route_dst(_DEFAULTS[version]) for route in routes)


_DEFAULTS = {4: "0.0.0.0/0", 6: "::/0"}


def _route_dst(dst: str) -> tuple[str, int]:
    """Canonical destination text and its family (4 or 6)."""
    if dst in ("default", "0/0"):
        return "0.0.0.0/0", 4
    from netaddr import IPNetwork

    net = IPNetwork(dst)
    return str(net.cidr), net.version


def _shown(dst: str) -> str:
    """How the kernel (and Netlink.routes) names a destination."""
    return "default" if dst in _DEFAULTS.values() else dst


def finish_layer3(
    host: HostSide, pod: PodSide, conf, ifname: str, leases: list, installed, undo
) -> dict:
    """Masquerade the first IPv4 address when the conf asks, and describe what was made.

    installed is add_routes' (routes, shadowed). Masquerade is IPv4's answer to private pod
    addresses; IPv6 pods are routed as they are.
    """
    routes, shadowed = installed
    first = next((lease for lease in leases if lease.address.version == 4), None)
    masquerade = bool(conf.ip_masq and first)
    if masquerade:
        host.nat.ensure_masquerade(pod.name, conf.name, str(first.address), subnet_of(first))
        undo.push(host.nat.remove_masquerade, pod.name, conf.name)
    main = first or leases[0]
    return {
        "address": main.cidr,
        "addresses": [lease.cidr for lease in leases],
        "gateway": str(main.gateway),
        "gateways": [str(lease.gateway) for lease in leases],
        "subnet": subnet_of(main),
        "mac": pod.netlink.link(ifname)["mac"],
        "routes": routes,
        "shadowed_routes": shadowed,
        "masquerade": masquerade,
    }


def detach_veth(host: HostSide, pod: PodSide, attachment: dict) -> None:
    """Undo what every veth type did: both ends, the masquerade, the host sysctls it held."""
    key = owner(pod.name, attachment["network"])
    if pod.netlink is not None:
        pod.netlink.delete(attachment["ifname"])
    host.netlink.delete(attachment["host_ifname"])
    if attachment.get("masquerade"):
        host.nat_for(attachment).remove_masquerade(pod.name, attachment["network"])
    for sysctl in attachment.get("sysctls", []):
        host.ledger.release_sysctl(sysctl, key)


def pod_side_problems(pod: PodSide, attachment: dict) -> list[str]:
    """Drift on the pod side: the interface, its address, and the routes we put there."""
    if pod.netlink is None:
        return [f'namespace "{pod.netns}" is gone']
    ifname = attachment["ifname"]
    link = pod.netlink.link(ifname)
    if link is None:
        return [f'interface "{ifname}" is missing in the pod']
    problems = []
    if not link["up"]:
        problems.append(f'interface "{ifname}" is down')
    present = set(pod.netlink.addresses(ifname))
    wanted = attachment.get("addresses") or [attachment.get("address")]
    for address in filter(None, wanted):
        if address not in present:
            problems.append(f'address {address} is missing on "{ifname}"')
    routes = {r["dst"] for f in (2, 10) for r in pod.netlink.routes(ifname, f)}
    for route in attachment.get("routes", []):
        dst, _version = _route_dst(route["dst"])
        if _shown(dst) not in routes:
            problems.append(f'route {dst} is missing on "{ifname}"')
    return problems


def masquerade_problems(host: HostSide, pod: str, attachment: dict) -> list[str]:
    if not attachment.get("masquerade"):
        return []
    address = attachment["address"].split("/")[0]
    nat = host.nat_for(attachment)
    if nat is host.nat and nat.has_masquerade(
        pod, attachment["network"], address, attachment["subnet"]
    ):
        return []
    return [f'{MASQUERADE_PROBLEM} {address} on network "{attachment["network"]}" is missing']


class Undo:
    """Undo steps written next to the action they undo; run in reverse when a later step fails."""

    def __init__(self) -> None:
        self._steps: list = []

    def push(self, step, *args) -> None:
        self._steps.append((step, args))

    def run(self) -> list[str]:
        """Run every step, newest first; a failing step does not stop the others."""
        failures = []
        while self._steps:
            step, args = self._steps.pop()
            try:
                step(*args)
            except Exception as exc:  # noqa: BLE001 - undo is best effort, reported below
                failures.append(str(exc))
        return failures
