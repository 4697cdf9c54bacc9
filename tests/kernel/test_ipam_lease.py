# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""ipam_lease and ipam_lease_info run as modules in a sandbox host, next to real pods and
Debian's host-local binary on one data dir."""

from __future__ import annotations

import json
import os

import pytest
from sandbox import ping
from test_host_local_interop import HOST_LOCAL, HostLocal

LAN = {
    "name": "lan",
    "type": "ptp",
    "ipMasq": False,
    "ipam": {"type": "host-local", "subnet": "10.70.0.0/29"},  # .1 gateway, .2-.6 for pods
}


def write_conf(host, conf: dict) -> None:
    with open(os.path.join(host.conf_dir, f"10-{conf['name']}.conf"), "w") as handle:
        json.dump(conf, handle)


def lease(host, check: bool = False, diff: bool = False, **args) -> dict:
    result = host.module("ipam_lease", args, check=check, diff=diff)
    assert not result.failed, result.get("msg")
    return result


def info(host, **args) -> dict:
    result = host.module("ipam_lease_info", args)
    assert not result.failed, result.get("msg")
    return result


def data_dir_files(host) -> dict[str, bytes]:
    """Every file under the data dir with its content: the whole lease state on disk."""
    found = {}
    for root, _dirs, files in os.walk(host.data_dir):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, host.data_dir)] = handle.read()
    return found


def leases_on_disk(host, network: str = "lan") -> dict[str, str]:
    """address -> "owner/ifname" as the files say, read without the code under test."""
    directory = os.path.join(host.data_dir, network)
    found = {}
    for name in os.listdir(directory) if os.path.isdir(directory) else []:
        if name[0].isdigit() or ":" in name:
            with open(os.path.join(directory, name), "rb") as handle:
                owner, _sep, ifname = handle.read().decode().partition("\r\n")
            found[name] = f"{owner}/{ifname}"
    return found


def test_reserve_next_free_is_idempotent_with_diff(host):
    write_conf(host, LAN)
    first = lease(host, network="lan", owner="vm1", diff=True)
    assert first["changed"] is True
    assert first["leases"] == [
        {"address": "10.70.0.2", "owner": "vm1", "ifname": "eth0", "network": "lan"}
    ]
    assert first["diff"]["before"] == ""
    assert first["diff"]["after"] == "10.70.0.2 vm1 eth0\n"
    assert first["actions"] == ["reserve 10.70.0.2 for vm1 (eth0) on lan"]

    second = lease(host, network="lan", owner="vm1", diff=True)
    assert second["changed"] is False and second["actions"] == []
    assert second["leases"] == first["leases"]
    assert second["diff"]["before"] == second["diff"]["after"]
    assert lease(host, network="lan", owner="vm2")["leases"][0]["address"] == "10.70.0.3"
    assert leases_on_disk(host) == {"10.70.0.2": "vm1/eth0", "10.70.0.3": "vm2/eth0"}


def test_check_mode_predicts_and_writes_no_file(host):
    write_conf(host, LAN)
    result = lease(host, network="lan", owner="vm1", address="10.70.0.5", check=True, diff=True)
    assert result["changed"] is True
    assert result["leases"][0]["address"] == "10.70.0.5"
    assert result["diff"]["after"] == "10.70.0.5 vm1 eth0\n"
    assert not os.path.exists(host.data_dir)

    lease(host, network="lan", owner="vm1", address="10.70.0.5")
    before = data_dir_files(host)
    gone = lease(host, network="lan", owner="vm1", state="absent", check=True, diff=True)
    assert gone["changed"] is True and gone["released"][0]["address"] == "10.70.0.5"
    assert gone["diff"]["after"] == ""
    assert data_dir_files(host) == before


def test_reserve_a_specific_address_in_any_spelling(host):
    v6 = {
        "name": "v6",
        "type": "ptp",
        "ipam": {"type": "host-local", "subnet": "2001:db8:70::/120"},
    }
    write_conf(host, v6)
    made = lease(host, network="v6", owner="vm1", address="2001:db8:70::42")
    assert made["changed"] is True
    again = lease(host, network="v6", owner="vm1", address="2001:0db8:0070:0000::0042")
    assert again["changed"] is False
    assert leases_on_disk(host, "v6") == {"2001:db8:70::42": "vm1/eth0"}


def test_release_by_owner_ifname_and_by_address(host):
    write_conf(host, LAN)
    lease(host, network="lan", owner="vm1")
    lease(host, network="lan", owner="vm1", ifname="eth1")
    lease(host, network="lan", owner="vm2")

    one = lease(host, network="lan", owner="vm1", ifname="eth1", state="absent")
    assert [x["address"] for x in one["released"]] == ["10.70.0.3"]
    assert one["leases"] == [
        {"address": "10.70.0.2", "owner": "vm1", "ifname": "eth0", "network": "lan"}
    ]
    by_address = lease(host, network="lan", address="10.70.0.4", state="absent")
    assert by_address["released"][0]["owner"] == "vm2"
    assert leases_on_disk(host) == {"10.70.0.2": "vm1/eth0"}
    assert lease(host, network="lan", address="10.70.0.4", state="absent")["changed"] is False
    assert lease(host, network="lan", owner="vm1", state="absent")["changed"] is True
    assert leases_on_disk(host) == {}


