# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""The ptp network type: a veth pair per pod, routed through the host, no bridge.

Every pod's host-side veth carries the network's gateway as a /32, and the host routes each
pod address to its veth, so pods reach each other only through the host's routing (where
the firewall sees them), and a pod cannot spoof a neighbour's address on a shared segment.
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
    host_veth_name,
    masquerade_problems,
    owner,
    pod_side_problems,
    subnet_of,
)
from ansible_collections.podnet.cni.plugins.module_utils._errors import ConfError
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
    lease = leases[0]
    address, gateway = str(lease.address), str(lease.gateway)
    network = subnet_of(lease)
    key = owner(pod.name, conf.name)

    host.ledger.acquire_sysctl(IP_FORWARD, "1", key)
    undo.push(host.ledger.release_sysctl, IP_FORWARD, key)

    host_ifname = host_veth_name(pod.name, ifname)
    host.netlink.delete(host_ifname)  # a leftover of a crashed run for this very attachment
    host.netlink.add_veth(host_ifname, ifname, pod.netns, conf.mtu)
    undo.push(host.netlink.delete, host_ifname)

    # No connected route: it would send neighbours straight out of eth0. The subnet goes via
    # the gateway instead, so all pod traffic passes through the host.
    configure_pod_address(pod.netlink, ifname, address, lease.prefixlen, prefix_route=False)
    pod.netlink.add_route(f"{gateway}/32", ifname, scope=RT_SCOPE_LINK, src=address)
    pod.netlink.add_route(network, ifname, gateway=gateway, src=address)
    routes, shadowed = add_routes(pod.netlink, ifname, conf.ipam.get("routes", []), gateway)

    host.netlink.set_up(host_ifname)
    host.netlink.add_address(host_ifname, gateway, 32)
    host.netlink.add_route(f"{address}/32", host_ifname, scope=RT_SCOPE_LINK)

    if conf.ip_masq:
        host.nat.ensure_masquerade(pod.name, conf.name, address, network)
        undo.push(host.nat.remove_masquerade, pod.name, conf.name)

    return {
        "address": f"{address}/{lease.prefixlen}",
        "gateway": gateway,
        "subnet": network,
        "host_ifname": host_ifname,
        "mac": pod.netlink.link(ifname)["mac"],
        "routes": routes,
        "shadowed_routes": shadowed,
        "masquerade": conf.ip_masq,
        "sysctls": [IP_FORWARD],
    }


def remove(host: HostSide, pod: PodSide, attachment: dict) -> None:
    """Detach; anything already gone is fine (teardown must survive a half-dead pod)."""
    detach_veth(host, pod, attachment)


def problems(host: HostSide, pod: PodSide, attachment: dict) -> list[str]:
    found = pod_side_problems(pod, attachment)
    host_ifname = attachment["host_ifname"]
    link = host.netlink.link(host_ifname)
    if link is None:
        found.append(f'host interface "{host_ifname}" is missing')
    elif f"{attachment['gateway']}/32" not in host.netlink.addresses(host_ifname, 2):
        found.append(f'gateway {attachment["gateway"]} is missing on "{host_ifname}"')
    return found + masquerade_problems(host, pod.name, attachment)
