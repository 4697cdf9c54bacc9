"""port_forward on the real kernel: real TCP/UDP through host ports into pods, both backends.

Topology: a sandbox host with an outside namespace on 203.0.113.0/24 (uplink0 203.0.113.1),
pods on `default` (ptp, 172.16.28.0/24, masquerade) or on a bridge network. The outside has no
route to the pods: it reaches them only through the host's forwarded ports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sandbox import (
    TcpServer,
    iptables_save,
    nft_ruleset,
    ns_run,
    sh,
    sysctl,
    tcp_peer_seen,
)

from ansible_collections.podnet.cni.plugins.module_utils import (
    _nat,
    _nat_iptables,
    _nat_nft,
    _netns,
)

UPLINK = "203.0.113.1"
OUTSIDE = "203.0.113.2"
HTTP = {"name": "http", "port": 80, "protocol": "tcp"}
DNS = {"name": "dns", "port": 53, "protocol": "udp"}
ALT = {"name": "alt", "port": 8000, "protocol": "tcp"}
BRIDGE_CONF = {
    "name": "lan",
    "type": "bridge",
    "bridge": "rkt9",
    "isGateway": True,
    "ipMasq": True,
    # br_netfilter bridges a DNATed packet back to the port it came from: a pod reaching its
    # own forward needs hairpin on its port, as with CNI's bridge.
    "hairpinMode": True,
    "ipam": {"type": "host-local", "subnet": "10.22.0.0/24", "routes": [{"dst": "0.0.0.0/0"}]},
}
BACKENDS = ["nftables", "iptables"]


def up(host, networks=("default",)) -> tuple[str, str]:
    """A pod on the networks; returns (name, address on the first network)."""
    pod = host.pod_name()
    result = host.module(
        "pod_network", {"name": pod, "networks": list(networks), "add_default_restricted": False}
    )
    assert not result.failed, result.get("msg")
    return pod, result["interfaces"][0]["address"].split("/")[0]


def forward(host, pod, forwards, ports=(HTTP,), backend="auto", **kw) -> dict:
    args = {"pod": pod, "ports": list(ports), "forward": list(forwards), "nat_backend": backend}
    return host.module("port_forward", args, **kw)


def ok(result: dict) -> dict:
    assert not result.failed, result.get("msg")
    return result


def through(server_ns: str, client_ns: str, address: str, port: int, pod_port: int = 80):
    """The source the pod's server saw for a client connecting to address:port, or None."""
    server = TcpServer(server_ns, pod_port)
    try:
        return tcp_peer_seen(client_ns, address, port)
    finally:
        server.close()


def udp_echo_through(server_ns: str, client_ns: str, address: str, port: int) -> str | None:
    """Send one datagram from client to address:port; the pod's server on 53 replies."""
    server_code = (
        "import socket\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('0.0.0.0',53))\n"
        "print('ready',flush=True);s.settimeout(10)\n"
        "d,a=s.recvfrom(100);s.sendto(a[0].encode(),a)\n"
    )
    server = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{server_ns}", sys.executable, "-c", server_code],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout.readline().strip() == "ready"
        client_code = (
            "import socket\n"
            "c=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);c.settimeout(2)\n"
            f"c.sendto(b'hi',({address!r},{port}));print(c.recvfrom(100)[0].decode())\n"
        )
        result = ns_run(client_ns, [sys.executable, "-c", client_code], check=False)
        return result.stdout.strip() if result.returncode == 0 else None
    finally:
        server.kill()
        server.wait()


def ruleset(host) -> str:
    """Every NAT rule and user chain of the host, comparable between two snapshots.

    Tables iptables-nft made show through iptables-save, which keeps an empty nat table with
    its built-in chains once it exists: those chains are not ours to delete.
    """
    tables = []
    for item in nft_ruleset(host.name).get("nftables", []):
        body = next(iter(item.values()))
        if "metainfo" in item or body.get("table", body.get("name")) in ("nat", "filter"):
            continue
        body.pop("handle", None)
        tables.append(item)
    saved = [
        line
        for line in iptables_save(host.name).splitlines()
        if line.startswith("-A ") or (line.startswith(":") and " - " in line)
    ]
    return json.dumps(tables, sort_keys=True) + "\n" + "\n".join(saved)