def test_gc_releases_only_leases_of_dead_owners(host):
    write_conf(host, LAN)
    pods = [host.pod_name(), host.pod_name()]
    addresses = []
    for pod in pods:
        result = host.module("pod_network", {"name": pod, "networks": ["lan"]})
        assert not result.failed, result.get("msg")
        addresses.append(result["interfaces"][0]["address"].split("/")[0])
    lease(host, network="lan", owner="crashed-1")
    lease(host, network="lan", owner="crashed-2", ifname="eth1")
    lease(host, network="lan", owner="vm-kept")

    result = lease(host, gc=True, live_owners=["vm-kept"], diff=True)
    assert sorted(x["owner"] for x in result["released"]) == ["crashed-1", "crashed-2"]
    assert sorted(leases_on_disk(host).values()) == sorted(
        [f"{pods[0]}/eth0", f"{pods[1]}/eth0", "vm-kept/eth0"]
    )
    assert lease(host, gc=True, live_owners=["vm-kept"])["changed"] is False
    for address in addresses:
        assert ping(host.name, address)

    listed = info(host)
    live = {x["owner"]: x["live"] for x in listed["leases"]}
    assert live == {pods[0]: True, pods[1]: True, "vm-kept": False}

    for pod in pods:
        down = host.module("pod_network", {"name": pod, "state": "absent"})
        assert not down.failed, down.get("msg")


@pytest.mark.skipif(not os.access(HOST_LOCAL, os.X_OK), reason=f"{HOST_LOCAL} is missing")
def test_leases_of_the_host_local_binary_are_listed_kept_and_collected(host):
    write_conf(host, LAN)
    binary = HostLocal(host, "lan", "10.70.0.0/29")
    theirs = [binary.add("ctr-a"), binary.add("ctr-b", "net1")]
    assert theirs == ["10.70.0.2", "10.70.0.3"]

    listed = info(host, network="lan")
    assert [(x["address"], x["owner"], x["ifname"], x["live"]) for x in listed["leases"]] == [
        ("10.70.0.2", "ctr-a", "eth0", False),
        ("10.70.0.3", "ctr-b", "net1", False),
    ]
    assert lease(host, network="lan", owner="vm1")["leases"][0]["address"] == "10.70.0.4"
    taken = host.module("ipam_lease", {"network": "lan", "owner": "vm2", "address": "10.70.0.2"})
    assert taken.failed and 'network "lan"' in taken["msg"] and "leased to ctr-a" in taken["msg"]

    # Ours blocks the binary: it skips 10.70.0.4 and refuses it when asked.
    lease(host, network="lan", owner="vm2", address="10.70.0.6")
    assert binary.add("ctr-c") == "10.70.0.5"
    assert "10.70.0.6 is not available" in binary.add_error("ctr-d", ip="10.70.0.6")

    result = lease(host, gc=True, network="lan", live_owners=["ctr-b", "vm1", "vm2"])
    assert sorted(x["owner"] for x in result["released"]) == ["ctr-a", "ctr-c"]
    assert not binary.holds("ctr-a") and binary.holds("ctr-b", "net1")
    assert binary.add("ctr-e") == "10.70.0.2"


BAD_INPUTS = [
    ({"network": "nosuch", "owner": "vm1"}, ['network "nosuch"', "unknown network"]),
    ({"network": "lan", "owner": "vm1", "address": "10.70.0.9"}, ['"10.70.0.9"', "not in any"]),
    ({"network": "lan", "owner": "vm1", "address": "10.70.0.1"}, ['"10.70.0.1"', "gateway"]),
    ({"network": "lan", "owner": "vm1", "address": "10.70.0.07"}, ['"address"', "10.70.0.07"]),
    ({"network": "lan", "owner": "vm1", "address": "10.70.0.0"}, ['"10.70.0.0"', "not in any"]),
    ({"network": "lan", "owner": "vm2", "address": "10.70.0.2"}, ["10.70.0.2", "leased to vm1"]),
    ({"network": "lan", "owner": "vm1", "address": "10.70.0.3"}, ["vm1 already holds 10.70.0.2"]),
    ({"network": "lan", "owner": "vm2", "address": "10.70.0.2", "state": "absent"}, ["vm1"]),
    ({"network": "lan", "owner": "vm1", "ifname": "a/b"}, ['"ifname"', "a/b"]),
    ({"network": "lan"}, ['"owner" is required']),
    ({"gc": True, "network": "lan", "address": "10.70.0.2"}, ['"address"', "gc=true"]),
    ({"gc": True}, ["refusing to release every lease", "live_owners"]),
    (
        {"network": "x", "owner": "vm1", "ipam": {"type": "host-local", "subnet": "10.0.0.1/24"}},
        ['"ipam.subnet"', "host bits"],
    ),
    ({"network": "x", "owner": "vm1", "ipam": {"type": "dhcp"}}, ['"ipam.type"', "dhcp"]),
    ({"network": "../etc", "owner": "vm1", "ipam": {"subnet": "10.0.0.0/24"}}, ['"../etc"']),
]


@pytest.mark.parametrize(("args", "fragments"), BAD_INPUTS)
def test_bad_inputs_fail_clearly_and_change_nothing(host, args, fragments):
    write_conf(host, LAN)
    lease(host, network="lan", owner="vm1")
    before = data_dir_files(host)
    result = host.module("ipam_lease", args)
    assert result.failed and not result.get("changed")
    assert "Traceback" not in result["msg"]
    for fragment in fragments:
        assert fragment in result["msg"]
    assert data_dir_files(host) == before
