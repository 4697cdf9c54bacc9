"""The flannel network type on the real kernel, with subnet.env written as flanneld would."""

from __future__ import annotations

import json
import os
import stat

import pytest
from sandbox import (
    TcpServer,
    addresses,
    ip_json,
    iptables_save,
    links,
    netns_exists,
    nft_ruleset,
    ping,
    tcp_peer_seen,
)
from test_pod_network import down, host_snapshot, lease_files, up, write_conf

SUBNET_ENV = {
    "FLANNEL_NETWORK": "10.244.0.0/16",
    "FLANNEL_SUBNET": "10.244.3.1/24",
    "FLANNEL_MTU": "1450",
    "FLANNEL_IPMASQ": "true",
}


def flannel_host(host, conf: dict | None = None, **env) -> dict:
    """Write subnet.env and a flannel conf named "overlay"; return the conf."""
    values = {**SUBNET_ENV, **env}
    host.subnet_file = os.path.join(host.root, "run-flannel", "subnet.env")
    host.scratch_dir = os.path.join(host.root, "cni-flannel")
    os.makedirs(os.path.dirname(host.subnet_file), exist_ok=True)
    with open(host.subnet_file, "w") as handle:
        handle.writelines(f"{key}={value}\n" for key, value in values.items() if value)
    conf = {
        "name": "overlay",
        "type": "flannel",
        "subnetFile": host.subnet_file,
        "dataDir": host.scratch_dir,
        **(conf or {}),
    }
    write_conf(host, "10-overlay.conf", conf)
    return conf


def scratch_files(host) -> list[str]:
    return sorted(os.listdir(host.scratch_dir)) if os.path.isdir(host.scratch_dir) else []


def masquerade_rules(host) -> str:
    return json.dumps(nft_ruleset(host.name)) + iptables_save(host.name)


def join(host, pod: str, **extra) -> dict:
    return up(host, pod, ["overlay"], add_default_restricted=False, **extra)


def test_two_pods_share_a_bridge_on_the_flannel_subnet_with_its_mtu(host):
    flannel_host(host)
    web, db = host.pod_name(), host.pod_name()
    assert join(host, web)["interfaces"][0]["address"] == "10.244.3.2/24"
    assert join(host, db)["interfaces"][0]["address"] == "10.244.3.3/24"

    assert addresses(web, "eth0") == ["10.244.3.2/24"]
    assert addresses(db, "eth0") == ["10.244.3.3/24"]
    host_links = links(host.name)
    assert host_links["rkt0"]["linkinfo"]["info_kind"] == "bridge"
    assert host_links["rkt0"]["mtu"] == 1450 and links(web)["eth0"]["mtu"] == 1450
    assert addresses(host.name, "rkt0") == ["10.244.3.1/24"], "isGateway is on for bridge"
    routes = {route["dst"]: route.get("gateway") for route in ip_json(web, "route", "show")}
    assert routes["10.244.0.0/16"] == "10.244.3.1"

    assert ping(web, "10.244.3.3") and ping(db, "10.244.3.2")
    server = TcpServer(db, 7000)
    try:
        assert tcp_peer_seen(web, "10.244.3.3", 7000) == "10.244.3.2"
    finally:
        server.close()


def test_the_delegate_conf_is_saved_per_pod_privately(host):
    flannel_host(host)
    pod = host.pod_name()
    join(host, pod)
    assert scratch_files(host) == [pod]
    path = os.path.join(host.scratch_dir, pod)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(host.scratch_dir).st_mode) == 0o700
    with open(path) as handle:
        saved = json.load(handle)
    assert saved["name"] == "overlay" and saved["type"] == "bridge" and saved["mtu"] == 1450
    assert saved["ipMasq"] is False and saved["isGateway"] is True
    assert saved["ipam"] == {
        "type": "host-local",
        "subnet": "10.244.3.0/24",
        "routes": [{"dst": "10.244.0.0/16"}],
    }


@pytest.mark.parametrize(("ipmasq", "masqueraded"), [("true", False), ("false", True)])
def test_ip_masq_is_the_opposite_of_flannel_ipmasq(host, ipmasq, masqueraded):
    """flanneld masquerades itself when FLANNEL_IPMASQ=true, so the delegate must not."""
    outside = host.add_outside()
    flannel_host(host, {"ipam": {"routes": [{"dst": "0.0.0.0/0"}]}}, FLANNEL_IPMASQ=ipmasq)
    pod = host.pod_name()
    join(host, pod)
    assert ("10.244.3.2" in masquerade_rules(host)) is masqueraded
    # The outside has no route back to 10.244/16: only a masqueraded pod gets an answer.
    server = TcpServer(outside, 8080)
    try:
        seen = tcp_peer_seen(pod, "203.0.113.2", 8080)
    finally:
        server.close()
    assert seen == ("203.0.113.1" if masqueraded else None)


