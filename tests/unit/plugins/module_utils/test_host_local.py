# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""host-local lease store: allocation order, messages, release and the on-disk layout."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import stat
import subprocess
import sys
import time

import pytest
from netaddr import IPAddress, IPNetwork

from ansible_collections.podnet.cni.plugins.module_utils._conf import Range, host_local_ranges
from ansible_collections.podnet.cni.plugins.module_utils._errors import IpamError
from ansible_collections.podnet.cni.plugins.module_utils._host_local import (
    Lease,
    LeaseStore,
    StoredLease,
)


def rng(
    subnet: str, start: str | None = None, end: str | None = None, gateway: str | None = None
) -> Range:
    """A range with host-local's defaults: start and gateway subnet+1, end the last host."""
    net = IPNetwork(subnet)
    last = net.last - 1 if net.version == 4 else net.last
    return Range(
        subnet=net,
        start=IPAddress(start) if start else IPAddress(net.first + 1, net.version),
        end=IPAddress(end) if end else IPAddress(last, net.version),
        gateway=IPAddress(gateway) if gateway else IPAddress(net.first + 1, net.version),
    )


LAN = [[rng("10.1.0.0/24")]]


@pytest.fixture
def store(tmp_path) -> LeaseStore:
    return LeaseStore(str(tmp_path / "networks"), "lan")


def net_dir(store: LeaseStore) -> str:
    return os.path.join(store.data_dir, "lan")


def snapshot(directory: str) -> dict[str, bytes]:
    if not os.path.isdir(directory):
        return {}
    result = {}
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), "rb") as handle:
            result[name] = handle.read()
    return result


def addresses(leases: list[Lease]) -> list[str]:
    return [str(lease.address) for lease in leases]


def allocate_one(
    store: LeaseStore, owner: str, ranges=None, ifname: str = "eth0", requested=None
) -> str:
    ranges = LAN if ranges is None else ranges
    return str(store.allocate(ranges, owner, ifname, requested)[0].address)


# -- the first lease and the files ----------------------------------------------------------


def test_first_lease_is_dot_two_because_the_gateway_is_skipped(store):
    (lease,) = store.allocate(LAN, "pod-a", "eth0")

    assert lease == Lease(
        address=IPAddress("10.1.0.2"),
        prefixlen=24,
        gateway=IPAddress("10.1.0.1"),
        owner="pod-a",
        ifname="eth0",
        network="lan",
    )
    assert lease.cidr == "10.1.0.2/24"


def test_files_follow_the_host_local_layout_exactly(store):
    store.allocate(LAN, "pod-a", "eth0")

    directory = net_dir(store)
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o755
    assert snapshot(directory) == {
        "10.1.0.2": b"pod-a\r\neth0",
        "last_reserved_ip.0": b"10.1.0.2",
        "lock": b"",
    }
    assert stat.S_IMODE(os.stat(os.path.join(directory, "10.1.0.2")).st_mode) == 0o644


def test_directory_mode_does_not_depend_on_the_umask(store):
    previous = os.umask(0o077)
    try:
        store.allocate(LAN, "pod-a", "eth0")
    finally:
        os.umask(previous)

    assert stat.S_IMODE(os.stat(net_dir(store)).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(os.path.join(net_dir(store), "10.1.0.2")).st_mode) == 0o644


def test_owner_is_trimmed_like_host_local_does(store):
    store.allocate(LAN, "  pod-a \n", "eth0")

    assert snapshot(net_dir(store))["10.1.0.2"] == b"pod-a\r\neth0"


@pytest.mark.parametrize(
    ("owner", "ifname"), [("", "eth0"), ("pod\r\nx", "eth0"), ("pod-a", ""), ("pod-a", "a\nb")]
)
def test_owner_and_ifname_must_be_one_line(store, owner, ifname):
    with pytest.raises(IpamError, match='network "lan": lease (owner|ifname)'):
        store.allocate(LAN, owner, ifname)

    assert not os.path.exists(net_dir(store))


@pytest.mark.parametrize("network", ["", ".", "..", "a/b"])
def test_network_name_must_be_a_plain_directory_name(tmp_path, network):
    with pytest.raises(IpamError, match="cannot be used as a lease directory"):
        LeaseStore(str(tmp_path), network)


