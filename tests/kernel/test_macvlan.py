"""The macvlan network type on the real kernel: pods on the LAN of a veth master."""

from __future__ import annotations

import json
import os

import pytest
from lan_sandbox import (
    HOST_ADDRESS,
    LAN_ADDRESS,
    MASTER,
    Lan,
    lan_conf,
    link_details,
    pod_links,
)
from sandbox import (
    TcpServer,
    addresses,
    ip_json,
    iptables_save,
    links,
    netns_exists,
    ping,
    sh,
    sysctl,
    tcp_peer_seen,
)
from test_pod_network import down, host_snapshot, lease_files, nft_content, up, write_conf


@pytest.fixture
def lan(host):
    made = Lan(host)
    try:
        yield made
    finally:
        made.destroy()


def state_of(host) -> dict:
    """Everything a failed run must leave as it was: kernel, leases, saved state."""
    ledger = os.path.join(host.state_dir, "host.json")
    saved = json.load(open(ledger)) if os.path.exists(ledger) else {}
    return {
        "kernel": host_snapshot(host),
        "leases": lease_files(host),
        "lan_masters": saved.get("lan_masters") or {},
    }


def test_bridge_mode_pods_reach_each_other_and_the_lan(host, lan):
    write_conf(host, "10-lan.conf", lan_conf("macvlan"))
    web, db = host.pod_name(), host.pod_name()
    first = up(host, web, ["lan"])
    second = up(host, db, ["lan"])
    assert first["interfaces"][0]["address"] == "192.0.2.10/24"
    assert second["interfaces"][0]["address"] == "192.0.2.11/24"

    eth0 = link_details(web, "eth0")
    assert eth0["linkinfo"]["info_kind"] == "macvlan"
    assert eth0["linkinfo"]["info_data"]["mode"] == "bridge"
    assert eth0["address"] == first["interfaces"][0]["mac"]
    assert addresses(web, "eth0") == ["192.0.2.10/24"]
    assert any(r["dst"] == "default" and r["gateway"] == LAN_ADDRESS for r in ip_json(web, "route"))
    assert "eth0" not in links(host.name), "the macvlan was made straight in the pod"
    assert sysctl(web, "net.ipv4.conf.eth0.arp_notify") == "1"

    assert ping(web, "192.0.2.11") and ping(db, "192.0.2.10")
    assert ping(web, LAN_ADDRESS)
    server = TcpServer(lan.name, 8080)
    try:
        # Straight onto the LAN: the LAN host sees the pod's own address.
        assert tcp_peer_seen(web, LAN_ADDRESS, 8080) == "192.0.2.10"
    finally:
        server.close()


def test_private_mode_pods_do_not_reach_each_other_but_reach_the_lan(host, lan):
    write_conf(host, "10-lan.conf", lan_conf("macvlan", mode="private"))
    web, db = host.pod_name(), host.pod_name()
    up(host, web, ["lan"])
    up(host, db, ["lan"])
    assert link_details(web, "eth0")["linkinfo"]["info_data"]["mode"] == "private"
    assert ping(web, LAN_ADDRESS) and ping(db, LAN_ADDRESS)
    assert not ping(web, "192.0.2.11")
    assert not ping(db, "192.0.2.10")


def test_pod_cannot_reach_the_host_through_the_macvlan(host, lan):
    host.run(["ip", "addr", "add", f"{HOST_ADDRESS}/24", "dev", MASTER])
    write_conf(host, "10-lan.conf", lan_conf("macvlan"))
    pod = host.pod_name()
    up(host, pod, ["lan"])
    assert ping(lan.name, HOST_ADDRESS), "the host address itself is live on the LAN"
    assert ping(pod, LAN_ADDRESS)
    assert not ping(pod, HOST_ADDRESS)


def test_mtu_defaults_to_the_masters_and_a_smaller_one_is_applied(host):
    lan = Lan(host, mtu=1400)
    try:
        write_conf(host, "10-lan.conf", lan_conf("macvlan"))
        write_conf(host, "20-small.conf", lan_conf("macvlan", name="small", mtu=1300))
        pod = host.pod_name()
        up(host, pod, ["lan", "small"])
        assert link_details(pod, "eth0")["mtu"] == 1400
        assert link_details(pod, "eth1")["mtu"] == 1300
        assert ping(pod, LAN_ADDRESS)
    finally:
        lan.destroy()


def test_absent_works_after_the_master_was_deleted(host, lan):
    """bugs.md C07: teardown never needs the master."""
    write_conf(host, "10-lan.conf", lan_conf("macvlan", mode="vepa"))
    pod = host.pod_name()
    before = state_of(host)
    up(host, pod, ["lan"])
    assert lease_files(host)
    host.run(["ip", "link", "del", MASTER])
    assert "eth0" not in pod_links(pod), "the kernel takes the macvlan with its master"
    result = down(host, pod)
    assert result["changed"] is True
    assert not netns_exists(pod)
    after = state_of(host)
    assert after["leases"] == [] and after["lan_masters"] == {}
    assert before["kernel"]["links"] == ["lan0", "lo"] and after["kernel"]["links"] == ["lo"]


def test_absent_when_the_pod_namespace_is_gone(host, lan):
    write_conf(host, "10-lan.conf", lan_conf("macvlan"))
    pod = host.pod_name()
    up(host, pod, ["lan"])
    sh(["ip", "netns", "del", pod])
    down(host, pod)
    assert lease_files(host) == [] and state_of(host)["lan_masters"] == {}


