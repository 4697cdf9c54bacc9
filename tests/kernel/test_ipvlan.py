"""The ipvlan network type on the real kernel.

Kernels without ipvlan (this project's CI kernel among them) must get a clear error and no
change; the working path runs where podnet's own run-time probe finds ipvlan, and skips with
that probe's reason elsewhere.
"""

from __future__ import annotations

import pytest
from lan_sandbox import (
    HOST_ADDRESS,
    LAN_ADDRESS,
    MASTER,
    Lan,
    detected_unsupported,
    lan_conf,
    link_details,
    pod_links,
)
from sandbox import addresses, netns_exists, ping
from test_macvlan import state_of
from test_pod_network import down, lease_files, up, write_conf


@pytest.fixture
def lan(host):
    made = Lan(host)
    try:
        yield made
    finally:
        made.destroy()


@pytest.fixture
def no_ipvlan(host, lan) -> str | None:
    """podnet's answer, probed inside the sandbox host: why this kernel has no ipvlan."""
    return detected_unsupported(host, "ipvlan")


@pytest.fixture
def with_ipvlan(no_ipvlan):
    if no_ipvlan:
        pytest.skip(f"podnet's run-time probe: {no_ipvlan}")


@pytest.mark.parametrize("check", [False, True])
def test_kernel_without_ipvlan_fails_clearly_and_changes_nothing(host, lan, no_ipvlan, check):
    if not no_ipvlan:
        pytest.skip("this kernel has ipvlan: the no-ipvlan error cannot happen here")
    write_conf(host, "10-lan.conf", lan_conf("ipvlan"))
    pod = host.pod_name()
    before = state_of(host)
    result = host.module("pod_network", {"name": pod, "networks": ["lan"]}, check=check)
    assert result.failed
    assert 'network "lan"' in result["msg"]
    assert "the kernel has no ipvlan support" in result["msg"], result["msg"]
    assert not netns_exists(pod)
    assert state_of(host) == before


def test_ipvlan_beside_macvlan_on_one_master_is_refused(host, lan):
    write_conf(host, "10-mv.conf", lan_conf("macvlan", name="mv"))
    write_conf(host, "20-iv.conf", lan_conf("ipvlan", name="iv"))
    first = host.pod_name()
    up(host, first, ["mv"])
    second = host.pod_name()
    before = state_of(host)
    result = host.module("pod_network", {"name": second, "networks": ["iv"]})
    assert result.failed
    assert 'network "iv"' in result["msg"] and 'field "master"' in result["msg"]
    assert "already carries macvlan links" in result["msg"]
    assert "cannot share a master" in result["msg"]
    assert not netns_exists(second)
    assert state_of(host) == before
    down(host, first)
    assert state_of(host)["lan_masters"] == {}


def test_l2_pods_reach_each_other_and_the_lan_but_not_the_host(host, lan, with_ipvlan):
    host.run(["ip", "addr", "add", f"{HOST_ADDRESS}/24", "dev", MASTER])
    write_conf(host, "10-lan.conf", lan_conf("ipvlan"))
    web, db = host.pod_name(), host.pod_name()
    up(host, web, ["lan"], add_default_restricted=False)
    up(host, db, ["lan"], add_default_restricted=False)
    eth0 = link_details(web, "eth0")
    assert eth0["linkinfo"]["info_kind"] == "ipvlan"
    assert addresses(web, "eth0") == ["192.0.2.10/24"]
    assert ping(web, "192.0.2.11") and ping(web, LAN_ADDRESS)
    assert not ping(web, HOST_ADDRESS)


def test_l3_mode_is_applied(host, lan, with_ipvlan):
    write_conf(host, "10-lan.conf", lan_conf("ipvlan", mode="l3"))
    pod = host.pod_name()
    up(host, pod, ["lan"], add_default_restricted=False)
    assert link_details(pod, "eth0")["linkinfo"]["info_data"]["mode"] == "l3"
    assert ping(pod, LAN_ADDRESS)


def test_ipvlan_idempotent_check_mode_and_absent_after_master_gone(host, lan, with_ipvlan):
    write_conf(host, "10-lan.conf", lan_conf("ipvlan"))
    pod = host.pod_name()
    args = {"name": pod, "networks": ["lan"], "add_default_restricted": False}
    assert host.module("pod_network", args, check=True)["changed"] is True
    assert not netns_exists(pod)
    assert host.module("pod_network", args)["changed"] is True
    assert host.module("pod_network", args)["changed"] is False
    assert host.module("pod_network", args, check=True)["changed"] is False
    host.run(["ip", "link", "del", MASTER])
    down(host, pod)
    assert lease_files(host) == [] and state_of(host)["lan_masters"] == {}


def test_macvlan_beside_ipvlan_on_one_master_is_refused(host, lan, with_ipvlan):
    write_conf(host, "10-iv.conf", lan_conf("ipvlan", name="iv"))
    write_conf(host, "20-mv.conf", lan_conf("macvlan", name="mv"))
    up(host, host.pod_name(), ["iv"])
    second = host.pod_name()
    result = host.module("pod_network", {"name": second, "networks": ["mv"]})
    assert result.failed and "cannot share a master" in result["msg"]
    assert not netns_exists(second)


BAD_CONFS = [
    ({"master": None}, 'field "master"', "is required"),
    ({"master": "no/such"}, 'field "master"', "not a valid interface name"),
    ({"master": "eth9"}, 'field "master"', 'interface "eth9" does not exist'),
    ({"mode": "bridge"}, 'field "mode"', "is not an ipvlan mode"),
    ({"mtu": 9000}, 'field "mtu"', 'larger than the MTU 1500 of master "lan0"'),
    ({"ipMasq": 1}, 'field "ipMasq"', "must be true or false"),
]


@pytest.mark.parametrize(("change", "field", "reason"), BAD_CONFS)
def test_bad_conf_fails_clearly_and_changes_nothing(host, lan, change, field, reason):
    conf = lan_conf("ipvlan")
    for key, value in change.items():
        if value is None:
            del conf[key]
        else:
            conf[key] = value
    write_conf(host, "10-lan.conf", conf)
    pod = host.pod_name()
    before = state_of(host)
    result = host.module("pod_network", {"name": pod, "networks": ["lan"]})
    assert result.failed
    assert field in result["msg"] and reason in result["msg"], result["msg"]
    assert not netns_exists(pod) and pod_links(pod) == []
    assert state_of(host) == before