# -- allocation order ------------------------------------------------------------------------


def test_allocation_continues_after_the_last_reserved_not_at_a_freed_address(store):
    assert allocate_one(store, "pod-a") == "10.1.0.2"
    assert allocate_one(store, "pod-b") == "10.1.0.3"
    assert store.release("pod-a") == ["10.1.0.2"]

    assert allocate_one(store, "pod-c") == "10.1.0.4"
    assert snapshot(net_dir(store))["last_reserved_ip.0"] == b"10.1.0.4"


def test_allocation_wraps_to_the_start_and_skips_the_gateway(store):
    small = [[rng("10.1.0.0/29")]]  # .1 gateway, .2-.6 for pods
    got = [allocate_one(store, f"pod-{i}", small) for i in range(5)]
    assert got == ["10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6"]
    store.release("pod-0")
    store.release("pod-2")

    assert allocate_one(store, "pod-x", small) == "10.1.0.2"
    assert allocate_one(store, "pod-y", small) == "10.1.0.4"


def test_last_reserved_address_itself_is_tried_last(store):
    small = [[rng("10.1.0.0/29")]]
    for i in range(5):
        allocate_one(store, f"pod-{i}", small)
    store.release("pod-4")  # .6, the last reserved address
    store.release("pod-2")  # .4

    assert allocate_one(store, "pod-x", small) == "10.1.0.4"
    assert allocate_one(store, "pod-y", small) == "10.1.0.6"


def test_a_last_reserved_address_outside_the_set_restarts_at_range_start(store):
    os.makedirs(net_dir(store))
    with open(os.path.join(net_dir(store), "last_reserved_ip.0"), "w") as handle:
        handle.write("192.168.7.7")

    assert allocate_one(store, "pod-a") == "10.1.0.2"


def test_garbage_in_last_reserved_is_ignored(store):
    os.makedirs(net_dir(store))
    with open(os.path.join(net_dir(store), "last_reserved_ip.0"), "w") as handle:
        handle.write("not an address")

    assert allocate_one(store, "pod-a") == "10.1.0.2"


def test_ranges_of_a_set_are_walked_in_order_then_exhausted(store):
    split = [
        [
            rng("10.1.0.0/24", "10.1.0.2", "10.1.0.3"),
            rng("10.1.0.0/24", "10.1.0.10", "10.1.0.11"),
        ]
    ]
    got = [allocate_one(store, f"pod-{i}", split) for i in range(4)]
    assert got == ["10.1.0.2", "10.1.0.3", "10.1.0.10", "10.1.0.11"]

    with pytest.raises(IpamError) as caught:
        store.allocate(split, "pod-z", "eth0")
    assert str(caught.value) == (
        'network "lan": no IP addresses available in range set: '
        "10.1.0.2-10.1.0.3,10.1.0.10-10.1.0.11"
    )


def test_c03_a_slash_30_gives_one_address_then_the_exact_exhaustion_message(tmp_path):
    store = LeaseStore(str(tmp_path), "s30")
    s30 = [[rng("10.30.0.0/30")]]
    assert store.allocate(s30, "s1", "eth0")[0].cidr == "10.30.0.2/30"

    with pytest.raises(IpamError) as caught:
        store.allocate(s30, "s2", "eth0")
    assert str(caught.value) == (
        'network "s30": no IP addresses available in range set: 10.30.0.1-10.30.0.2'
    )
    assert store.find("s2") == []


def test_other_files_in_the_directory_are_not_leases(store):
    allocate_one(store, "pod-a")
    with open(os.path.join(net_dir(store), "notes.txt"), "w") as handle:
        handle.write("pod-a\r\neth0")

    assert store.leases() == [StoredLease(IPAddress("10.1.0.2"), "pod-a", "eth0")]


# -- defensive bounds (C04, C05): never outside the subnet, never network or broadcast --------