@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_reaches_the_pod_from_outside_host_localhost_neighbour_and_itself(host, backend):
    outside = host.add_outside()
    pod, address = up(host)
    neighbour, _address = up(host)
    ok(forward(host, pod, ["http:8080"], backend=backend))

    assert through(pod, outside, UPLINK, 8080) == OUTSIDE  # the client's own address
    assert through(pod, host.name, UPLINK, 8080) == UPLINK
    assert through(pod, host.name, "127.0.0.1", 8080) == "172.16.28.1"  # masqueraded
    assert through(pod, neighbour, UPLINK, 8080) is not None
    assert through(pod, pod, UPLINK, 8080) == "172.16.28.1"  # hairpin
    assert through(pod, outside, UPLINK, 8081) is None
    record = json.load(open(os.path.join(host.state_dir, "pods", f"{pod}.json")))
    veth = record["attachments"][0]["host_ifname"]
    assert sysctl(host.name, f"net/ipv4/conf/{veth}/route_localnet") == "1"


@pytest.mark.parametrize("backend", BACKENDS)
def test_udp_forward_with_a_different_host_port(host, backend):
    outside = host.add_outside()
    pod, _address = up(host)
    ok(forward(host, pod, ["dns:5353"], ports=(DNS,), backend=backend))
    assert udp_echo_through(pod, outside, UPLINK, 5353) == OUTSIDE


@pytest.mark.parametrize("backend", BACKENDS)
def test_host_ip_forward_answers_only_on_that_address(host, backend):
    outside = host.add_outside()
    pod, _address = up(host)
    ok(forward(host, pod, [f"http:{UPLINK}:8080"], backend=backend))
    assert through(pod, outside, UPLINK, 8080) == OUTSIDE
    assert through(pod, host.name, UPLINK, 8080) == UPLINK
    assert through(pod, host.name, "127.0.0.1", 8080) is None
    assert through(pod, host.name, "172.16.28.1", 8080) is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_teardown_by_absent_or_pod_network_leaves_the_ruleset_as_before(host, backend):
    host.add_outside()
    empty = ruleset(host)
    pod, _address = up(host)
    other, _address = up(host)
    with_pods = ruleset(host)

    ok(forward(host, pod, ["http:8080"], backend=backend))
    ok(forward(host, other, ["http:9090"], backend=backend))
    assert ruleset(host) != with_pods
    gone = ok(host.module("port_forward", {"pod": pod, "state": "absent"}))
    assert gone["changed"] is True
    assert ok(host.module("port_forward", {"pod": pod, "state": "absent"}))["changed"] is False
    assert ruleset(host) != with_pods, "the other pod's forward stays"

    ok(host.module("pod_network", {"name": other, "state": "absent"}))
    ok(host.module("pod_network", {"name": pod, "state": "absent"}))
    assert ruleset(host) == empty


@pytest.mark.parametrize("backend", BACKENDS)
def test_bridge_pods_reach_each_others_forward_and_their_own(host, backend, tmp_path):
    with open(os.path.join(host.conf_dir, "10-lan.conf"), "w") as handle:
        json.dump(BRIDGE_CONF, handle)
    outside = host.add_outside()
    web, web_address = up(host, ["lan"])
    db, _address = up(host, ["lan"])
    ok(forward(host, web, ["http:8080"], backend=backend))
    assert through(web, outside, UPLINK, 8080) == OUTSIDE
    assert through(web, db, UPLINK, 8080) == "10.22.0.1"  # hairpin on the bridge
    assert through(web, web, UPLINK, 8080) == "10.22.0.1"
    assert through(web, host.name, "127.0.0.1", 8080) == "10.22.0.1"
    assert sysctl(host.name, "net/ipv4/conf/rkt9/route_localnet") == "1"
    ok(host.module("port_forward", {"pod": web, "state": "absent"}))
    assert sysctl(host.name, "net/ipv4/conf/rkt9/route_localnet") == "0"
    assert web_address == "10.22.0.2"


def test_conflicts_and_bad_input_fail_clearly_and_change_nothing(host):
    a, _address = up(host)
    b, _address = up(host)
    ok(forward(host, a, ["http:8080"]))
    before = ruleset(host)
    cases = [
        (b, ["http:8080"], "already forwarded to pod"),
        (b, [f"http:{UPLINK}:8080"], "already forwarded to pod"),
        (b, ["http:9090", "http:9090"], "already mapped"),
        (b, ["web:9090"], 'port name "web"'),
        (b, ["http:1.2.3:9090"], "not a valid IP"),
        (b, ["http:70000"], "not a valid port number"),
        (b, ["http"], "name:[ip:]port"),
        ("nosuchpod", ["http:9090"], "unknown"),
    ]
    for pod, forwards, message in cases:
        result = forward(host, pod, forwards)
        assert result.failed and message in result["msg"], (forwards, result.get("msg"))
    assert ruleset(host) == before


