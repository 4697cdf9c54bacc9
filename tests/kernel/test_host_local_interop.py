# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""LeaseStore and Debian's real host-local binary share one data dir without stepping on each
other: neither hands out the other's leases, each one's DEL releases the other's, and both
follow one cursor (last_reserved_ip.0) when they allocate by turns.

host-local never touches the namespace: it only insists that CNI_NETNS is set, so the sandbox
host's own namespace serves as CNI_NETNS.
"""

from __future__ import annotations

import json
import os

import pytest
from netaddr import IPAddress, IPNetwork

from ansible_collections.podnet.cni.plugins.module_utils._conf import Range
from ansible_collections.podnet.cni.plugins.module_utils._errors import IpamError
from ansible_collections.podnet.cni.plugins.module_utils._host_local import LeaseStore

HOST_LOCAL = "/usr/lib/cni/host-local"

pytestmark = pytest.mark.skipif(
    not os.access(HOST_LOCAL, os.X_OK),
    reason=f"{HOST_LOCAL} is missing: install the containernetworking-plugins package",
)


def default_range(subnet: str) -> Range:
    """The range host-local derives from a bare subnet: gateway and start subnet+1."""
    net = IPNetwork(subnet)
    last = net.last - 1 if net.version == 4 else net.last
    first = IPAddress(net.first + 1, net.version)
    return Range(subnet=net, start=first, end=IPAddress(last, net.version), gateway=first)


class HostLocal:
    """The host-local binary on one network conf, run inside the sandbox host."""

    def __init__(self, host, network: str, subnet: str) -> None:
        self.host = host
        self.conf = json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": network,
                "ipam": {"type": "host-local", "subnet": subnet, "dataDir": host.data_dir},
            }
        )

    def run(self, command: str, container: str, ifname: str = "eth0", ip: str | None = None):
        env = {
            **os.environ,
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container,
            "CNI_NETNS": self.host.netns,
            "CNI_IFNAME": ifname,
            "CNI_PATH": os.path.dirname(HOST_LOCAL),
        }
        if ip:
            env["CNI_ARGS"] = f"IP={ip}"
        return self.host.run([HOST_LOCAL], input=self.conf, env=env, check=False)

    def add(self, container: str, ifname: str = "eth0", ip: str | None = None) -> str:
        result = self.run("ADD", container, ifname, ip)
        assert result.returncode == 0, result.stdout + result.stderr
        (entry,) = json.loads(result.stdout)["ips"]
        return entry["address"].split("/")[0]

    def add_error(self, container: str, ifname: str = "eth0", ip: str | None = None) -> str:
        result = self.run("ADD", container, ifname, ip)
        assert result.returncode != 0, f"host-local ADD unexpectedly succeeded: {result.stdout}"
        return json.loads(result.stdout)["msg"]

    def delete(self, container: str, ifname: str = "eth0") -> None:
        result = self.run("DEL", container, ifname)
        assert result.returncode == 0, result.stdout + result.stderr

    def holds(self, container: str, ifname: str = "eth0") -> bool:
        """host-local's own CHECK: does it find a lease for this container and ifname?"""
        return self.run("CHECK", container, ifname).returncode == 0


def lease_files(store: LeaseStore) -> dict[str, bytes]:
    found = {}
    for name in os.listdir(store.directory):
        if name[0].isdigit() or ":" in name:
            with open(os.path.join(store.directory, name), "rb") as handle:
                found[name] = handle.read()
    return found


def test_leases_written_by_host_local_are_never_handed_out(host):
    binary = HostLocal(host, "mix", "10.60.0.0/29")  # .1 gateway, .2-.6 for pods
    store = LeaseStore(host.data_dir, "mix")
    ranges = [[default_range("10.60.0.0/29")]]
    theirs = {binary.add("c1"), binary.add("c2"), binary.add("c3", ip="10.60.0.5")}

    ours = set()
    with pytest.raises(IpamError) as caught:
        for n in range(10):
            ours.add(str(store.allocate(ranges, f"pod-{n}", "eth0")[0].address))

    assert theirs == {"10.60.0.2", "10.60.0.3", "10.60.0.5"}
    assert ours == {"10.60.0.4", "10.60.0.6"}
    assert str(caught.value) == (
        'network "mix": no IP addresses available in range set: 10.60.0.1-10.60.0.6'
    )
    assert store.owner_of("10.60.0.5") == ("c3", "eth0")
    with pytest.raises(IpamError, match='"10.60.0.2" is not available: leased to c1'):
        store.allocate(ranges, "pod-x", "eth0", ["10.60.0.2"])