def test_c05_explicit_network_and_broadcast_bounds_are_never_handed_out(store):
    whole = [[rng("10.40.0.0/30", "10.40.0.0", "10.40.0.3")]]
    assert allocate_one(store, "pod-a", whole) == "10.40.0.2"

    with pytest.raises(
        IpamError, match="no IP addresses available in range set: 10.40.0.0-10.40.0.3"
    ):
        store.allocate(whole, "pod-b", "eth0")
    assert sorted(os.listdir(net_dir(store))) == ["10.40.0.2", "last_reserved_ip.0", "lock"]


def test_c04_a_range_reaching_past_its_subnet_never_leaves_the_subnet(store):
    past = [[rng("10.41.0.0/24", "10.41.0.253", "10.41.1.5")]]
    got = [allocate_one(store, "pod-a", past), allocate_one(store, "pod-b", past)]
    assert got == ["10.41.0.253", "10.41.0.254"]

    with pytest.raises(IpamError, match="no IP addresses available"):
        store.allocate(past, "pod-c", "eth0")
    assert not os.path.exists(os.path.join(net_dir(store), "10.41.0.255"))
    assert not os.path.exists(os.path.join(net_dir(store), "10.41.1.0"))


def test_c04_a_reversed_range_allocates_nothing(store):
    reversed_range = [[rng("10.41.0.0/24", "10.41.0.255", "10.41.0.254")]]

    with pytest.raises(IpamError, match="no IP addresses available"):
        store.allocate(reversed_range, "pod-a", "eth0")
    assert store.leases() == []


# -- requested addresses (IP=) ---------------------------------------------------------------


def test_requested_address_is_honoured_exactly_and_moves_the_cursor(store):
    assert allocate_one(store, "pod-a", requested=["10.1.0.50"]) == "10.1.0.50"
    assert snapshot(net_dir(store))["last_reserved_ip.0"] == b"10.1.0.50"

    assert allocate_one(store, "pod-b") == "10.1.0.51"


def test_requested_address_may_carry_a_prefix(store):
    assert allocate_one(store, "pod-a", requested=["10.1.0.9/24"]) == "10.1.0.9"


def test_requested_address_taken_names_its_owner(store):
    allocate_one(store, "pod-a")

    with pytest.raises(IpamError) as caught:
        store.allocate(LAN, "pod-b", "eth0", ["10.1.0.2"])
    assert str(caught.value) == (
        'network "lan": requested IP address "10.1.0.2" is not available: leased to pod-a'
    )
    assert store.find("pod-b") == []


def test_requested_gateway_is_refused(store):
    with pytest.raises(IpamError, match='requested IP address "10.1.0.1" is the gateway'):
        store.allocate(LAN, "pod-a", "eth0", ["10.1.0.1"])
    assert store.leases() == []


def test_requested_address_outside_every_range_is_refused_with_the_ranges(store):
    narrow = [[rng("10.1.0.0/24", "10.1.0.2", "10.1.0.254")]]

    with pytest.raises(IpamError) as caught:
        store.allocate(narrow, "pod-a", "eth0", ["10.9.0.1"])
    assert str(caught.value) == (
        'network "lan": requested IP address "10.9.0.1" is not in any range (10.1.0.2-10.1.0.254)'
    )
    assert not os.path.exists(net_dir(store))


@pytest.mark.parametrize("address", ["10.1.0.0", "10.1.0.255"])
def test_requested_network_or_broadcast_address_is_refused(store, address):
    whole = [[rng("10.1.0.0/24", "10.1.0.0", "10.1.0.255")]]

    with pytest.raises(IpamError, match="is not in any range"):
        store.allocate(whole, "pod-a", "eth0", [address])


def test_requested_text_that_is_no_address_is_refused(store):
    with pytest.raises(IpamError, match='requested IP address "ten" is not an IP address'):
        store.allocate(LAN, "pod-a", "eth0", ["ten"])


def test_two_requested_addresses_in_one_set_are_refused(store):
    with pytest.raises(IpamError, match="one address per range set"):
        store.allocate(LAN, "pod-a", "eth0", ["10.1.0.7", "10.1.0.8"])
    assert store.leases() == []


# -- idempotent re-runs ----------------------------------------------------------------------


def test_same_owner_and_ifname_get_their_lease_back(store):
    first = store.allocate(LAN, "pod-a", "eth0")
    again = store.allocate(LAN, "pod-a", "eth0")

    assert again == first
    assert sorted(os.listdir(net_dir(store))) == ["10.1.0.2", "last_reserved_ip.0", "lock"]


