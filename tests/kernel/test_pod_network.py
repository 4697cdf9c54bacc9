"""pod_network on the real kernel: every pod in a sandbox host namespace the test creates."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sandbox import (
    COLLECTIONS,
    REPO,
    TcpServer,
    addresses,
    ip_json,
    iptables_save,
    links,
    netns_exists,
    nft_ruleset,
    ns_run,
    ping,
    sysctl,
    tcp_peer_seen,
    wait_for,
)

BRIDGE_CONF = {
    "name": "lan",
    "type": "bridge",
    "bridge": "rkt9",
    "isGateway": True,
    "ipMasq": True,
    "ipam": {"type": "host-local", "subnet": "10.22.0.0/24", "routes": [{"dst": "0.0.0.0/0"}]},
}
PTP_CONF = {
    "name": "p2p",
    "type": "ptp",
    "ipMasq": False,
    "ipam": {"type": "host-local", "subnet": "10.23.0.0/24"},
}


def write_conf(host, filename: str, conf: dict) -> None:
    with open(os.path.join(host.conf_dir, filename), "w") as handle:
        json.dump(conf, handle)


def up(host, pod: str, networks, **extra) -> dict:
    result = host.module("pod_network", {"name": pod, "networks": networks, **extra})
    assert not result.failed, result.get("msg")
    return result


def down(host, pod: str, **extra) -> dict:
    result = host.module("pod_network", {"name": pod, "state": "absent", **extra})
    assert not result.failed, result.get("msg")
    return result


def lease_files(host) -> list[str]:
    found = []
    for root, _dirs, files in os.walk(host.data_dir):
        found += [os.path.join(root, f) for f in files if f[0].isdigit()]
    return found


def nft_content(host) -> list:
    """nft objects, leaving out a table that holds nothing but empty base chains.

    Debian's iptables is iptables-nft: it leaves an empty `ip nat` table behind after its last
    rule goes. podnet does not delete that shared table (another tool may be about to use it).
    """
    items = [next(iter(entry.items())) for entry in nft_ruleset(host.name)["nftables"][1:]]
    busy = {(v["family"], v["table"]) for kind, v in items if kind in ("rule", "set", "map")}
    busy |= {(v["family"], v["table"]) for kind, v in items if kind == "chain" and "hook" not in v}
    return [
        (kind, v) for kind, v in items if (v.get("family"), v.get("table", v.get("name"))) in busy
    ]


def host_snapshot(host) -> dict:
    """What the kernel shows in the sandbox host: links, routes, NAT rules, ip_forward."""
    return {
        "links": sorted(links(host.name)),
        # Without "flags": "linkdown" comes and goes with a new veth's carrier, on its own.
        "routes": [
            {k: v for k, v in route.items() if k != "flags"}
            for route in ip_json(host.name, "route", "show")
        ],
        "nft": nft_content(host),
        "iptables": [line for line in iptables_save(host.name).splitlines() if line[:2] == "-A"],
        "ip_forward": sysctl(host.name, "net.ipv4.ip_forward"),
    }


def test_host_mode_shares_the_host_namespace_and_warns(host):
    pod = host.pod_name()
    result = up(host, pod, ["host"])
    assert result["mode"] == "host" and result["netns"] is None
    assert "abstract unix sockets" in json.dumps(result.get("warnings"))
    assert not netns_exists(pod)
    assert up(host, pod, ["host"])["changed"] is False
    assert down(host, pod)["changed"] is True


def test_none_gives_only_loopback_up(host):
    pod = host.pod_name()
    result = up(host, pod, "none")
    assert result["interfaces"] == []
    pod_links = links(pod)
    assert list(pod_links) == ["lo"]
    assert "UP" in pod_links["lo"]["flags"]
    assert ping(pod, "127.0.0.1")
    down(host, pod)
    assert not netns_exists(pod)


def test_default_reaches_host_and_outside_through_masquerade(host):
    outside = host.add_outside()
    pod = host.pod_name()
    result = up(host, pod, ["default"])
    (eth0,) = result["interfaces"]
    assert eth0["network"] == "default" and eth0["ifname"] == "eth0"
    assert eth0["address"] == "172.16.28.2/24" and eth0["gateway"] == "172.16.28.1"
    assert addresses(pod, "eth0") == ["172.16.28.2/24"]
    assert ping(pod, "172.16.28.1")
    assert ping(pod, "203.0.113.2")
    server = TcpServer(outside, 8080)
    try:
        assert tcp_peer_seen(pod, "203.0.113.2", 8080) == "203.0.113.1"
    finally:
        server.close()
    assert sysctl(host.name, "net.ipv4.ip_forward") == "1"


def test_default_restricted_reaches_host_but_not_outside(host):
    host.add_outside()
    pod = host.pod_name()
    result = up(host, pod, ["default-restricted"])
    assert [i["address"] for i in result["interfaces"]] == ["172.31.0.2/16"]
    assert ping(pod, "172.31.0.1")
    assert not ping(pod, "203.0.113.2")
    routes = ip_json(pod, "route", "show")
    assert not any(route["dst"] == "default" for route in routes)


def test_two_pods_on_one_bridge_reach_each_other(host):
    write_conf(host, "10-lan.conf", BRIDGE_CONF)
    web, db = host.pod_name(), host.pod_name()
    first = up(host, web, ["lan"], add_default_restricted=False)
    second = up(host, db, ["lan"], add_default_restricted=False)
    assert first["interfaces"][0]["address"] == "10.22.0.2/24"
    assert second["interfaces"][0]["address"] == "10.22.0.3/24"
    assert ping(web, "10.22.0.3") and ping(db, "10.22.0.2")
    bridge = links(host.name)["rkt9"]
    assert bridge["linkinfo"]["info_kind"] == "bridge"
    assert addresses(host.name, "rkt9") == ["10.22.0.1/24"]
    ports = {link["ifname"] for link in links(host.name).values() if link.get("master") == "rkt9"}
    assert ports == {first["interfaces"][0]["host_ifname"], second["interfaces"][0]["host_ifname"]}
    server = TcpServer(db, 5432)
    try:
        assert tcp_peer_seen(web, "10.22.0.3", 5432) == "10.22.0.2"  # no masquerade inside
    finally:
        server.close()
    down(host, web)
    down(host, db)
    assert "rkt9" not in links(host.name), "the bridge podnet made goes with its last pod"


def test_ptp_pods_reach_each_other_through_the_host(host):
    write_conf(host, "20-p2p.conf", PTP_CONF)
    a, b = host.pod_name(), host.pod_name()
    up(host, a, ["p2p"], add_default_restricted=False)
    up(host, b, ["p2p"], add_default_restricted=False)
    assert ping(a, "10.23.0.3")
    route = ns_run(a, ["ip", "-j", "route", "get", "10.23.0.3"]).stdout
    assert json.loads(route)[0]["gateway"] == "10.23.0.1", "ptp neighbours go via the host"


def test_conf_file_order_gives_interface_names(host):
    write_conf(host, "10-lan.conf", BRIDGE_CONF)
    write_conf(host, "20-p2p.conf", PTP_CONF)
    pod = host.pod_name()
    result = up(host, pod, ["default", "p2p", "lan"])
    assert [(i["network"], i["ifname"]) for i in result["interfaces"]] == [
        ("lan", "eth0"),
        ("p2p", "eth1"),
        ("default", "eth2"),
    ]
    assert addresses(pod, "eth0") == ["10.22.0.2/24"]
    assert addresses(pod, "eth1") == ["10.23.0.2/24"]
    assert addresses(pod, "eth2") == ["172.16.28.2/24"]


def test_default_restricted_is_added_unless_default_is_named(host):
    write_conf(host, "lan.conf", BRIDGE_CONF)
    pod, other = host.pod_name(), host.pod_name()
    result = up(host, pod, ["lan"])
    assert [(i["network"], i["ifname"]) for i in result["interfaces"]] == [
        ("default-restricted", "eth0"),
        ("lan", "eth1"),
    ]
    result = up(host, other, ["lan"], add_default_restricted=False)
    assert [i["network"] for i in result["interfaces"]] == ["lan"]
    assert sorted(links(other)) == ["eth0", "lo"]


def test_requested_ip_lands_exactly_and_a_taken_one_leaves_nothing(host):
    write_conf(host, "10-lan.conf", BRIDGE_CONF)
    first, second = host.pod_name(), host.pod_name()
    result = up(host, first, "lan:IP=10.22.0.77", add_default_restricted=False)
    assert result["interfaces"][0]["address"] == "10.22.0.77/24"
    assert addresses(first, "eth0") == ["10.22.0.77/24"]
    before = host_snapshot(host)
    leases_before = lease_files(host)

    failed = host.module(
        "pod_network", {"name": second, "networks": ["default", "lan:IP=10.22.0.77"]}
    )
    assert failed.failed
    assert "10.22.0.77" in failed["msg"] and "lan" in failed["msg"]
    assert not netns_exists(second)
    assert host_snapshot(host) == before
    assert lease_files(host) == leases_before
    assert not os.path.exists(os.path.join(host.state_dir, "pods", f"{second}.json"))


def test_failure_half_way_undoes_the_whole_run(host):
    host.add_outside()
    write_conf(host, "50-broken.conf", dict(BRIDGE_CONF, name="broken", bridge="uplink0"))
    pod = host.pod_name()
    before = host_snapshot(host)
    failed = host.module("pod_network", {"name": pod, "networks": ["default", "broken"]})
    assert failed.failed
    assert "uplink0" in failed["msg"] and "not a bridge" in failed["msg"]
    assert not netns_exists(pod)
    assert host_snapshot(host) == before
    assert lease_files(host) == []


def test_teardown_leaves_no_link_lease_rule_or_namespace(host):
    write_conf(host, "10-lan.conf", BRIDGE_CONF)
    host.add_outside()
    before = host_snapshot(host)
    pods = [host.pod_name() for _pod in range(2)]
    for pod in pods:
        up(host, pod, ["default", "lan"])
    assert host_snapshot(host) != before
    for pod in pods:
        assert down(host, pod)["changed"] is True
        assert not netns_exists(pod)
        assert not os.path.exists(f"/etc/netns/{pod}")
    assert host_snapshot(host) == before
    assert lease_files(host) == []
    assert down(host, pods[0])["changed"] is False


def test_absent_after_the_namespace_vanished_still_releases_everything(host):
    pod = host.pod_name()
    before = host_snapshot(host)
    up(host, pod, ["default"])
    subprocess.run(["ip", "netns", "del", pod], check=True)
    down(host, pod)
    assert lease_files(host) == []
    assert host_snapshot(host) == before


def test_second_run_changes_nothing_and_check_mode_predicts(host):
    write_conf(host, "10-lan.conf", BRIDGE_CONF)
    pod = host.pod_name()
    args = {"name": pod, "networks": ["default", "lan"]}
    predicted = host.module("pod_network", args, check=True, diff=True)
    assert predicted["changed"] is True
    assert not netns_exists(pod) and lease_files(host) == []
    assert [a["address"] for a in predicted["diff"]["after"]["attachments"]] == [
        "10.22.0.2/24",
        "172.16.28.2/24",
    ]

    made = host.module("pod_network", args, diff=True)
    assert made["changed"] is True
    assert made["diff"]["before"] == {}
    assert made["diff"]["after"] == predicted["diff"]["after"]
    snapshot = host_snapshot(host)

    again = host.module("pod_network", args, diff=True)
    assert again["changed"] is False and again["actions"] == []
    assert again["diff"]["before"] == again["diff"]["after"]
    assert host.module("pod_network", args, check=True)["changed"] is False
    assert host_snapshot(host) == snapshot

    gone = host.module("pod_network", {"name": pod, "state": "absent"}, check=True)
    assert gone["changed"] is True and netns_exists(pod)


def test_rerun_repairs_a_deleted_link_and_a_flushed_masquerade(host):
    host.add_outside()
    pod = host.pod_name()
    result = up(host, pod, ["default"])
    host_ifname = result["interfaces"][0]["host_ifname"]
    host.run(["ip", "link", "del", host_ifname])
    assert not ping(pod, "172.16.28.1")
    repaired = up(host, pod, ["default"])
    assert repaired["changed"] is True
    assert repaired["interfaces"][0]["address"] == "172.16.28.2/24", "the address is kept"
    assert ping(pod, "203.0.113.2")

    link_before = links(pod)["eth0"]
    host.run(["nft", "flush", "ruleset"])
    assert not ping(pod, "203.0.113.2")
    fixed = up(host, pod, ["default"])
    assert fixed["changed"] is True
    assert fixed["actions"] == ["repair the masquerade of default (eth0)"], fixed["actions"]
    assert ping(pod, "203.0.113.2")
    link_after = links(pod)["eth0"]
    assert (link_after["ifindex"], link_after["address"]) == (
        link_before["ifindex"],
        link_before["address"],
    ), "fixed in place, the link kept"
    assert up(host, pod, ["default"])["changed"] is False


def test_changing_the_networks_moves_the_pod(host):
    write_conf(host, "10-lan.conf", BRIDGE_CONF)
    pod = host.pod_name()
    up(host, pod, ["default"])
    result = up(host, pod, ["lan"], add_default_restricted=False)
    assert [i["network"] for i in result["interfaces"]] == ["lan"]
    assert sorted(links(pod)) == ["eth0", "lo"]
    assert addresses(pod, "eth0") == ["10.22.0.2/24"]
    assert not any("172.16.28" in path for path in lease_files(host))


def test_hosts_and_resolv_conf_are_seen_by_ip_netns_exec(host):
    write_conf(
        host,
        "10-lan.conf",
        dict(BRIDGE_CONF, dns={"nameservers": ["10.22.0.53"], "search": ["pods.example"]}),
    )
    pod = host.pod_name()
    up(host, pod, ["lan"], hostname="webhost", add_default_restricted=False)
    hosts = subprocess.run(
        ["ip", "netns", "exec", pod, "cat", "/etc/hosts"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "webhost" in hosts and "127.0.0.1" in hosts
    resolv = subprocess.run(
        ["ip", "netns", "exec", pod, "cat", "/etc/resolv.conf"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "nameserver 10.22.0.53" in resolv and "search pods.example" in resolv


def test_many_pods_in_one_call(host):
    write_conf(host, "10-lan.conf", BRIDGE_CONF)
    names = [host.pod_name() for _pod in range(5)]
    pods = [{"name": name, "networks": ["lan"]} for name in names]
    result = host.module("pod_network", {"pods": pods, "add_default_restricted": False})
    assert not result.failed, result.get("msg")
    assert [p["interfaces"][0]["address"] for p in result["pods"]] == [
        f"10.22.0.{i}/24" for i in range(2, 7)
    ]
    assert ping(names[0], "10.22.0.6")
    again = host.module("pod_network", {"pods": pods, "add_default_restricted": False})
    assert again["changed"] is False
    gone = host.module("pod_network", {"pods": pods, "state": "absent"})
    assert gone["changed"] is True and not any(netns_exists(n) for n in names)


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_masquerade_backend_forced(host, backend):
    outside = host.add_outside()
    before = host_snapshot(host)
    pod = host.pod_name()
    up(host, pod, ["default"], nat_backend=backend)
    if backend == "iptables":
        assert "MASQUERADE" in iptables_save(host.name)
    else:
        assert nft_ruleset(host.name)["nftables"][1:], "an nftables table holds the masquerade"
    server = TcpServer(outside, 8081)
    try:
        assert tcp_peer_seen(pod, "203.0.113.2", 8081) == "203.0.113.1"
    finally:
        server.close()
    down(host, pod, nat_backend=backend)
    assert host_snapshot(host) == before


@pytest.mark.parametrize(
    ("networks", "expected"),
    [
        (["nosuch", "alsomissing"], "networks not found: nosuch, alsomissing"),
        (["default", "default"], 'duplicate netname "default"'),
        (["host:IP=1.2.3.4"], "host"),
        (["default:IP=10.9.9.9"], "10.9.9.9"),
        (["default:FOO=1"], "FOO"),
        (["default:IP=notanip"], "notanip"),
        (["a:b:c"], "a"),
    ],
)
def test_bad_requests_fail_clearly_and_change_nothing(host, networks, expected):
    pod = host.pod_name()
    before = host_snapshot(host)
    result = host.module("pod_network", {"name": pod, "networks": networks})
    assert result.failed and expected in result["msg"], result.get("msg")
    assert not netns_exists(pod) and host_snapshot(host) == before and lease_files(host) == []


def test_ad_hoc_ansible_command_inside_a_sandbox_host(host, tmp_path):
    """`ansible localhost -m podnet.cni.pod_network` with the interpreter entered into the host."""
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\nexec nsenter --net={host.netns} {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    pod = host.pod_name()
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS, "ANSIBLE_HOME": str(tmp_path)}
    base = [
        "ansible",
        "localhost",
        "-c",
        "local",
        "-e",
        f"ansible_python_interpreter={wrapper}",
        "-m",
        "podnet.cni.pod_network",
    ]
    dirs = f"conf_dir={host.conf_dir} data_dir={host.data_dir} state_dir={host.state_dir}"
    bindir = os.path.dirname(sys.executable)
    run = subprocess.run(
        [os.path.join(bindir, base[0]), *base[1:], "-a", f"name={pod} networks=default {dirs}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "172.16.28.2/24" in run.stdout
    assert ping(pod, "172.16.28.1")
    run = subprocess.run(
        [os.path.join(bindir, base[0]), *base[1:], "-a", f"name={pod} state=absent {dirs}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert not netns_exists(pod)


def test_exhausted_network_fails_naming_it_and_leaves_nothing(host):
    """bugs.md C03: the message names the network and the range; no half-made pod."""
    write_conf(
        host,
        "10-tiny.conf",
        dict(PTP_CONF, name="tiny", ipam={"type": "host-local", "subnet": "10.30.0.0/30"}),
    )
    first, second = host.pod_name(), host.pod_name()
    assert up(host, first, ["tiny"])["interfaces"][0]["address"] == "10.30.0.2/30"
    before = host_snapshot(host)
    leases = lease_files(host)
    failed = host.module("pod_network", {"name": second, "networks": ["tiny"]})
    assert failed.failed
    assert "tiny" in failed["msg"] and "no IP addresses available" in failed["msg"]
    assert not netns_exists(second)
    assert host_snapshot(host) == before and lease_files(host) == leases


def test_default_gateway_flag_with_an_ipam_default_route_adds_one_route(host):
    """bugs.md C12: isDefaultGateway plus an IPAM default route is not a 'file exists'."""
    write_conf(host, "10-lan.conf", dict(BRIDGE_CONF, isDefaultGateway=True))
    pod = host.pod_name()
    up(host, pod, ["lan"], add_default_restricted=False)
    defaults = [r for r in ip_json(pod, "route", "show") if r["dst"] == "default"]
    assert [(r["gateway"], r["dev"]) for r in defaults] == [("10.22.0.1", "eth0")]


def test_mtu_is_applied_to_both_ends_and_a_new_bridge(host):
    write_conf(host, "10-lan.conf", dict(BRIDGE_CONF, mtu=1400))
    pod = host.pod_name()
    result = up(host, pod, ["lan"], add_default_restricted=False)
    assert links(pod)["eth0"]["mtu"] == 1400
    assert links(host.name)[result["interfaces"][0]["host_ifname"]]["mtu"] == 1400
    assert links(host.name)["rkt9"]["mtu"] == 1400


def test_leftover_host_link_of_a_crashed_run_is_replaced(host):
    """bugs.md C17: a stale host veth for the same attachment does not block the pod."""
    pod = host.pod_name()
    result = up(host, pod, ["default"])
    host_ifname = result["interfaces"][0]["host_ifname"]
    state = os.path.join(host.state_dir, "pods", f"{pod}.json")
    os.unlink(state)  # the record is lost, the kernel state stays: as after a crash
    subprocess.run(["ip", "netns", "del", pod], check=True)
    # The kernel dismantles a deleted namespace (and its veth peers) asynchronously.
    assert wait_for(lambda: host_ifname not in links(host.name))
    host.run(["ip", "link", "add", host_ifname, "type", "veth", "peer", "name", "stale0"])
    assert up(host, pod, ["default"])["changed"] is True
    assert ping(pod, "172.16.28.1")


def test_info_lists_pods_and_sees_what_the_kernel_lost(host):
    write_conf(host, "10-lan.conf", BRIDGE_CONF)
    web, db = host.pod_name(), host.pod_name()
    up(host, web, ["default"])
    up(host, db, ["lan"], add_default_restricted=False)
    info = host.module("pod_network_info", {"state_dir": host.state_dir}, with_dirs=False)
    pods = {pod["name"]: pod for pod in info["pods"]}
    assert set(pods) == {web, db} and info["changed"] is False
    assert pods[web]["interfaces"][0]["address"] == "172.16.28.2/24"
    assert pods[web]["alive"] and pods[web]["interfaces"][0]["present"]
    ns_run(db, ["ip", "link", "del", "eth0"])
    only = host.module(
        "pod_network_info", {"state_dir": host.state_dir, "name": db}, with_dirs=False
    )
    assert [p["name"] for p in only["pods"]] == [db]
    assert only["pods"][0]["interfaces"][0]["present"] is False


def test_concurrent_runs_share_the_host_without_losing_each_other(host):
    from concurrent.futures import ThreadPoolExecutor

    names = [host.pod_name() for _pod in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda n: up(host, n, ["default"]), names))
    got = sorted(r["interfaces"][0]["address"] for r in results)
    assert got == sorted(f"172.16.28.{i}/24" for i in range(2, 6))
    for name in names[:-1]:
        down(host, name)
    assert sysctl(host.name, "net.ipv4.ip_forward") == "1", "the last pod still needs it"
    assert ping(names[-1], "172.16.28.1")
    down(host, names[-1])
    assert sysctl(host.name, "net.ipv4.ip_forward") == "0"


@pytest.mark.parametrize(
    "name", ["../../escape", "a/b", "", "..", "-dash", "sp ace", "x" * 64, "new\nline"]
)
def test_pod_names_that_are_not_file_names_are_refused(host, name):
    before = host_snapshot(host)
    result = host.module("pod_network", {"name": name, "networks": ["default"]})
    assert result.failed and 'field "name"' in result["msg"], result.get("msg")
    assert host_snapshot(host) == before and lease_files(host) == []
    assert not os.path.exists(os.path.join(host.state_dir, "pods"))


def test_bad_hostname_is_refused(host):
    result = host.module("pod_network", {"name": host.pod_name(), "hostname": "a\nb c"})
    assert result.failed and 'field "hostname"' in result["msg"]


def test_an_existing_namespace_is_used_but_never_deleted(host):
    pod = host.pod_name()
    subprocess.run(["ip", "netns", "add", pod], check=True)
    up(host, pod, ["default"])
    assert ping(pod, "172.16.28.1")
    down(host, pod)
    assert netns_exists(pod), "podnet did not create it, so it does not delete it"
    assert sorted(links(pod)) == ["lo"]


def test_the_hosts_own_namespace_is_refused_as_a_pod(host):
    result = host.module("pod_network", {"name": host.pod_name(), "netns": host.netns})
    assert result.failed and "host's own" in result["msg"]


def test_absent_removes_only_the_etc_files_podnet_wrote(host):
    pod = host.pod_name()
    os.makedirs(f"/etc/netns/{pod}")
    with open(f"/etc/netns/{pod}/nsswitch.conf", "w") as handle:
        handle.write("hosts: files\n")
    up(host, pod, "none")
    assert os.path.exists(f"/etc/netns/{pod}/hosts")
    down(host, pod)
    assert sorted(os.listdir(f"/etc/netns/{pod}")) == ["nsswitch.conf"]


def test_overlapping_ranges_of_two_networks_are_warned_about(host):
    write_conf(host, "10-lan.conf", BRIDGE_CONF)
    write_conf(
        host,
        "20-over.conf",
        dict(PTP_CONF, name="over", ipam={"type": "host-local", "subnet": "10.22.0.0/25"}),
    )
    write_conf(
        host,
        "30-side.conf",
        dict(
            PTP_CONF,
            name="side",
            ipam={"type": "host-local", "subnet": "10.22.0.0/24", "rangeStart": "10.22.0.200"},
        ),
    )
    result = up(host, host.pod_name(), ["over"], add_default_restricted=False)
    warnings = json.dumps(result.get("warnings"))
    assert 'network \\"lan\\"' in warnings and "same address" in warnings
    side = up(host, host.pod_name(), ["lan"], add_default_restricted=False)
    assert '\\"side\\"' in json.dumps(side.get("warnings"))  # 10.22.0.200+ is in lan's range


def test_masquerade_made_with_iptables_is_removed_by_a_plain_absent(host):
    pod = host.pod_name()
    before = host_snapshot(host)
    up(host, pod, ["default"], nat_backend="iptables")
    assert "MASQUERADE" in iptables_save(host.name)
    down(host, pod)  # nat_backend left at auto: the record says which backend made it
    assert host_snapshot(host) == before


def test_a_damaged_pod_record_is_a_clear_error(host):
    pod = host.pod_name()
    os.makedirs(os.path.join(host.state_dir, "pods"))
    with open(os.path.join(host.state_dir, "pods", f"{pod}.json"), "w") as handle:
        handle.write("{bad")
    result = host.module("pod_network", {"name": pod, "state": "absent"})
    assert result.failed and f"{pod}.json" in result["msg"] and "Traceback" not in result["msg"]
    info = host.module("pod_network_info", {"state_dir": host.state_dir}, with_dirs=False)
    assert info["pods"][0]["name"] == pod and "error" in info["pods"][0]
