# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""ipam_lease planning: option checks, reserve/release/gc plans, check mode writes nothing."""

from __future__ import annotations

import json
import os

import pytest
from netaddr import IPAddress

from ansible_collections.podnet.cni.plugins.module_utils._errors import PodnetError
from ansible_collections.podnet.cni.plugins.module_utils._host_local import LeaseStore, StoredLease
from ansible_collections.podnet.cni.plugins.module_utils._lease_module import (
    apply,
    describe_leases,
    plan,
    releasable,
    request_from_params,
)

LAN = {
    "name": "lan",
    "type": "bridge",
    "ipam": {"type": "host-local", "subnet": "10.40.0.0/29"},  # .1 gateway, .2-.6 pods
}


@pytest.fixture
def dirs(tmp_path):
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    (conf_dir / "10-lan.conf").write_text(json.dumps(LAN))
    return {
        "conf_dir": str(conf_dir),
        "data_dir": str(tmp_path / "leases"),
        "state_dir": str(tmp_path / "state"),
    }


def run(dirs: dict, check: bool = False, **options):
    """Plan (and unless check, apply) like the module does; returns (plan, reserved, released)."""
    lease_plan = plan(request_from_params({**dirs, **options}))
    if check or not lease_plan.changed:
        return lease_plan, lease_plan.held, lease_plan.release
    return (lease_plan, *apply(lease_plan))


def on_disk(dirs: dict, network: str = "lan") -> dict[str, str]:
    return {
        str(lease.address): f"{lease.owner}/{lease.ifname}"
        for lease in LeaseStore(dirs["data_dir"], network).leases()
    }


def add_pod_record(dirs: dict, name: str) -> None:
    pods = os.path.join(dirs["state_dir"], "pods")
    os.makedirs(pods, exist_ok=True)
    with open(os.path.join(pods, f"{name}.json"), "w") as handle:
        json.dump({"name": name}, handle)


def test_reserve_next_free_then_again_is_no_change(dirs):
    first, reserved, _released = run(dirs, network="lan", owner="vm1")
    assert first.changed and [str(x.address) for x in reserved] == ["10.40.0.2"]
    second, reserved, _released = run(dirs, network="lan", owner="vm1")
    assert not second.changed and [str(x.address) for x in reserved] == ["10.40.0.2"]
    assert on_disk(dirs) == {"10.40.0.2": "vm1/eth0"}


def test_reserve_specific_address_spelled_differently_is_no_change(dirs):
    ipam = {"type": "host-local", "subnet": "2001:db8:40::/120"}
    options = {"network": "v6", "ipam": ipam, "owner": "vm1"}
    assert run(dirs, address="2001:db8:40::9", **options)[0].changed
    again = run(dirs, address="2001:0db8:0040:0000::0009", **options)[0]
    assert not again.changed
    assert on_disk(dirs, "v6") == {"2001:db8:40::9": "vm1/eth0"}


def test_check_mode_predicts_and_creates_nothing(dirs):
    lease_plan, reserved, _released = run(dirs, check=True, network="lan", owner="vm1")
    assert lease_plan.changed
    assert [str(x.address) for x in reserved] == ["10.40.0.2"]
    assert lease_plan.actions() == ["reserve 10.40.0.2 for vm1 (eth0) on lan"]
    assert not os.path.exists(dirs["data_dir"])


def test_after_view_shows_the_predicted_lease(dirs):
    run(dirs, network="lan", owner="vm1")
    lease_plan = run(dirs, check=True, network="lan", owner="vm2", ifname="eth1")[0]
    after = {str(x.address): (x.owner, x.ifname) for x in lease_plan.after()["lan"]}
    assert after == {"10.40.0.2": ("vm1", "eth0"), "10.40.0.3": ("vm2", "eth1")}


def test_release_by_owner_and_ifname_leaves_other_interfaces(dirs):
    run(dirs, network="lan", owner="vm1")
    run(dirs, network="lan", owner="vm1", ifname="eth1")
    run(dirs, network="lan", owner="vm2")
    _plan, _reserved, released = run(
        dirs, network="lan", owner="vm1", ifname="eth1", state="absent"
    )
    assert [str(x.address) for x in released["lan"]] == ["10.40.0.3"]
    assert on_disk(dirs) == {"10.40.0.2": "vm1/eth0", "10.40.0.4": "vm2/eth0"}
    _plan, _reserved, released = run(dirs, network="lan", owner="vm1", state="absent")
    assert [str(x.address) for x in released["lan"]] == ["10.40.0.2"]
    assert not run(dirs, network="lan", owner="vm1", state="absent")[0].changed


