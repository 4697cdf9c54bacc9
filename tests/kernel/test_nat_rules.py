"""Masquerade on the real kernel, for both backends, proved with TCP through a sandbox host.

Topology (every namespace made and removed by the test):

    pod A 10.99.0.2/24 ─┐           host (sandbox)          ┌─ outside 203.0.113.2/24
    pod B 10.99.0.3/24 ─┴─ ptp veths, 10.99.0.1, ip_forward=1 ─ uplink0 203.0.113.1/24

The outside has no route back to 10.99.0.0/24: a pod's connection completes only when it leaves
masqueraded as 203.0.113.1. Pods reach each other through the host's routing, so the nat
postrouting hook sees that traffic too and must leave its source alone.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest
from sandbox import TcpServer, ns_run, sh, tcp_peer_seen

from ansible_collections.podnet.cni.plugins.module_utils import _nat, _netns

GATEWAY = "10.99.0.1"
SUBNET = "10.99.0.0/24"
OUTSIDE = "203.0.113.2"
UPLINK = "203.0.113.1"
PORT = 8080


class Lab:
    """The sandbox host with its outside, pods added on demand, NAT calls made inside it."""

    def __init__(self, host, backend: str) -> None:
        self.host = host
        self.backend = backend
        self.outside = host.add_outside()
        host.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])

    def add_pod(self, address: str) -> str:
        """A pod wired like ptp: /24 on eth0, everything via the host's 10.99.0.1."""
        pod = self.host.pod_name()
        sh(["ip", "netns", "add", pod])
        host_ifname = f"hv{address.rsplit('.', 1)[1]}"
        self.host.run(
            ["ip", "link", "add", host_ifname, "type", "veth", "peer", "name", "eth0", "netns", pod]
        )
        self.host.run(["ip", "addr", "add", f"{GATEWAY}/32", "dev", host_ifname])
        self.host.run(["ip", "link", "set", host_ifname, "up"])
        self.host.run(["ip", "route", "add", f"{address}/32", "dev", host_ifname])

        for argv in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "addr", "add", f"{address}/24", "dev", "eth0", "noprefixroute"],
            ["ip", "link", "set", "eth0", "up"],
            ["ip", "route", "add", GATEWAY, "dev", "eth0", "scope", "link"],
            ["ip", "route", "add", "default", "via", GATEWAY],
        ):
            ns_run(pod, argv)
        return pod

    def nat(self, method: str, *args):
        """Call a backend method with this thread (and the tools it runs) inside the host."""
        with _netns.entered(self.host.netns):
            return getattr(_nat.nat_backend(self.backend), method)(*args)

    def outside_sees(self, pod: str) -> str | None:
        """The source address the outside sees when the pod connects; None if it cannot."""
        return self.peer_seen(pod, self.outside, OUTSIDE)

    def peer_seen(self, pod: str, server_ns: str, address: str) -> str | None:
        server = TcpServer(server_ns, PORT)
        try:
            return tcp_peer_seen(pod, address, PORT)
        finally:
            server.close()

    def ruleset(self) -> str:
        """The backend's view of the host's ruleset, in a form two snapshots can be compared."""
        if self.backend == "nftables":
            return self.host.run(["nft", "-j", "list", "ruleset"]).stdout
        return "\n".join(iptables_rules(self.host.run(["iptables-save"]).stdout))

    def nft(self, *args: str) -> str:
        return self.host.run(["nft", *args]).stdout

    def iptables(self, *args: str) -> None:
        self.host.run(["iptables", "-w", "-t", "nat", *args])


def iptables_rules(text: str) -> list[str]:
    """iptables-save without timestamps and counters, and without tables holding nothing.

    iptables-nft keeps an emptied nat table with its built-in chains once it has been used; a
    table of empty ACCEPT built-in chains filters and rewrites nothing, as no table does.
    """
    kept: list[str] = []
    section: list[str] = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        line = re.sub(r" \[\d+:\d+\]$", "", line)
        section.append(line)
        if line == "COMMIT":
            body = section[1:-1]
            builtin_only = all(re.fullmatch(r":[A-Z]+ ACCEPT", entry) for entry in body)
            if not builtin_only:
                kept += section
            section = []
    return kept + section


