# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""The bridge network type: pods on one Linux bridge, the host on it as their gateway.

rkt documents `rkt0` as the default bridge name (the CNI plugin says cni0; podnet follows
rkt's docs). Unlike the CNI plugin, a bridge podnet made goes away with its last pod, and a
gateway address podnet put on someone else's bridge is taken off again.
"""

from __future__ import annotations

from ansible_collections.podnet.cni.plugins.module_utils._attachment import (
    IP_FORWARD,
    HostSide,
    PodSide,
    Undo,
    add_routes,
    configure_pod_address,
    detach_veth,
    has_default_route,
    host_veth_name,
    masquerade_problems,
    owner,
    pod_side_problems,
    subnet_of,
)
from ansible_collections.podnet.cni.plugins.module_utils._errors import NetlinkError

NAME = "bridge"
DEFAULT_BRIDGE = "rkt0"


def bridge_name(conf) -> str:
    return conf.conf.get("bridge") or DEFAULT_BRIDGE


def add(
    host: HostSide, pod: PodSide, conf, ifname: str, leases: list, undo: Undo, args: str = ""
) -> dict:
    """Attach the pod; every step pushes its undo so a later failure leaves nothing behind."""
    bridge = bridge_name(conf)
    key = owner(pod.name, conf.name)
    is_default_gw = bool(conf.conf.get("isDefaultGateway"))
    is_gateway = bool(conf.conf.get("isGateway")) or is_default_gw

    existing = host.netlink.link(bridge)
    if existing is not None and existing["kind"] != "bridge":
        raise NetlinkError(
            f'network "{conf.name}": field "bridge": "{bridge}" already exists but is not a bridge'
        )
    if existing is None:
        host.netlink.add_bridge(bridge, conf.mtu)
    host.ledger.record_bridge(bridge, key, created=existing is None)
    undo.push(host.ledger.release_bridge, bridge, key, host.netlink)
    host.netlink.set_up(bridge)

    host_ifname = host_veth_name(pod.name, ifname)
    host.netlink.delete(host_ifname)  # a leftover of a crashed run for this very attachment
    host.netlink.add_veth(host_ifname, ifname, pod.netns, conf.mtu)
    undo.push(host.netlink.delete, host_ifname)
    host.netlink.set_master(host_ifname, bridge)
    host.netlink.set_hairpin(host_ifname, bool(conf.conf.get("hairpinMode")))
    host.netlink.set_up(host_ifname)

    record = {
        "host_ifname": host_ifname,
        "bridge": bridge,
        "masquerade": False,
        "routes": [],
        "sysctls": [],
        "bridge_address": None,
    }
    if not leases:  # L2 only: an interface on the bridge and nothing else
        pod.netlink.set_up(ifname)
        record["mac"] = pod.netlink.link(ifname)["mac"]
        return record

    lease = leases[0]
    address, gateway = str(lease.address), str(lease.gateway)
    network = subnet_of(lease)
    configure_pod_address(pod.netlink, ifname, address, lease.prefixlen)
    routes = list(conf.ipam.get("routes", []))
    # An IPAM default route without a gw already means "via the gateway" (bugs.md C12):
    # adding a second one would fail with "file exists".
    if is_default_gw and not has_default_route(routes):
        routes.append({"dst": "0.0.0.0/0"})
    routes, shadowed = add_routes(pod.netlink, ifname, routes, gateway)

    if is_gateway:
        gateway_cidr = f"{gateway}/{lease.prefixlen}"
        _claim_bridge_address(host, conf, bridge, gateway_cidr, undo)
        record["bridge_address"] = gateway_cidr
        host.ledger.acquire_sysctl(IP_FORWARD, "1", key)
        undo.push(host.ledger.release_sysctl, IP_FORWARD, key)
        record["sysctls"] = [IP_FORWARD]

    if conf.ip_masq:
        host.nat.ensure_masquerade(pod.name, conf.name, address, network)
        undo.push(host.nat.remove_masquerade, pod.name, conf.name)

    record.update(
        {
            "address": f"{address}/{lease.prefixlen}",
            "gateway": gateway,
            "subnet": network,
            "mac": pod.netlink.link(ifname)["mac"],
            "routes": routes,
            "shadowed_routes": shadowed,
            "masquerade": conf.ip_masq,
        }
    )
    return record


def _claim_bridge_address(host: HostSide, conf, bridge: str, cidr: str, undo: Undo) -> None:
    """Put the gateway on the bridge; another IPv4 address there is an error (as CNI's)."""
    present = host.netlink.addresses(bridge, 2)
    if cidr in present:
        return
    others = [other for other in present if other != cidr]
    if others and not conf.conf.get("forceAddress"):
        raise NetlinkError(
            f'network "{conf.name}": bridge "{bridge}" already has an IP address '
            f"different from {cidr}: {', '.join(others)}"
        )
    for other in others:
        ip, prefixlen = other.split("/")
        host.netlink.del_address(bridge, ip, int(prefixlen))
    ip, prefixlen = cidr.split("/")
    host.netlink.add_address(bridge, ip, int(prefixlen))
    host.ledger.entries["bridges"][bridge].setdefault("addresses", [])
    if cidr not in host.ledger.entries["bridges"][bridge]["addresses"]:
        host.ledger.entries["bridges"][bridge]["addresses"].append(cidr)


def remove(host: HostSide, pod: PodSide, attachment: dict) -> None:
    """Detach; anything already gone is fine (teardown must survive a half-dead pod)."""
    detach_veth(host, pod, attachment)
    key = owner(pod.name, attachment["network"])
    host.ledger.release_bridge(attachment["bridge"], key, host.netlink)


def problems(host: HostSide, pod: PodSide, attachment: dict) -> list[str]:
    found = pod_side_problems(pod, attachment)
    bridge = attachment["bridge"]
    bridge_link = host.netlink.link(bridge)
    link = host.netlink.link(attachment["host_ifname"])
    if bridge_link is None:
        found.append(f'bridge "{bridge}" is missing')
    elif link is None or link["master"] != bridge_link["index"]:
        found.append(f'host interface "{attachment["host_ifname"]}" is not on bridge "{bridge}"')
    cidr = attachment.get("bridge_address")
    if bridge_link is not None and cidr and cidr not in host.netlink.addresses(bridge, 2):
        found.append(f"gateway {cidr} is missing on bridge {bridge}")
    return found + masquerade_problems(host, pod.name, attachment)
