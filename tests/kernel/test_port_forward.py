"""port_forward on the real kernel: real TCP/UDP through host ports into pods, both backends.

Topology: a sandbox host with an outside namespace on 203.0.113.0/24 (uplink0 203.0.113.1),
pods on `default` (ptp, 172.16.28.0/24, masquerade) or on a bridge network. The outside has no
route to the pods: it reaches them only through the host's forwarded ports.
"""

from __future__ import annotations

import json
import os
import sys

import pytest
from sandbox import TcpServer, iptables_save, nft_ruleset, ns_run, sh, sysctl, tcp_peer_seen

UPLINK = "203.0.113.1"
OUTSIDE = "203.0.113.2"
HTTP = {"name": "http", "port": 80, "protocol": "tcp"}
DNS = {"name": "dns", "port": 53, "protocol": "udp"}
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
    import subprocess

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