def without_handles(ruleset: str) -> object:
    def strip(node):
        if isinstance(node, dict):
            return {key: strip(value) for key, value in node.items() if key != "handle"}
        if isinstance(node, list):
            return [strip(value) for value in node]
        return node

    return strip(json.loads(ruleset))


@pytest.fixture(params=["nftables", "iptables"])
def lab(request, host):
    return Lab(host, request.param)


def test_auto_picks_nftables_when_nft_works(host):
    with _netns.entered(host.netns):
        assert _nat.nat_backend().name == "nftables"


def test_pod_reaches_outside_only_once_masqueraded_as_the_host(lab):
    pod = lab.add_pod("10.99.0.2")
    assert lab.outside_sees(pod) is None, "the outside must have no route back to the pod"

    assert lab.nat("ensure_masquerade", pod, "n1", "10.99.0.2", "10.99.0.2/24") is True

    assert lab.outside_sees(pod) == UPLINK
    assert lab.nat("has_masquerade", pod, "n1", "10.99.0.2", SUBNET) is True
    assert lab.nat("masquerades") == [_nat.Masquerade(pod, "n1", "10.99.0.2", SUBNET)]


def test_pod_to_pod_traffic_on_the_subnet_keeps_its_real_source(lab):
    pod_a, pod_b = lab.add_pod("10.99.0.2"), lab.add_pod("10.99.0.3")
    lab.nat("ensure_masquerade", pod_a, "n1", "10.99.0.2", SUBNET)
    lab.nat("ensure_masquerade", pod_b, "n1", "10.99.0.3", SUBNET)

    assert lab.peer_seen(pod_a, pod_b, "10.99.0.3") == "10.99.0.2"
    assert lab.outside_sees(pod_a) == UPLINK


def test_second_ensure_changes_nothing(lab):
    pod = lab.add_pod("10.99.0.2")
    assert lab.nat("ensure_masquerade", pod, "n1", "10.99.0.2", SUBNET) is True
    before = lab.ruleset()

    assert lab.nat("ensure_masquerade", pod, "n1", "10.99.0.2", SUBNET) is False

    assert lab.ruleset() == before
    assert lab.outside_sees(pod) == UPLINK


def _break_entry(lab: Lab) -> None:
    """Remove one piece by hand, the way an admin or another tool might."""
    if lab.backend == "nftables":
        lab.nft("delete", "element", "inet", "podnet", "masq_pods", "{ 10.99.0.2 }")
    else:
        lab.iptables(*_deleting(lab, "-j MASQUERADE"))


def _break_rule(lab: Lab) -> None:
    if lab.backend == "nftables":
        table = json.loads(lab.nft("-j", "list", "table", "inet", "podnet"))
        rule = next(
            item["rule"]
            for item in table["nftables"]
            if "rule" in item and item["rule"]["expr"] == [{"masquerade": None}]
        )
        lab.nft("delete", "rule", "inet", "podnet", rule["chain"], "handle", str(rule["handle"]))
    else:
        lab.iptables(*_deleting(lab, "-A POSTROUTING"))


def _deleting(lab: Lab, marker: str) -> list[str]:
    """The argv that deletes the saved rule containing marker."""
    line = next(line for line in lab.ruleset().splitlines() if marker in line)
    return ["-D", *shlex.split(line)[1:]]