def test_ipam_failure_leaves_no_link(host, lan):
    """bugs.md C08: a taken IP= makes host-local fail; the pod keeps no macvlan."""
    write_conf(host, "10-lan.conf", lan_conf("macvlan"))
    first = host.pod_name()
    up(host, first, ["lan:IP=192.0.2.20"])
    second = host.pod_name()
    sh(["ip", "netns", "add", second])
    before = state_of(host)
    result = host.module(
        "pod_network",
        {"name": second, "networks": ["lan:IP=192.0.2.20"], "netns": f"/run/netns/{second}"},
    )
    assert result.failed and "192.0.2.20" in result["msg"]
    assert pod_links(second) == ["lo"]
    assert state_of(host) == before


def test_failure_after_the_link_was_made_removes_it(host, lan):
    """The whole kind of C08: any failure after creation, here an unreachable route gateway."""
    conf = lan_conf("macvlan")
    conf["ipam"]["routes"] = [{"dst": "198.51.100.0/24", "gw": "203.0.113.9"}]
    write_conf(host, "10-lan.conf", conf)
    pod = host.pod_name()
    sh(["ip", "netns", "add", pod])
    before = state_of(host)
    result = host.module(
        "pod_network", {"name": pod, "networks": ["lan"], "netns": f"/run/netns/{pod}"}
    )
    assert result.failed and "198.51.100.0/24" in result["msg"], result.get("msg")
    assert pod_links(pod) == ["lo"]
    assert state_of(host) == before


def test_second_run_changes_nothing_check_mode_predicts_and_diff(host, lan):
    write_conf(host, "10-lan.conf", lan_conf("macvlan"))
    pod = host.pod_name()
    args = {"name": pod, "networks": ["lan"], "add_default_restricted": False}
    predicted = host.module("pod_network", args, check=True, diff=True)
    assert predicted["changed"] is True and not predicted.failed
    assert not netns_exists(pod) and lease_files(host) == []
    assert [a["address"] for a in predicted["diff"]["after"]["attachments"]] == ["192.0.2.10/24"]

    made = host.module("pod_network", args, diff=True)
    assert made["changed"] is True
    assert made["diff"]["after"] == predicted["diff"]["after"]
    again = host.module("pod_network", args, diff=True)
    assert again["changed"] is False and again["actions"] == []
    assert again["diff"]["before"] == again["diff"]["after"]
    assert host.module("pod_network", args, check=True)["changed"] is False


def test_rerun_remakes_a_deleted_macvlan(host, lan):
    write_conf(host, "10-lan.conf", lan_conf("macvlan"))
    pod = host.pod_name()
    up(host, pod, ["lan"])
    sh(["ip", "-n", pod, "link", "del", "eth0"])
    result = up(host, pod, ["lan"])
    assert result["changed"] is True
    assert any("missing" in action for action in result["actions"])
    assert link_details(pod, "eth0")["linkinfo"]["info_kind"] == "macvlan"
    assert addresses(pod, "eth0") == ["192.0.2.10/24"]
    assert ping(pod, LAN_ADDRESS)


def test_ip_masq_on_macvlan_masquerades_and_goes_away(host, lan):
    write_conf(host, "10-lan.conf", lan_conf("macvlan", ipMasq=True))
    pod = host.pod_name()
    before = host_snapshot(host)
    up(host, pod, ["lan"])
    rules = json.dumps(nft_content(host)) + iptables_save(host.name)
    assert "192.0.2.10" in rules or "192.0.2.0/24" in rules
    assert "masquerade" in rules.lower()
    down(host, pod)
    assert host_snapshot(host) == before


def test_macvlan_on_a_master_with_an_ipvlan_is_refused(host, lan):
    """A host-side ipvlan cannot exist on this kernel; the ledger carries the other pods' kind."""
    write_conf(host, "10-lan.conf", lan_conf("macvlan"))
    ledger = os.path.join(host.state_dir, "host.json")
    os.makedirs(host.state_dir, exist_ok=True)
    with open(ledger, "w") as handle:
        json.dump({"lan_masters": {MASTER: {"kind": "ipvlan", "owners": ["other:net"]}}}, handle)
    pod = host.pod_name()
    result = host.module("pod_network", {"name": pod, "networks": ["lan"]})
    assert result.failed
    assert 'field "master"' in result["msg"] and "cannot share a master" in result["msg"]
    assert not netns_exists(pod) and lease_files(host) == []


BAD_CONFS = [
    ({"master": None}, 'field "master"', "is required"),
    ({"master": 7}, 'field "master"', "must be an interface name"),
    ({"master": "a-name-far-too-long"}, 'field "master"', "longer than 15"),
    ({"master": "eth9"}, 'field "master"', 'interface "eth9" does not exist'),
    ({"mode": "l2"}, 'field "mode"', "is not a macvlan mode"),
    ({"mtu": 9000}, 'field "mtu"', 'larger than the MTU 1500 of master "lan0"'),
    ({"mtu": 10}, 'field "mtu"', "from 68 to 65535"),
    ({"ipMasq": "yes"}, 'field "ipMasq"', "must be true or false"),
]


@pytest.mark.parametrize(("change", "field", "reason"), BAD_CONFS)
@pytest.mark.parametrize("check", [False, True])
def test_bad_conf_fails_clearly_and_changes_nothing(host, lan, change, field, reason, check):
    conf = lan_conf("macvlan")
    for key, value in change.items():
        if value is None:
            del conf[key]
        else:
            conf[key] = value
    write_conf(host, "10-lan.conf", conf)
    pod = host.pod_name()
    before = state_of(host)
    result = host.module("pod_network", {"name": pod, "networks": ["lan"]}, check=check)
    assert result.failed
    assert field in result["msg"] and reason in result["msg"], result["msg"]
    assert "lan" in result["msg"]
    assert not netns_exists(pod)
    assert state_of(host) == before
