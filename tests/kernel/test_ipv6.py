"""IPv6 and dual stack on the real kernel: rkt's own IPv6 example, and v4+v6 range sets."""

from __future__ import annotations

import json
import os

from sandbox import ip_json, links, netns_exists, ns_run, ping, sysctl, wait_for
from test_pod_network import down, host_snapshot, lease_files, up, write_conf

# rkt's ipvlan l3 example (Documentation/networking), on a bridge since this kernel has no
# ipvlan: a link-local gateway outside the subnet and a ::0/0 route, spelled with a leading 0.
RKT_V6 = {
    "name": "v6lan",
    "type": "bridge",
    "bridge": "rkt6",
    "isGateway": True,
    "ipam": {
        "type": "host-local",
        "subnet": "2001:0db8:161:8374::/64",
        "rangeStart": "2001:0db8:161:8374::1:2",
        "rangeEnd": "2001:0db8:161:8374::1:fffe",
        "gateway": "fe80::1",
        "routes": [{"dst": "::0/0"}],
    },
}
DUAL = {
    "name": "dual",
    "type": "ptp",
    "ipMasq": True,
    "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "10.40.0.0/24"}], [{"subnet": "fd00:40::/64"}]],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
    },
}


def ping6(ns: str, address: str, ifname: str | None = None) -> bool:
    """Ping over IPv6, allowing for DAD: new links' own link-local addresses (which neighbour
    discovery needs) are tentative for about a second."""
    target = f"{address}%{ifname}" if ifname else address
    argv = ["ping", "-6", "-n", "-q", "-c", "1", "-W", "1", target]
    return wait_for(lambda: ns_run(ns, argv, check=False).returncode == 0, timeout=8)


def inet6(ns: str, ifname: str) -> list[str]:
    found = []
    for link in ip_json(ns, "-6", "addr", "show", "dev", ifname, "scope", "global"):
        found += [
            f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []) if "local" in a
        ]
    return found


def test_rkt_ipv6_example_on_a_bridge(host):
    write_conf(host, "10-v6lan.conf", RKT_V6)
    before = host_snapshot(host)
    a, b = host.pod_name(), host.pod_name()
    first = up(host, a, ["v6lan"], add_default_restricted=False)
    up(host, b, ["v6lan"], add_default_restricted=False)
    assert first["interfaces"][0]["address"] == "2001:db8:161:8374::1:2/64"
    assert inet6(a, "eth0") == ["2001:db8:161:8374::1:2/64"]
    assert inet6(b, "eth0") == ["2001:db8:161:8374::1:3/64"]
    assert ping6(a, "2001:db8:161:8374::1:3")
    assert ping6(a, "fe80::1", "eth0"), "the gateway is on the bridge"
    default = [r for r in ip_json(a, "-6", "route", "show") if r["dst"] == "default"]
    assert [(r["gateway"], r["dev"]) for r in default] == [("fe80::1", "eth0")]
    assert sysctl(host.name, "net.ipv6.conf.all.forwarding") == "1"

    again = up(host, a, ["v6lan"], add_default_restricted=False)
    assert again["changed"] is False, again["actions"]
    down(host, a)
    down(host, b)
    assert host_snapshot(host) == before and lease_files(host) == []
    assert sysctl(host.name, "net.ipv6.conf.all.forwarding") == "0"


def test_dual_stack_ptp_gets_one_address_per_family(host):
    write_conf(host, "10-dual.conf", DUAL)
    outside = host.add_outside()
    host.run(["ip", "-6", "addr", "add", "2001:db8:ffff::1/64", "dev", "uplink0", "nodad"])
    ns_run(outside, ["ip", "-6", "addr", "add", "2001:db8:ffff::2/64", "dev", "wan0", "nodad"])
    ns_run(outside, ["ip", "-6", "route", "add", "fd00:40::/64", "via", "2001:db8:ffff::1"])
    before = host_snapshot(host)
    pod = host.pod_name()
    result = up(host, pod, ["dual"], add_default_restricted=False)
    (eth0,) = result["interfaces"]
    assert eth0["address"] == "10.40.0.2/24"
    assert inet6(pod, "eth0") == ["fd00:40::2/64"]
    assert ping(pod, "10.40.0.1") and ping6(pod, "fd00:40::1")
    assert ping(pod, "203.0.113.2"), "IPv4 leaves through the masquerade"
    assert ping6(pod, "2001:db8:ffff::2"), "IPv6 is routed by the host as it is"
    assert up(host, pod, ["dual"], add_default_restricted=False)["changed"] is False
    down(host, pod)
    assert not netns_exists(pod)
    assert host_snapshot(host) == before


def test_ipv6_spellings_are_one_address_to_cni_conf(host):
    args = {"conf": RKT_V6, "conf_dir": host.conf_dir}
    assert host.module("cni_conf", args, with_dirs=False)["changed"] is True
    compressed = json.loads(json.dumps(RKT_V6).replace("2001:0db8:", "2001:db8:"))
    compressed["ipam"]["routes"] = [{"dst": "::/0"}]
    again = host.module(
        "cni_conf", {"conf": compressed, "conf_dir": host.conf_dir}, with_dirs=False
    )
    assert again["changed"] is False, again.get("diff")
    assert os.listdir(host.conf_dir) == ["v6lan.conf"]
    assert "rkt6" not in links(host.name)
