"""macvlan/ipvlan pure logic: modes, MTU limit, rival kinds on a master, the kernel probe."""

from __future__ import annotations

import errno
from types import SimpleNamespace

import pytest

from ansible_collections.podnet.cni.plugins.module_utils import _network_types
from ansible_collections.podnet.cni.plugins.module_utils._lan_types import (
    IPVLAN,
    LEDGER_SECTION,
    MACVLAN,
    mtu_problem,
    rival_on_master,
    support_from_errno,
    temp_name,
)


@pytest.mark.parametrize(
    ("kind", "conf", "mode", "value"),
    [
        (MACVLAN, {}, "bridge", 4),
        (MACVLAN, {"mode": "private"}, "private", 1),
        (MACVLAN, {"mode": "vepa"}, "vepa", 2),
        (MACVLAN, {"mode": "passthru"}, "passthru", 8),
        (IPVLAN, {}, "l2", 0),
        (IPVLAN, {"mode": "l3"}, "l3", 1),
        (IPVLAN, {"mode": "l3s"}, "l3s", 2),
    ],
)
def test_mode_defaults_and_kernel_values(kind, conf, mode, value):
    assert kind.mode(SimpleNamespace(conf=conf)) == mode
    assert kind.modes[mode] == value


@pytest.mark.parametrize(
    ("wanted", "master_mtu", "ok"),
    [(None, 1500, True), (1500, 1500, True), (1400, 1500, True), (1501, 1500, False)],
)
def test_mtu_may_not_exceed_the_masters(wanted, master_mtu, ok):
    problem = mtu_problem(wanted, master_mtu, "lan0")
    assert (problem is None) is ok
    if not ok:
        assert "1500" in problem and '"lan0"' in problem


@pytest.mark.parametrize(
    ("kind", "ledger", "uppers", "rival"),
    [
        (MACVLAN, {}, [], None),
        (MACVLAN, {"lan0": {"kind": "macvlan", "owners": ["p:n"]}}, [], None),
        (MACVLAN, {"lan0": {"kind": "ipvlan", "owners": ["p:n"]}}, [], "ipvlan"),
        (MACVLAN, {"lan0": {"kind": "ipvlan", "owners": []}}, [], None),
        (MACVLAN, {"other": {"kind": "ipvlan", "owners": ["p:n"]}}, [], None),
        (MACVLAN, {}, ["vlan", "ipvlan"], "ipvlan"),
        (MACVLAN, {}, ["macvlan"], None),
        (IPVLAN, {"lan0": {"kind": "macvlan", "owners": ["p:n"]}}, [], "macvlan"),
        (IPVLAN, {}, ["macvtap"], "macvtap"),
        (IPVLAN, {}, ["ipvlan"], None),
    ],
)
def test_rival_kind_on_a_master(kind, ledger, uppers, rival):
    assert rival_on_master(kind, "lan0", {LEDGER_SECTION: ledger}, uppers) == rival


@pytest.mark.parametrize(
    ("code", "unsupported"),
    [(errno.EOPNOTSUPP, True), (errno.EINVAL, False), (errno.EPERM, False), (None, False)],
)
def test_probe_answer(code, unsupported):
    reason = support_from_errno(IPVLAN, code)
    assert (reason is not None) is unsupported
    if unsupported:
        assert "the kernel has no ipvlan support" in reason


def test_temp_name_is_stable_short_and_per_attachment():
    first = temp_name(MACVLAN, "web", "eth0")
    assert first == temp_name(MACVLAN, "web", "eth0")
    assert first != temp_name(MACVLAN, "web", "eth1") != temp_name(MACVLAN, "db", "eth0")
    assert len(first) <= 15 and not first.startswith("eth")


def test_both_types_are_registered():
    assert _network_types.type_for("macvlan").KIND is MACVLAN
    assert _network_types.type_for("ipvlan").KIND is IPVLAN