def test_another_ifname_of_the_same_owner_gets_another_address(store):
    assert allocate_one(store, "pod-a", ifname="eth0") == "10.1.0.2"
    assert allocate_one(store, "pod-a", ifname="eth1") == "10.1.0.3"


def test_re_requesting_the_held_address_returns_it(store):
    allocate_one(store, "pod-a", requested=["10.1.0.9"])

    assert allocate_one(store, "pod-a", requested=["10.1.0.9"]) == "10.1.0.9"


def test_requesting_another_address_while_holding_one_is_refused(store):
    allocate_one(store, "pod-a")

    with pytest.raises(IpamError) as caught:
        store.allocate(LAN, "pod-a", "eth0", ["10.1.0.9"])
    assert str(caught.value) == (
        'network "lan": requested IP address "10.1.0.9" is not available: '
        "pod-a already holds 10.1.0.2 on eth0"
    )


# -- release ---------------------------------------------------------------------------------


def test_release_by_owner_removes_every_ifname(store):
    allocate_one(store, "pod-a", ifname="eth0")
    allocate_one(store, "pod-a", ifname="eth1")
    allocate_one(store, "pod-b")

    assert store.release("pod-a") == ["10.1.0.2", "10.1.0.3"]
    assert store.leases() == [StoredLease(IPAddress("10.1.0.4"), "pod-b", "eth0")]


def test_release_by_ifname_keeps_the_other_interfaces(store):
    allocate_one(store, "pod-a", ifname="eth0")
    allocate_one(store, "pod-a", ifname="eth1")

    assert store.release("pod-a", "eth1") == ["10.1.0.3"]
    assert store.find("pod-a") == ["10.1.0.2"]


def test_release_of_nothing_is_success_and_creates_nothing(store):
    assert store.release("pod-a") == []
    assert store.release("pod-a", "eth0") == []
    assert store.release_address("10.1.0.2") is False
    assert not os.path.exists(store.data_dir)


def test_release_twice_is_success(store):
    allocate_one(store, "pod-a")

    assert store.release("pod-a", "eth0") == ["10.1.0.2"]
    assert store.release("pod-a", "eth0") == []


def test_release_address_removes_only_that_lease(store):
    allocate_one(store, "pod-a")
    allocate_one(store, "pod-b")

    assert store.release_address("10.1.0.3") is True
    assert store.release_address("10.1.0.3") is False
    assert store.owner_of("10.1.0.2") == ("pod-a", "eth0")
    assert store.owner_of("10.1.0.3") is None


def test_lookups_on_a_missing_directory_are_empty(store):
    assert store.leases() == []
    assert store.find("pod-a") == []
    assert store.owner_of("10.1.0.2") is None
    assert not os.path.exists(store.data_dir)


# -- legacy owner-only files -----------------------------------------------------------------


@pytest.fixture
def legacy(store) -> LeaseStore:
    os.makedirs(net_dir(store))
    with open(os.path.join(net_dir(store), "10.1.0.7"), "w") as handle:
        handle.write("old-pod")
    return store


def test_legacy_file_is_read_with_an_empty_ifname(legacy):
    assert legacy.owner_of("10.1.0.7") == ("old-pod", "")
    assert legacy.find("old-pod", "eth0") == ["10.1.0.7"]


def test_legacy_file_blocks_allocation_and_is_returned_to_its_owner(legacy):
    with pytest.raises(IpamError, match="leased to old-pod"):
        legacy.allocate(LAN, "pod-a", "eth0", ["10.1.0.7"])

    assert allocate_one(legacy, "old-pod") == "10.1.0.7"


@pytest.mark.parametrize("ifname", [None, "eth0"])
def test_legacy_file_is_released_by_its_owner(legacy, ifname):
    assert legacy.release("old-pod", ifname) == ["10.1.0.7"]
    assert legacy.leases() == []


def test_legacy_file_is_kept_when_an_exact_lease_matches_as_host_local_does(legacy):
    with open(os.path.join(net_dir(legacy), "10.1.0.8"), "w", newline="") as handle:
        handle.write("old-pod\r\neth1")

    assert legacy.release("old-pod", "eth1") == ["10.1.0.8"]
    assert legacy.find("old-pod") == ["10.1.0.7"]


