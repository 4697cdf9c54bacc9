# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""The ptp network type: a veth pair per pod, routed through the host, no bridge.

Every pod's host-side veth carries the network's gateway as a /32, and the host routes each
pod address to its veth, so pods reach each other only through the host's routing (where
the firewall sees them), and a pod cannot spoof a neighbour's address on a shared segment.
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
    host_prefix,
    host_veth_name,
    masquerade_problems,
    owner,
    pod_side_problems,
    subnet_of,
)
from ansible_collections.podnet.cni.plugins.module_utils._errors import ConfError, NetlinkError
from ansible_collections.podnet.cni.plugins.module_utils._links import RT_SCOPE_LINK

NAME = "ptp"


def add(
    host: HostSide, pod: PodSide, conf, ifname: str, leases: list, undo: Undo, args: str = ""
) -> dict:
    """Attach the pod; every step pushes its undo so a later failure leaves nothing behind."""
    if not leases:
        raise ConfError(
            f'network "{conf.name}"', "ipam", None, "ptp needs an IPAM that gives an address"
        )
    key = owner(pod.name, conf.name)
    sysctls = sorted({forwarding_sysctl(lease.address.version) for lease in leases})
    for sysctl in sysctls:
        host.ledger.acquire_sysctl(sysctl, "1", key)
        undo.push(host.ledger.release_sysctl, sysctl, key)

    host_ifname = host_veth_name(pod.name, ifname)
    host.netlink.delete(host_ifname)  # a leftover of a crashed run for this very attachment
    host.netlink.add_veth(host_ifname, ifname, pod.netns, conf.mtu)
    undo.push(host.netlink.delete, host_ifname)
    host.netlink.set_up(host_ifname)

    # No connected route: it would send neighbours straight out of eth0. The subnet goes via
    # the gateway instead, so all pod traffic passes through the host.
    gateways = {}
    for lease in leases:
        _refuse_taken(host, conf, lease)
        address, gateway = str(lease.address), str(lease.gateway)
        single = host_prefix(lease.address.version)
        gateways.setdefault(lease.address.version, gateway)
        configure_pod_address(pod.netlink, ifname, address, lease.prefixlen, prefix_route=False)
        pod.netlink.add_route(f"{gateway}/{single}", ifname, scope=RT_SCOPE_LINK, src=address)
        pod.netlink.add_route(subnet_of(lease), ifname, gateway=gateway, src=address)
        host.netlink.add_address(host_ifname, gateway, single)
        host.netlink.add_route(f"{address}/{single}", host_ifname, scope=RT_SCOPE_LINK)
    routes, shadowed = add_routes(pod.netlink, ifname, conf.ipam.get("routes", []), gateways)

    record = finish_layer3(host, pod, conf, ifname, leases, (routes, shadowed), undo)
    record.update({"host_ifname": host_ifname, "sysctls": sysctls})
    return record


def _refuse_taken(host: HostSide, conf, lease) -> None:
    """A host route to the address already exists: another pod has it (two static IPAMs, or
    two networks over one range). Routing it here too would cut that pod off."""
    single = host_prefix(lease.address.version)
    family = 2 if lease.address.version == 4 else 10
    taken = [
        r for r in host.netlink.routes(None, family) if r["dst"] == f"{lease.address}/{single}"
    ]
    if taken:
        raise NetlinkError(
            f'network "{conf.name}": address {lease.address} is already routed to another '
            "interface on this host (another pod holds it)"
        )


def remove(host: HostSide, pod: PodSide, attachment: dict) -> None:
    """Detach; anything already gone is fine (teardown must survive a half-dead pod)."""
    detach_veth(host, pod, attachment)


def problems(host: HostSide, pod: PodSide, attachment: dict) -> list[str]:
    found = pod_side_problems(pod, attachment)
    host_ifname = attachment["host_ifname"]
    link = host.netlink.link(host_ifname)
    if link is None:
        found.append(f'host interface "{host_ifname}" is missing')
    else:
        present = host.netlink.addresses(host_ifname)
        for gateway in attachment.get("gateways") or [attachment["gateway"]]:
            single = host_prefix(6 if ":" in gateway else 4)
            if f"{gateway}/{single}" not in present:
                found.append(f'gateway {gateway} is missing on "{host_ifname}"')
    return found + masquerade_problems(host, pod.name, attachment)