def test_host_and_none_mode_pods_are_refused(host):
    for networks in (["host"], ["none"]):
        pod = host.pod_name()
        ok(host.module("pod_network", {"name": pod, "networks": networks}))
        result = forward(host, pod, ["http:8080"])
        assert result.failed and "mode" in result["msg"], result.get("msg")
        ok(host.module("pod_network", {"name": pod, "state": "absent"}))


@pytest.mark.parametrize("backend", BACKENDS)
def test_check_mode_diff_idempotence_and_drift_repair(host, backend):
    outside = host.add_outside()
    pod, _address = up(host)
    before = ruleset(host)
    predicted = forward(host, pod, ["http:8080"], backend=backend, check=True, diff=True)
    assert predicted["changed"] is True
    assert predicted["diff"]["after"]["forwards"] == ["tcp-0.0.0.0:8080 -> 172.16.28.2:80"]
    assert ruleset(host) == before

    assert ok(forward(host, pod, ["http:8080"], backend=backend))["changed"] is True
    assert forward(host, pod, ["http:8080"], backend=backend)["changed"] is False
    assert forward(host, pod, ["http:8080"], backend=backend, check=True)["changed"] is False

    if backend == "nftables":
        host.run(["nft", "flush", "table", "inet", "podnet_forward"])
    else:
        host.run(["iptables", "-t", "nat", "-F", "PODNET-FWD-DNAT"])
    assert through(pod, outside, UPLINK, 8080) is None
    assert forward(host, pod, ["http:8080"], backend=backend, check=True)["changed"] is True
    assert ok(forward(host, pod, ["http:8080"], backend=backend))["changed"] is True
    assert through(pod, outside, UPLINK, 8080) == OUTSIDE

    moved = ok(forward(host, pod, ["http:8081"], backend=backend, diff=True))
    assert moved["diff"]["before"]["forwards"] == ["tcp-0.0.0.0:8080 -> 172.16.28.2:80"]
    assert through(pod, outside, UPLINK, 8080) is None
    assert through(pod, outside, UPLINK, 8081) == OUTSIDE


def test_stale_rules_of_a_forgotten_pod_do_not_steal_the_port(host):
    """C06: rules whose pod record is gone are replaced by the pod that now asks for the port."""
    outside = host.add_outside()
    old, _address = up(host)
    ok(forward(host, old, ["http:8080"]))
    os.unlink(os.path.join(host.state_dir, "pods", f"{old}.json"))
    sh(["ip", "netns", "del", old])
    new, _address = up(host)
    ok(forward(host, new, ["http:8080"]))
    assert through(new, outside, UPLINK, 8080) == OUTSIDE


def record_of(host, pod: str) -> dict:
    with open(os.path.join(host.state_dir, "pods", f"{pod}.json")) as handle:
        return json.load(handle)


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_pods_with_two_ports_each_are_reached_on_their_own_host_ports(host, backend):
    outside = host.add_outside()
    web, _address = up(host)
    api, _address = up(host)
    ok(forward(host, web, ["http:8081", "alt:8082"], ports=(HTTP, ALT), backend=backend))
    ok(forward(host, api, ["http:8083", "alt:8084"], ports=(HTTP, ALT), backend=backend))

    # A server listens only in the pod a host port should reach: a forward to the wrong pod or
    # port finds no listener and the connection fails.
    for pod, host_port, pod_port in (
        (web, 8081, 80),
        (web, 8082, 8000),
        (api, 8083, 80),
        (api, 8084, 8000),
    ):
        assert through(pod, outside, UPLINK, host_port, pod_port) == OUTSIDE, (pod, host_port)
        assert through(pod, host.name, "127.0.0.1", host_port, pod_port) == "172.16.28.1"
    assert through(web, outside, UPLINK, 8083, 80) is None
    assert through(api, outside, UPLINK, 8082, 8000) is None

    ok(host.module("port_forward", {"pod": web, "state": "absent"}))
    assert through(web, outside, UPLINK, 8081) is None
    assert through(api, outside, UPLINK, 8084, 8000) == OUTSIDE


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("masq", [True, False])
def test_bridge_forward_from_outside_targets_the_first_masqueraded_network(host, backend, masq):
    """rkt's choice: the first network with ipMasq (here the bridge, when it masquerades),
    else the last one (here default)."""
    with open(os.path.join(host.conf_dir, "10-lan.conf"), "w") as handle:
        json.dump({**BRIDGE_CONF, "ipMasq": masq}, handle)
    outside = host.add_outside()
    pod = host.pod_name()
    attached = ok(
        host.module(
            "pod_network",
            {"name": pod, "networks": ["lan", "default"], "add_default_restricted": False},
        )
    )
    by_network = {i["network"]: i["address"].split("/")[0] for i in attached["interfaces"]}

    result = ok(forward(host, pod, ["http:8080"], backend=backend))
    expected = by_network["lan"] if masq else by_network["default"]
    assert [f["address"] for f in result["forwards"]] == [expected]
    assert through(pod, outside, UPLINK, 8080) == OUTSIDE
    if backend == "nftables":
        listed = host.run(["nft", "list", "map", "inet", "podnet_forward", "fwd_any"]).stdout
    else:
        listed = host.run(["iptables-save", "-t", "nat"]).stdout
    assert f"{expected} . 80" in listed or f"{expected}:80" in listed