# -- predict (check mode) --------------------------------------------------------------------


def test_predict_on_a_fresh_store_writes_nothing(store):
    assert addresses(store.predict(LAN, "pod-a", "eth0")) == ["10.1.0.2"]
    assert not os.path.exists(store.data_dir)


@pytest.mark.parametrize(
    ("owner", "requested"),
    [("pod-new", None), ("pod-new", ["10.1.0.77"]), ("pod-b", None), ("pod-b", ["10.1.0.3"])],
    ids=["sequential", "requested", "held", "held-requested"],
)
def test_predict_matches_the_following_allocation_and_writes_nothing(store, owner, requested):
    allocate_one(store, "pod-a")
    allocate_one(store, "pod-b")
    allocate_one(store, "pod-c")
    store.release("pod-a")
    before = snapshot(net_dir(store))

    predicted = store.predict(LAN, owner, "eth0", requested)

    assert snapshot(net_dir(store)) == before
    assert store.allocate(LAN, owner, "eth0", requested) == predicted


def test_predict_reports_exhaustion_like_allocate(tmp_path):
    store = LeaseStore(str(tmp_path), "s30")
    s30 = [[rng("10.30.0.0/30")]]
    store.allocate(s30, "s1", "eth0")

    with pytest.raises(IpamError, match="no IP addresses available in range set: 10.30.0.1-"):
        store.predict(s30, "s2", "eth0")


# -- several range sets ----------------------------------------------------------------------


DUAL = [[rng("10.1.0.0/24")], [rng("2001:db8:1::/64")]]


def test_one_address_per_range_set_with_its_own_cursor(store):
    leases = store.allocate(DUAL, "pod-a", "eth0")

    assert [lease.cidr for lease in leases] == ["10.1.0.2/24", "2001:db8:1::2/64"]
    assert leases[1].gateway == IPAddress("2001:db8:1::1")
    files = snapshot(net_dir(store))
    assert files["last_reserved_ip.0"] == b"10.1.0.2"
    assert files["last_reserved_ip.1"] == b"2001:db8:1::2"
    assert files["2001:db8:1::2"] == b"pod-a\r\neth0"


def test_requested_addresses_go_to_their_own_sets(store):
    leases = store.allocate(DUAL, "pod-a", "eth0", ["2001:db8:1::0:a", "10.1.0.20"])

    assert addresses(leases) == ["10.1.0.20", "2001:db8:1::a"]


def test_failure_in_a_later_set_releases_what_this_call_took(store):
    sets = [[rng("10.1.0.0/24")], [rng("10.2.0.0/30")]]
    allocate_one(store, "pod-a", [[rng("10.2.0.0/30")]])  # fills the second set
    # pod-b already holds its lease in the first set: a re-run must not lose it.
    store.allocate([sets[0]], "pod-b", "eth0")

    with pytest.raises(IpamError, match="range set: 10.2.0.1-10.2.0.2"):
        store.allocate(sets, "pod-c", "eth0")
    with pytest.raises(IpamError, match="range set: 10.2.0.1-10.2.0.2"):
        store.allocate(sets, "pod-b", "eth0")

    assert [(str(lease.address), lease.owner) for lease in store.leases()] == [
        ("10.1.0.2", "pod-b"),
        ("10.2.0.2", "pod-a"),
    ]


def test_requested_address_failure_in_a_later_set_rolls_back(store):
    allocate_one(store, "pod-a", DUAL, requested=["10.1.0.2", "2001:db8:1::5"])

    with pytest.raises(IpamError, match="leased to pod-a"):
        store.allocate(DUAL, "pod-b", "eth0", ["2001:db8:1::5"])
    assert store.find("pod-b") == []


# -- IPv6 ------------------------------------------------------------------------------------


def test_ipv6_range_uses_canonical_names_and_its_last_address(store):
    v6 = [[rng("2001:db8:0:7::/126")]]  # ::1 gateway, ::2 and ::3 for pods
    got = [allocate_one(store, f"pod-{i}", v6) for i in range(2)]

    assert got == ["2001:db8:0:7::2", "2001:db8:0:7::3"]
    assert "2001:db8:0:7::3" in os.listdir(net_dir(store))
    with pytest.raises(IpamError, match="range set: 2001:db8:0:7::1-2001:db8:0:7::3"):
        store.allocate(v6, "pod-z", "eth0")