def test_ptp_delegate_routes_pods_through_the_host(host):
    flannel_host(host, {"delegate": {"type": "ptp"}})
    first, second = host.pod_name(), host.pod_name()
    made = join(host, first)["interfaces"][0]
    join(host, second)
    assert made["address"] == "10.244.3.2/24"
    assert "rkt0" not in links(host.name)
    assert addresses(host.name, made["host_ifname"]) == ["10.244.3.1/32"]
    assert links(first)["eth0"]["mtu"] == 1450
    assert ping(first, "10.244.3.3") and ping(second, "10.244.3.2")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (None, "No such file"),
        ({"FLANNEL_MTU": ""}, "is missing FLANNEL_MTU"),
        (
            {"FLANNEL_NETWORK": "", "FLANNEL_IPMASQ": ""},
            "is missing FLANNEL_NETWORK, FLANNEL_IPMASQ",
        ),
    ],
)
def test_missing_subnet_file_or_keys_fail_clearly_and_change_nothing(host, env, expected):
    flannel_host(host, **(env or {}))
    if env is None:
        os.unlink(host.subnet_file)
    before = host_snapshot(host)
    pod = host.pod_name()
    for check in (True, False):
        args = {"name": pod, "networks": ["overlay"], "add_default_restricted": False}
        failed = host.module("pod_network", args, check=check)
        assert failed.failed
        assert host.subnet_file in failed["msg"] and expected in failed["msg"]
        assert 'network "overlay"' in failed["msg"]
    assert not netns_exists(pod) and host_snapshot(host) == before
    assert lease_files(host) == [] and scratch_files(host) == []


def test_exhausted_flannel_subnet_leaves_no_scratch_file(host):
    """bugs.md C16: a failed ADD must not leave <dataDir>/<pod> behind."""
    flannel_host(host, FLANNEL_SUBNET="10.244.3.1/30")
    first, second = host.pod_name(), host.pod_name()
    assert join(host, first)["interfaces"][0]["address"] == "10.244.3.2/30"
    before, leases = host_snapshot(host), lease_files(host)
    failed = host.module("pod_network", {"name": second, "networks": ["overlay"]})
    assert failed.failed and "no IP addresses available" in failed["msg"]
    assert scratch_files(host) == [first]
    assert not netns_exists(second) and host_snapshot(host) == before
    assert lease_files(host) == leases


def test_delegate_failing_after_the_save_removes_the_scratch_file(host):
    """bugs.md C16, the whole kind: the delegate fails after the conf was saved."""
    host.add_outside()  # uplink0 is a veth, so a bridge delegate on it fails
    flannel_host(host, {"delegate": {"bridge": "uplink0"}})
    before = host_snapshot(host)
    pod = host.pod_name()
    failed = host.module("pod_network", {"name": pod, "networks": ["overlay"]})
    assert failed.failed and "not a bridge" in failed["msg"]
    assert scratch_files(host) == [] and lease_files(host) == []
    assert not netns_exists(pod) and host_snapshot(host) == before


def test_teardown_removes_the_scratch_files_and_everything_else(host):
    flannel_host(host)
    before = host_snapshot(host)
    pods = [host.pod_name() for _pod in range(2)]
    for pod in pods:
        join(host, pod)
    assert host_snapshot(host) != before and scratch_files(host) == sorted(pods)
    for pod in pods:
        assert down(host, pod)["changed"] is True
        assert not netns_exists(pod)
    assert host_snapshot(host) == before
    assert lease_files(host) == [] and scratch_files(host) == []


def test_an_empty_scratch_file_does_not_block_absent(host):
    """bugs.md C16: after an unclean reboot the saved conf can be 0 bytes."""
    flannel_host(host)
    before = host_snapshot(host)
    pod = host.pod_name()
    join(host, pod)
    open(os.path.join(host.scratch_dir, pod), "w").close()
    assert down(host, pod)["changed"] is True
    assert not netns_exists(pod) and host_snapshot(host) == before
    assert lease_files(host) == [] and scratch_files(host) == []


def test_second_run_changes_nothing_and_check_mode_predicts(host):
    flannel_host(host)
    pod = host.pod_name()
    args = {"name": pod, "networks": ["overlay"], "add_default_restricted": False}
    predicted = host.module("pod_network", args, check=True, diff=True)
    assert predicted["changed"] is True
    assert [a["address"] for a in predicted["diff"]["after"]["attachments"]] == ["10.244.3.2/24"]
    assert not netns_exists(pod) and lease_files(host) == [] and scratch_files(host) == []

    made = host.module("pod_network", args, diff=True)
    assert made["changed"] is True and made["diff"]["before"] == {}
    assert made["diff"]["after"] == predicted["diff"]["after"]
    snapshot = host_snapshot(host)

    again = host.module("pod_network", args, diff=True)
    assert again["changed"] is False and again["actions"] == []
    assert again["diff"]["before"] == again["diff"]["after"]
    assert host.module("pod_network", args, check=True)["changed"] is False
    assert host_snapshot(host) == snapshot


def test_a_lost_scratch_file_is_saved_again(host):
    flannel_host(host)
    pod = host.pod_name()
    join(host, pod)
    os.unlink(os.path.join(host.scratch_dir, pod))
    repaired = join(host, pod)
    assert repaired["changed"] is True
    assert repaired["interfaces"][0]["address"] == "10.244.3.2/24", "the address is kept"
    assert scratch_files(host) == [pod]
    assert join(host, pod)["changed"] is False


def test_a_new_flannel_subnet_moves_the_pod_onto_it(host):
    flannel_host(host)
    pod = host.pod_name()
    join(host, pod)
    flannel_host(host, FLANNEL_SUBNET="10.244.7.1/24")
    moved = join(host, pod)
    assert moved["changed"] is True
    assert addresses(pod, "eth0") == ["10.244.7.2/24"]
    assert addresses(host.name, "rkt0") == ["10.244.7.1/24"]
    assert not any("10.244.3." in path for path in lease_files(host))
    assert join(host, pod)["changed"] is False