def test_forwards_refused_half_way_leave_no_rule_sysctl_or_record_behind(host):
    """The change is route_localnet, then one nft transaction with every element. Here the
    kernel accepts the first half of the elements and refuses the rest: the hairpin map was
    made (by hand, as a stand-in for any kernel limit) with room for one element, and the pod
    asks for two ports. Nothing of the transaction stays, and route_localnet is put back.
    """
    outside = host.add_outside()
    pod, _address = up(host)
    veth = record_of(host, pod)["attachments"][0]["host_ifname"]
    localnet = f"net/ipv4/conf/{veth}/route_localnet"
    full = f"{_nat_nft.FWD_SNAT} {{ type ipv4_addr . inet_proto . inet_service : verdict; }}"
    table = [
        line.replace(full, full[:-1] + "size 1; }") for line in _nat_nft.render_forward_table([])
    ]
    assert any("size 1" in line for line in table)
    host.run(["nft", "-f", "-"], input="\n".join(table) + "\n")
    before = ruleset(host)

    result = forward(host, pod, ["http:8080", "alt:8081"], ports=(HTTP, ALT), backend="nftables")
    assert result.failed and "nftables refused the change" in result["msg"], result
    assert ruleset(host) == before
    assert sysctl(host.name, localnet) == "0"
    assert "forwards" not in record_of(host, pod)
    assert through(pod, outside, UPLINK, 8080) is None

    # Nothing was left half-held: one port fits, and goes in cleanly.
    ok(forward(host, pod, ["http:8080"], ports=(HTTP, ALT), backend="nftables"))
    assert sysctl(host.name, localnet) == "1"
    assert through(pod, outside, UPLINK, 8080) == OUTSIDE


def _refused_line(backend: str) -> str:
    """A last line the kernel refuses although it parses: a jump to a chain that does not exist."""
    if backend == "nftables":
        return (
            f"add element {_nat_nft.FORWARD_WHERE} {_nat_nft.FWD_SNAT} "
            '{ 172.16.28.99 . tcp . 80 comment "pod=x" : jump fsnat_nosuchchain }'
        )
    return f"-A {_nat_iptables.FORWARD_SNAT} -s 172.16.28.0/24 -j PODNET-NO-SUCH-CHAIN"


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_transaction_refused_at_its_last_line_changes_nothing(host, backend):
    """The backends' atomicity, which "no half-added forwards" rests on: a change whose first
    lines are good and whose last line the kernel refuses leaves the ruleset as it was."""
    pod, address = up(host)
    other, other_address = up(host)
    ok(forward(host, other, ["http:9090"], backend=backend))
    before = ruleset(host)
    forwards = [
        _nat.PortForward(pod, "tcp", None, port, address, 80, "172.16.28.0/24")
        for port in (8081, 8082)
    ]

    with _netns.entered(host.netns):
        nat = _nat.nat_backend(backend)
        if backend == "nftables":
            script = _nat_nft.plan_forwards(nat._read_forwards(), pod, forwards)
        else:
            script = _nat_iptables.plan_forwards(nat._read(), pod, forwards)
        assert len(script) > 1
        with pytest.raises(_nat.PodnetError, match="refused the change"):
            nat._apply([*script, _refused_line(backend)], "test")
        assert not nat.has_forwards(pod, forwards)
        assert [f.pod for f in nat.forwards()] == [other]

    assert ruleset(host) == before
    assert other_address != address