def test_ipv6_requested_in_any_spelling_finds_the_same_file(store):
    v6 = [[rng("2001:db8::/64")]]
    allocate_one(store, "pod-a", v6, requested=["2001:DB8:0:0::00AA"])

    assert os.listdir(net_dir(store)).count("2001:db8::aa") == 1
    assert store.owner_of("2001:db8::00aa") == ("pod-a", "eth0")
    with pytest.raises(IpamError, match="leased to pod-a"):
        store.allocate(v6, "pod-b", "eth0", ["2001:db8::aa"])


# -- concurrency -----------------------------------------------------------------------------


def _allocate_many(data_dir: str, worker: int, count: int, barrier, results) -> None:
    store = LeaseStore(data_dir, "lan")
    barrier.wait()
    got = [allocate_one(store, f"w{worker}-{i}") for i in range(count)]
    results.put((worker, got))


def test_processes_allocating_at_once_never_share_an_address(store):
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(4)
    results = context.Queue()
    workers = [
        context.Process(target=_allocate_many, args=(store.data_dir, w, 20, barrier, results))
        for w in range(4)
    ]
    for worker in workers:
        worker.start()
    got = dict(results.get(timeout=60) for _worker in workers)
    for worker in workers:
        worker.join(timeout=10)
        assert worker.exitcode == 0

    handed_out = [address for addresses in got.values() for address in addresses]
    assert len(handed_out) == 80
    assert len(set(handed_out)) == 80
    on_disk = {str(lease.address): lease.owner for lease in store.leases()}
    assert len(on_disk) == 80
    for worker, worker_addresses in got.items():
        for i, address in enumerate(worker_addresses):
            assert on_disk[address] == f"w{worker}-{i}"
    # 80 allocations from .2 with no release in between fill .2-.81 exactly.
    assert sorted(on_disk, key=IPAddress) == [f"10.1.0.{n}" for n in range(2, 82)]


def test_allocation_waits_for_the_lock_held_by_another_tool(store):
    allocate_one(store, "pod-a")
    # A separate interpreter, not a fork: a forked child would share our lock and keep it.
    code = (
        "import sys\n"
        "from netaddr import IPAddress as A, IPNetwork as N\n"
        "from ansible_collections.podnet.cni.plugins.module_utils._conf import Range\n"
        "from ansible_collections.podnet.cni.plugins.module_utils._host_local import LeaseStore\n"
        "lan = [[Range(N('10.1.0.0/24'), A('10.1.0.1'), A('10.1.0.254'), A('10.1.0.1'))]]\n"
        "print(LeaseStore(sys.argv[1], 'lan').allocate(lan, 'pod-late', 'eth0')[0].address)\n"
    )
    lock_fd = os.open(os.path.join(net_dir(store), "lock"), os.O_RDONLY)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        child = subprocess.Popen(
            [sys.executable, "-c", code, store.data_dir], stdout=subprocess.PIPE, text=True
        )
        time.sleep(1)
        # Only look at names here: a locked lookup from this process would wait on ourselves.
        assert sorted(os.listdir(net_dir(store))) == ["10.1.0.2", "last_reserved_ip.0", "lock"]
        assert child.poll() is None
    finally:
        os.close(lock_fd)

    out, _err = child.communicate(timeout=30)
    assert out.strip() == "10.1.0.3"
    assert store.find("pod-late") == ["10.1.0.3"]


def test_range_sets_from_the_conf_validator_allocate_like_host_local(tmp_path):
    ranges = host_local_ranges(
        {"type": "host-local", "ranges": [[{"subnet": "10.30.0.0/30"}], [{"subnet": "fd00::/64"}]]},
        "s30",
    )
    store = LeaseStore(str(tmp_path), "s30")

    leases = store.allocate(ranges, "s1", "eth0")

    assert [lease.cidr for lease in leases] == ["10.30.0.2/30", "fd00::2/64"]