def test_a_lease_written_by_the_store_blocks_host_local(host):
    binary = HostLocal(host, "mix", "10.61.0.0/24")
    store = LeaseStore(host.data_dir, "mix")
    ranges = [[default_range("10.61.0.0/24")]]
    store.allocate(ranges, "pod-a", "eth0", ["10.61.0.3"])
    store.allocate(ranges, "pod-b", "eth0", ["10.61.0.2"])

    assert binary.add("c1") == "10.61.0.4"
    assert "10.61.0.2 is not available" in binary.add_error("c2", ip="10.61.0.2")
    assert binary.holds("pod-a") and binary.holds("pod-b")
    assert lease_files(store) == {
        "10.61.0.2": b"pod-b\r\neth0",
        "10.61.0.3": b"pod-a\r\neth0",
        "10.61.0.4": b"c1\r\neth0",
    }


def test_host_local_refuses_a_second_lease_for_a_store_lease_and_the_store_returns_its(host):
    binary = HostLocal(host, "mix", "10.62.0.0/24")
    store = LeaseStore(host.data_dir, "mix")
    ranges = [[default_range("10.62.0.0/24")]]
    store.allocate(ranges, "pod-a", "eth0")
    made_by_binary = binary.add("c1", "eth1")

    assert "duplicate allocation is not allowed" in binary.add_error("pod-a")
    (again,) = store.allocate(ranges, "c1", "eth1")
    assert str(again.address) == made_by_binary
    assert len(lease_files(store)) == 2


def test_host_local_del_releases_store_leases_and_the_store_releases_theirs(host):
    binary = HostLocal(host, "mix", "10.63.0.0/24")
    store = LeaseStore(host.data_dir, "mix")
    ranges = [[default_range("10.63.0.0/24")]]
    store.allocate(ranges, "pod-a", "eth0")
    store.allocate(ranges, "pod-a", "eth1")
    binary.add("c1", "eth0")
    binary.add("c1", "eth1")

    binary.delete("pod-a", "eth0")
    assert store.find("pod-a") == ["10.63.0.3"]
    assert not binary.holds("pod-a", "eth0")

    assert store.release("c1", "eth1") == ["10.63.0.5"]
    assert not binary.holds("c1", "eth1")
    assert binary.holds("c1", "eth0")

    assert store.release("c1") == ["10.63.0.4"]
    binary.delete("pod-a", "eth1")
    binary.delete("pod-a", "eth1")  # DEL twice is success for both tools
    assert store.release("pod-a") == []
    assert lease_files(store) == {}


@pytest.mark.parametrize(
    ("subnet", "pool"),
    [
        ("10.64.0.0/28", [f"10.64.0.{n}" for n in range(2, 15)]),
        ("2001:db8:64::/125", [f"2001:db8:64::{n}" for n in range(2, 8)]),
    ],
    ids=["ipv4", "ipv6"],
)
def test_allocating_by_turns_exhausts_the_subnet_in_order(host, subnet, pool):
    binary = HostLocal(host, "turns", subnet)
    store = LeaseStore(host.data_dir, "turns")
    ranges = [[default_range(subnet)]]
    handed_out = []
    for n in range(len(pool)):
        if n % 2:
            handed_out.append(str(store.allocate(ranges, f"pod-{n}", "eth0")[0].address))
        else:
            handed_out.append(binary.add(f"c{n}"))

    # One shared cursor: each tool continues where the other stopped.
    assert handed_out == pool
    assert sorted(lease_files(store), key=IPAddress) == pool
    set_text = ranges[0][0]
    assert f"no IP addresses available in range set: {set_text}" in binary.add_error("late")
    with pytest.raises(IpamError, match=f"no IP addresses available in range set: {set_text}"):
        store.allocate(ranges, "pod-late", "eth0")

    binary.delete("c2")
    store.release("pod-5")
    assert store.allocate(ranges, "pod-late", "eth0")[0].address == IPAddress(pool[2])
    assert binary.add("late") == pool[5]
