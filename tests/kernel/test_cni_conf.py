"""The cni_conf module run the way Ansible runs it: files written, check mode, diff, errors."""

from __future__ import annotations

import json
import os
import stat

import pytest


def lan(subnet: str = "10.1.0.0/24", **extra) -> dict:
    return {
        "name": "lan",
        "type": "bridge",
        "bridge": "rkt1",
        "isGateway": True,
        "ipMasq": True,
        "ipam": {"type": "host-local", "subnet": subnet, "routes": [{"dst": "0.0.0.0/0"}]},
        **extra,
    }


def cni_conf(host, args: dict, **kw):
    return host.module("cni_conf", {"conf_dir": host.conf_dir, **args}, with_dirs=False, **kw)


def snapshot(directory: str) -> dict[str, tuple[bytes, int, int]]:
    """Every entry of a dir with its bytes, mode and inode: equal snapshots mean untouched."""
    if not os.path.isdir(directory):
        return {}
    found = {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        info = os.stat(path)
        with open(path, "rb") as handle:
            found[name] = (handle.read(), stat.S_IMODE(info.st_mode), info.st_ino)
    return found


def read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def test_present_writes_the_conf_and_a_second_run_changes_nothing(host):
    result = cni_conf(host, {"conf": lan(), "ordinal": "10"})

    path = os.path.join(host.conf_dir, "10-lan.conf")
    assert not result.failed, result
    assert result["changed"] is True and result["path"] == path
    assert result["conf"] == lan()
    assert read_json(path) == lan()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert os.listdir(host.conf_dir) == ["10-lan.conf"]

    before = snapshot(host.conf_dir)
    again = cni_conf(host, {"conf": lan(), "ordinal": 10})
    assert again["changed"] is False and again["actions"] == []
    assert snapshot(host.conf_dir) == before


def test_default_file_name_is_the_network_name(host):
    result = cni_conf(host, {"conf": lan()})
    assert result["path"] == os.path.join(host.conf_dir, "lan.conf")
    assert os.listdir(host.conf_dir) == ["lan.conf"]


def test_keys_in_any_case_are_written_in_canonical_case(host):
    given = {
        "Name": "lan",
        "TYPE": "ptp",
        "IpMasq": True,
        "IPAM": {"Type": "host-local", "Subnet": "10.1.0.0/24"},
    }
    result = cni_conf(host, {"conf": given})
    written = read_json(result["path"])
    assert written == {
        "name": "lan",
        "type": "ptp",
        "ipMasq": True,
        "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"},
    }
    assert cni_conf(host, {"conf": given})["changed"] is False


def test_an_equivalent_hand_written_file_is_left_alone(host):
    path = os.path.join(host.conf_dir, "lan.conf")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(
            '{"IPAM": {"routes": [{"dst": "0.0.0.0/0"}], "Subnet": "10.1.0.0/24",\n'
            '"type": "host-local"}, "ipMasq": true, "isGateway": true,\n'
            '"bridge": "rkt1", "type": "bridge", "name": "lan"}'
        )
    os.chmod(path, 0o644)
    before = snapshot(host.conf_dir)

    result = cni_conf(host, {"conf": lan()})
    assert result["changed"] is False
    assert snapshot(host.conf_dir) == before


def test_check_mode_writes_nothing_and_predicts_the_change(host):
    conf_dir = os.path.join(host.root, "new.d")
    result = host.module(
        "cni_conf",
        {"conf_dir": conf_dir, "conf": lan(), "ordinal": "10"},
        check=True,
        diff=True,
        with_dirs=False,
    )

    assert result["changed"] is True
    assert result["actions"] == [f"create {conf_dir}/10-lan.conf"]
    assert json.loads(result["diff"]["after"]) == lan()
    assert not os.path.exists(conf_dir)


