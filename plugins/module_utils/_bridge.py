# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""The bridge network type: pods on one Linux bridge, the host on it as their gateway.

rkt documents `rkt0` as the default bridge name (the CNI plugin says cni0; podnet follows
rkt's docs). Unlike the CNI plugin, a bridge podnet made goes away with its last pod, and a
gateway address podnet put on someone else's bridge is taken off again.
"""

from __future__ import annotations

from ansible_collections.podnet.cni.plugins.module_utils._attachment import (
    HostSide,
    PodSide,
    Undo,
    add_routes,
    configure_pod_address,
    detach_veth,
    finish_layer3,
    forwarding_sysctl,
    has_default_route,
    host_veth_name,
    masquerade_problems,
    owner,
    pod_side_problems,
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
    # Recorded first: a run killed right after making the bridge still leaves its trail.
    host.ledger.record_bridge(bridge, key, created=existing is None)
    undo.push(host.ledger.release_bridge, bridge, key, host.netlink)
    if existing is None:
        host.netlink.add_bridge(bridge, conf.mtu)
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

    gateways: dict[int, str] = {}
    for lease in leases:
        configure_pod_address(pod.netlink, ifname, str(lease.address), lease.prefixlen)
        gateways.setdefault(lease.address.version, str(lease.gateway))
    routes = list(conf.ipam.get("routes", []))
    # An IPAM default route without a gw already means "via the gateway" (bugs.md C12):
    # adding a second one would fail with "file exists".
    if is_default_gw:
        for version in gateways:
            if not has_default_route(routes, version):
                routes.append({"dst": "0.0.0.0/0" if version == 4 else "::/0"})
    routes, shadowed = add_routes(pod.netlink, ifname, routes, gateways)

    if is_gateway:
        for lease in leases:
            # A link-local IPv6 gateway (rkt's example: fe80::1) sits outside the subnet.
            prefixlen = 64 if lease.gateway.is_link_local() else lease.prefixlen
            cidr = f"{lease.gateway}/{prefixlen}"
            _claim_bridge_address(host, conf, bridge, cidr)
            record.setdefault("bridge_addresses", []).append(cidr)
        record["bridge_address"] = record["bridge_addresses"][0]
        record["sysctls"] = sorted({forwarding_sysctl(version) for version in gateways})
        for sysctl in record["sysctls"]:
            host.ledger.acquire_sysctl(sysctl, "1", key)
            undo.push(host.ledger.release_sysctl, sysctl, key)

    record.update(finish_layer3(host, pod, conf, ifname, leases, (routes, shadowed), undo))
    return record


def _claim_bridge_address(host: HostSide, conf, bridge: str, cidr: str) -> None:
    """Put a gateway on the bridge; another IPv4 address there is an error (as CNI's)."""
    version = 6 if ":" in cidr else 4
    present = host.netlink.addresses(bridge, 2 if version == 4 else 10)
    if cidr in present:
        return
    others = [other for other in present if other != cidr] if version == 4 else []
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
    added = host.ledger.entries["bridges"][bridge].setdefault("addresses", [])
    if cidr not in added:
        added.append(cidr)
        host.ledger.save()


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
    wanted = attachment.get("bridge_addresses") or [attachment.get("bridge_address")]
    present = host.netlink.addresses(bridge) if bridge_link is not None else []
    for cidr in filter(None, wanted):
        if bridge_link is not None and cidr not in present:
            found.append(f"gateway {cidr} is missing on bridge {bridge}")
    return found + masquerade_problems(host, pod.name, attachment)