def test_release_by_address_and_holder_mismatch(dirs):
    run(dirs, network="lan", owner="vm1")
    with pytest.raises(PodnetError, match=r'"10.40.0.2" is leased to vm1 \(eth0\), not to owner'):
        run(dirs, network="lan", owner="vm2", address="10.40.0.2", state="absent")
    assert on_disk(dirs) == {"10.40.0.2": "vm1/eth0"}
    assert run(dirs, network="lan", address="10.40.0.2", state="absent")[0].changed
    assert on_disk(dirs) == {}


def test_gc_keeps_live_owners_and_recorded_pods(dirs):
    for owner in ("alive", "recorded", "dead1", "dead2"):
        run(dirs, network="lan", owner=owner)
    add_pod_record(dirs, "recorded")
    lease_plan, _reserved, released = run(dirs, gc=True, live_owners=["alive"])
    assert sorted(x.owner for x in released["lan"]) == ["dead1", "dead2"]
    assert sorted(on_disk(dirs).values()) == ["alive/eth0", "recorded/eth0"]
    assert not run(dirs, gc=True, live_owners=["alive"])[0].changed


def test_gc_without_records_or_live_owners_refuses(dirs):
    run(dirs, network="lan", owner="vm1")
    with pytest.raises(PodnetError, match="refusing to release every lease"):
        run(dirs, gc=True)
    assert on_disk(dirs) == {"10.40.0.2": "vm1/eth0"}
    assert run(dirs, gc=True, live_owners=[])[0].changed
    assert on_disk(dirs) == {}


def test_release_of_a_network_without_conf_uses_its_lease_dir(dirs):
    store = LeaseStore(dirs["data_dir"], "gone")
    ipam = {"type": "host-local", "subnet": "10.41.0.0/24"}
    run(dirs, network="gone", ipam=ipam, owner="vm1")
    assert run(dirs, network="gone", owner="vm1", state="absent")[0].changed
    assert store.leases() == []


def test_describe_marks_recorded_owners_live(dirs):
    run(dirs, network="lan", owner="pod-a")
    run(dirs, network="lan", owner="gone")
    add_pod_record(dirs, "pod-a")
    networks, leases = describe_leases(dirs["data_dir"], dirs["state_dir"], dirs["conf_dir"])
    assert networks == ["lan"]
    assert [(x["owner"], x["live"]) for x in leases] == [("pod-a", True), ("gone", False)]


@pytest.mark.parametrize(
    ("leases", "ifname", "expected"),
    [
        ([("a", "eth0"), ("a", "eth1")], None, ["eth0", "eth1"]),
        ([("a", "eth0"), ("a", "eth1")], "eth1", ["eth1"]),
        ([("a", ""), ("a", "eth1")], "eth0", [""]),
        ([("a", ""), ("a", "eth0")], "eth0", ["eth0"]),
        ([("b", "eth0")], "eth0", []),
    ],
)
def test_releasable_matches_host_local_del(leases, ifname, expected):
    stored = [StoredLease(IPAddress(f"10.0.0.{i + 2}"), o, n) for i, (o, n) in enumerate(leases)]
    assert [x.ifname for x in releasable(stored, "a", ifname)] == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"owner": "vm1"}, 'option "network" is required unless gc=true'),
        ({"network": "lan"}, 'network "lan": option "owner" is required to reserve'),
        ({"network": "lan", "state": "absent"}, 'option "owner" or "address" is required'),
        ({"network": "lan", "owner": "vm1", "address": "10.40.0.x"}, '"10.40.0.x" is not an IP'),
        ({"network": "lan", "owner": "a\nb"}, "option \"owner\": 'a\\nb' must be one"),
        ({"network": "lan", "owner": "vm1", "ifname": "x" * 16}, 'option "ifname": "xxxx'),
        ({"ipam": {"subnet": "10.0.0.0/24"}, "owner": "vm1"}, 'option "ipam" needs option "n'),
        ({"gc": True, "owner": "vm1"}, 'option "owner" (vm1) cannot be combined with gc'),
        ({"network": "lan", "owner": "a", "live_owners": ["b"]}, '"live_owners" is only used'),
    ],
)
def test_bad_option_combinations_are_named(dirs, options, message):
    with pytest.raises(PodnetError) as caught:
        request_from_params({**dirs, **options})
    assert message in str(caught.value)