def test_check_mode_on_an_update_keeps_the_old_file(host):
    cni_conf(host, {"conf": lan()})
    before = snapshot(host.conf_dir)
    result = cni_conf(host, {"conf": lan("10.2.0.0/24")}, check=True)
    assert result["changed"] is True
    assert snapshot(host.conf_dir) == before


def test_diff_shows_the_rendered_file_before_and_after(host):
    first = cni_conf(host, {"conf": lan(), "ordinal": "10"}, diff=True)
    path = first["path"]
    assert first["diff"]["before"] == ""
    assert first["diff"]["before_header"] == first["diff"]["after_header"] == path

    result = cni_conf(host, {"conf": lan("10.2.0.0/24"), "ordinal": "10"}, diff=True)
    diff = result["diff"]
    assert result["changed"] is True
    assert '"subnet": "10.1.0.0/24"' in diff["before"]
    assert '"subnet": "10.2.0.0/24"' in diff["after"]
    assert diff["before_header"] == diff["after_header"] == path
    with open(path, encoding="utf-8") as handle:
        assert handle.read() == diff["after"]


def test_mode_is_applied_and_a_mode_change_alone_is_a_change(host):
    result = cni_conf(host, {"conf": lan(), "mode": "0600"})
    assert stat.S_IMODE(os.stat(result["path"]).st_mode) == 0o600
    again = cni_conf(host, {"conf": lan(), "mode": "0640"})
    assert again["changed"] is True
    assert stat.S_IMODE(os.stat(result["path"]).st_mode) == 0o640


def test_absent_removes_the_file_and_absent_again_is_unchanged(host):
    cni_conf(host, {"conf": lan(), "ordinal": "10"})
    cni_conf(host, {"conf": {"name": "other", "type": "bridge"}})

    result = cni_conf(host, {"name": "lan", "state": "absent"})
    assert result["changed"] is True
    assert result["removed"] == [os.path.join(host.conf_dir, "10-lan.conf")]
    assert os.listdir(host.conf_dir) == ["other.conf"]

    again = cni_conf(host, {"name": "lan", "state": "absent"})
    assert again["changed"] is False and again["removed"] == []
    assert os.listdir(host.conf_dir) == ["other.conf"]


def test_absent_by_ordinal_and_by_path(host):
    cni_conf(host, {"conf": lan(), "ordinal": "10"})
    result = cni_conf(host, {"name": "lan", "ordinal": "10", "state": "absent"})
    assert result["changed"] is True and os.listdir(host.conf_dir) == []

    path = os.path.join(host.conf_dir, "x.conf")
    cni_conf(host, {"conf": lan(), "path": path})
    assert cni_conf(host, {"path": path, "state": "absent"})["changed"] is True
    assert not os.path.exists(path)
    assert cni_conf(host, {"path": path, "state": "absent"})["changed"] is False


def test_absent_in_check_mode_keeps_the_file(host):
    cni_conf(host, {"conf": lan()})
    before = snapshot(host.conf_dir)
    result = cni_conf(host, {"name": "lan", "state": "absent"}, check=True, diff=True)
    assert result["changed"] is True and result["diff"]["after"] == ""
    assert snapshot(host.conf_dir) == before


def test_a_name_already_defined_in_another_file_fails_naming_both(host):
    cni_conf(host, {"conf": lan(), "ordinal": "10"})
    before = snapshot(host.conf_dir)

    result = cni_conf(host, {"conf": lan("10.2.0.0/24"), "ordinal": "20"})
    assert result.failed
    assert os.path.join(host.conf_dir, "10-lan.conf") in result["msg"]
    assert os.path.join(host.conf_dir, "20-lan.conf") in result["msg"]
    assert snapshot(host.conf_dir) == before


def test_name_option_must_match_the_conf(host):
    result = cni_conf(host, {"conf": lan(), "name": "wan"})
    assert result.failed and '"wan"' in result["msg"]
    assert os.listdir(host.conf_dir) == []