@pytest.mark.parametrize("breakage", [_break_entry, _break_rule], ids=["entry", "rule"])
def test_masquerade_removed_by_hand_is_noticed_and_repaired(lab, breakage):
    pod = lab.add_pod("10.99.0.2")
    lab.nat("ensure_masquerade", pod, "n1", "10.99.0.2", SUBNET)
    before = lab.ruleset()

    breakage(lab)
    assert lab.outside_sees(pod) is None
    assert lab.nat("has_masquerade", pod, "n1", "10.99.0.2", SUBNET) is False

    assert lab.nat("ensure_masquerade", pod, "n1", "10.99.0.2", SUBNET) is True

    assert lab.outside_sees(pod) == UPLINK
    if lab.backend == "nftables":
        assert without_handles(lab.ruleset()) == without_handles(before)
    else:
        assert lab.ruleset() == before


def test_table_deleted_by_hand_is_rebuilt(lab):
    pod = lab.add_pod("10.99.0.2")
    lab.nat("ensure_masquerade", pod, "n1", "10.99.0.2", SUBNET)
    before = lab.ruleset()

    if lab.backend == "nftables":
        lab.nft("delete", "table", "inet", "podnet")
    else:
        lab.iptables("-F")
        lab.iptables("-X")
    assert lab.outside_sees(pod) is None
    assert lab.nat("masquerades") == []

    assert lab.nat("ensure_masquerade", pod, "n1", "10.99.0.2", SUBNET) is True

    assert lab.outside_sees(pod) == UPLINK
    if lab.backend == "nftables":
        assert without_handles(lab.ruleset()) == without_handles(before)
    else:
        assert lab.ruleset() == before


def test_removing_one_pod_by_its_tag_keeps_the_others(lab):
    pod_a, pod_b = lab.add_pod("10.99.0.2"), lab.add_pod("10.99.0.3")
    lab.nat("ensure_masquerade", pod_a, "n1", "10.99.0.2", SUBNET)
    lab.nat("ensure_masquerade", pod_b, "n1", "10.99.0.3", SUBNET)

    assert lab.nat("remove_masquerade", pod_a) is True

    assert lab.outside_sees(pod_a) is None
    assert lab.outside_sees(pod_b) == UPLINK
    assert lab.nat("masquerades") == [_nat.Masquerade(pod_b, "n1", "10.99.0.3", SUBNET)]
    assert lab.nat("remove_masquerade", pod_a) is False


def test_removing_everything_leaves_the_ruleset_as_it_was(lab):
    pod_a, pod_b = lab.add_pod("10.99.0.2"), lab.add_pod("10.99.0.3")
    empty = lab.ruleset()
    lab.nat("ensure_masquerade", pod_a, "n1", "10.99.0.2", SUBNET)
    lab.nat("ensure_masquerade", pod_a, "n2", "10.98.0.2", "10.98.0.0/24")
    lab.nat("ensure_masquerade", pod_b, "n1", "10.99.0.3", SUBNET)

    assert lab.nat("remove_masquerade", pod_a, "n2") is True
    assert lab.outside_sees(pod_a) == UPLINK
    assert lab.nat("masquerades") == [
        _nat.Masquerade(pod_a, "n1", "10.99.0.2", SUBNET),
        _nat.Masquerade(pod_b, "n1", "10.99.0.3", SUBNET),
    ]

    assert lab.nat("remove_masquerade", pod_a) is True
    assert lab.nat("remove_masquerade", pod_b, "n1") is True

    assert lab.ruleset() == empty
    assert lab.nat("masquerades") == []
    assert lab.outside_sees(pod_b) is None


def test_address_reused_by_a_new_pod_replaces_the_stale_entry(lab):
    pod = lab.add_pod("10.99.0.2")
    lab.nat("ensure_masquerade", "lost-pod", "n1", "10.99.0.2", SUBNET)

    assert lab.nat("ensure_masquerade", pod, "n1", "10.99.0.2", SUBNET) is True

    assert lab.nat("masquerades") == [_nat.Masquerade(pod, "n1", "10.99.0.2", SUBNET)]
    assert lab.outside_sees(pod) == UPLINK