def test_path_and_ordinal_are_mutually_exclusive(host):
    result = cni_conf(host, {"conf": lan(), "ordinal": "10", "path": "/tmp/x.conf"})
    assert result.failed and "mutually exclusive" in result["msg"]


def host_local(**ipam) -> dict:
    return {"name": "lan", "type": "ptp", "ipam": {"type": "host-local", **ipam}}


# fmt: off
BAD_CONFS = [
    # (conf, field named in the message, value shown in the message)
    ({"type": "ptp"}, "name", None),
    ({"name": "my net", "type": "ptp"}, "name", "'my net'"),
    ({"name": "lan"}, "type", None),
    ({"name": "lan", "type": "ptp"}, "ipam.type", None),
    ({**host_local(subnet="10.1.0.0/24"), "ipMasq": "yes"}, "ipMasq", "'yes'"),
    ({**host_local(subnet="10.1.0.0/24"), "mtu": 40}, "mtu", "40"),
    ({"name": "lan", "type": "bridge", "bridge": "bridge-name-too-long"}, "bridge",
     "'bridge-name-too-long'"),
    ({"name": "lan", "type": "bridge", "hairpinMode": True, "promiscMode": True}, "promiscMode",
     "True"),
    ({"name": "lan", "type": "bridge", "isDefaultGateway": True, "isGateway": False},
     "isGateway", "False"),
    ({"name": "lan", "type": "macvlan", "mode": "bridge"}, "master", None),
    ({"name": "lan", "type": "macvlan", "master": "eth0", "mode": "l3"}, "mode", "'l3'"),
    ({"name": "lan", "type": "ipvlan", "master": "eth0", "mode": "vepa"}, "mode", "'vepa'"),
    (host_local(subnet="10.1.0.1/24"), "ipam.subnet", "'10.1.0.1/24'"),
    (host_local(subnet="10.1.0.0/32"), "ipam.subnet", "'10.1.0.0/32'"),
    (host_local(subnet="10.1.0.0/24", rangeStart="10.1.0.250", rangeEnd="10.1.0.20"),
     "ipam.rangeStart", "'10.1.0.250'"),
    (host_local(subnet="10.41.0.0/24", rangeStart="10.41.0.255"), "ipam.rangeStart",
     "'10.41.0.255'"),
    (host_local(subnet="10.40.0.0/30", rangeStart="10.40.0.0", rangeEnd="10.40.0.2"),
     "ipam.rangeStart", "'10.40.0.0'"),
    (host_local(subnet="10.1.0.0/24", rangeEnd="10.1.2.0"), "ipam.rangeEnd", "'10.1.2.0'"),
    (host_local(subnet="10.1.0.0/24", gateway="10.1.0"), "ipam.gateway", "'10.1.0'"),
    (host_local(subnet="10.1.0.0/24", routes=[{"dst": "default"}]), "ipam.routes[0].dst",
     "'default'"),
    (host_local(ranges=[[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.1.0.0/25"}]]),
     "ipam.ranges[1]", "'10.1.0.1-10.1.0.126'"),
    ({**host_local(subnet="10.1.0.0/24"), "dns": {"nameservers": ["dns.example"]}},
     "dns.nameservers[0]", "'dns.example'"),
    ({"Name": "lan", "name": "lan2", "type": "ptp"}, "name", None),
]
# fmt: on


@pytest.mark.parametrize(("conf", "field", "shown"), BAD_CONFS)
def test_a_bad_conf_fails_naming_the_field_and_writes_nothing(host, conf, field, shown):
    cni_conf(host, {"conf": {"name": "kept", "type": "bridge"}, "ordinal": "05"})
    before = snapshot(host.conf_dir)

    result = cni_conf(host, {"conf": conf, "ordinal": "10"})

    assert result.failed, result
    assert f'field "{field}"' in result["msg"]
    if shown is not None:
        assert f"(value: {shown})" in result["msg"]
    assert "Traceback" not in result["msg"]
    assert snapshot(host.conf_dir) == before
