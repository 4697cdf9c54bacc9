"""Reading third-party CNI plugin answers: every result shape, error JSON, garbage."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.podnet.cni.plugins.module_utils import _cni_plugin
from ansible_collections.podnet.cni.plugins.module_utils._cni_plugin import (
    SYSTEM_PLUGIN_DIRS,
    Invocation,
    PluginError,
    error_message,
    find_plugin,
    parse_result,
    search_dirs,
    supports_check,
)
from ansible_collections.podnet.cni.plugins.module_utils._errors import ConfError

RESULT_010 = {
    "cniVersion": "0.1.0",
    "ip4": {
        "ip": "10.1.0.5/24",
        "gateway": "10.1.0.1",
        "routes": [{"dst": "0.0.0.0/0"}],
    },
    "dns": {"nameservers": ["10.1.0.53"]},
}
RESULT_031 = {
    "cniVersion": "0.3.1",
    "interfaces": [
        {"name": "cni0", "mac": "aa:bb:cc:00:00:01"},
        {"name": "veth1", "mac": "aa:bb:cc:00:00:02"},
        {"name": "eth0", "mac": "aa:bb:cc:00:00:03", "sandbox": "/run/netns/p"},
    ],
    "ips": [
        {"version": "6", "interface": 2, "address": "fd00::0005/64", "gateway": "fd00::1"},
        {"version": "4", "interface": 2, "address": "10.1.0.5/24", "gateway": "10.1.0.1"},
    ],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}],
    "dns": {},
}
RESULT_100 = {
    "cniVersion": "1.0.0",
    "ips": [{"address": "10.1.0.5/24"}],
    "dns": {},
}


@pytest.mark.parametrize("answer", [RESULT_010, RESULT_031, RESULT_100])
def test_every_result_shape_gives_the_ipv4_address(answer):
    result = parse_result(json.dumps(answer, indent=4), 'network "n"')
    v4 = [ip for ip in result.ips if ip.version == 4]
    assert [ip.cidr for ip in v4] == ["10.1.0.5/24"]
    assert result.cni_version == answer["cniVersion"]


def test_old_result_keeps_gateway_routes_and_dns():
    result = parse_result(json.dumps(RESULT_010), "n")
    assert result.ips[0].gateway == "10.1.0.1"
    assert result.routes == [{"dst": "0.0.0.0/0"}]
    assert result.dns == {"nameservers": ["10.1.0.53"]}


def test_new_result_normalises_ipv6_and_keeps_interfaces():
    result = parse_result(json.dumps(RESULT_031), "n")
    v6 = next(ip for ip in result.ips if ip.version == 6)
    assert v6.cidr == "fd00::5/64" and v6.gateway == "fd00::1" and v6.interface == 2
    assert result.interfaces[2]["sandbox"] == "/run/netns/p"


def test_result_without_addresses_is_accepted():
    assert parse_result('{"cniVersion": "0.1.0"}', "n").ips == []


@pytest.mark.parametrize(
    "text, words",
    [
        ("hello, I am not JSON", "not JSON: 'hello, I am not JSON'"),
        ("[1, 2]", "not a JSON object"),
        ('{"cniVersion": "0.3.1", "ips": {"address": "x"}}', "ips is not a list"),
        ('{"cniVersion": "0.3.1", "ips": [{"address": "10.1.0.5"}]}', "bad address '10.1.0.5'"),
        ('{"ip4": {"ip": "10.1.0.300/24"}}', "bad address '10.1.0.300/24'"),
        ('{"ip4": {"ip": "10.1.0.5/24", "gateway": "nope"}}', "gateway 'nope'"),
        ('{"ips": [], "routes": [{"dst": "x"}]}', "routes[0].dst 'x'"),
    ],
)
def test_unreadable_results_name_what_is_wrong(text, words):
    with pytest.raises(PluginError) as caught:
        parse_result(text, 'network "n"')
    assert 'network "n": error parsing' in str(caught.value)
    assert words in str(caught.value)


@pytest.mark.parametrize(
    "stdout, expected",
    [
        ('{"code": 7, "msg": "bad conf", "details": "no subnet"}', "bad conf; no subnet (CNI"),
        ('{"cniVersion": "1.0.0", "code": 999, "msg": "boom"}', "boom (CNI error code 999)"),
        ("segfault", "no CNI error JSON in its output: 'segfault'"),
        ("", "no CNI error JSON in its output: 'from stderr'"),
    ],
)
def test_error_message_is_the_plugins_own(stdout, expected):
    assert expected in error_message(stdout, "from stderr")


def test_search_dirs_default_to_conf_dir_then_system_dirs():
    assert search_dirs("/etc/rkt/net.d") == ["/etc/rkt/net.d", *SYSTEM_PLUGIN_DIRS]
    assert search_dirs("/etc/rkt/net.d", ["/x"]) == ["/x"]


def test_find_plugin_takes_the_first_executable_and_names_dirs_when_missing(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "thing").write_text("not executable")
    plugin = second / "thing"
    plugin.write_text("#!/bin/sh\n")
    os.chmod(plugin, stat.S_IRWXU)
    assert find_plugin("thing", [str(first), str(second)], "n") == str(plugin)

    with pytest.raises(ConfError) as caught:
        find_plugin("other", [str(first), str(second)], 'network "n"')
    assert 'field "type"' in str(caught.value) and str(second) in str(caught.value)
    with pytest.raises(ConfError):
        find_plugin("../thing", [str(first)], "n")


def test_invocation_environment_is_rkts_contract():
    invocation = Invocation("/p", "{}", "n", "pod1", "", "eth0", "IP=1.2.3.4", ["/a", "/b"])
    assert invocation.env("DEL") == {
        "CNI_VERSION": "0.1.0",
        "CNI_COMMAND": "DEL",
        "CNI_CONTAINERID": "pod1",
        "CNI_NETNS": "",
        "CNI_ARGS": "IP=1.2.3.4",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/a:/b",
    }


@pytest.mark.parametrize(
    "version, allowed", [(None, False), ("0.3.1", False), ("0.4.0", True), ("1.0.0", True)]
)
def test_check_only_from_cni_0_4_0(version, allowed):
    assert supports_check(version) is allowed


def test_a_plugin_that_is_not_executable_is_named_as_such(tmp_path):
    (tmp_path / "lazy").write_text("#!/bin/sh\n")
    with pytest.raises(ConfError) as caught:
        _cni_plugin.find_plugin("lazy", [str(tmp_path)], 'network "n"')
    assert "is not executable" in str(caught.value)


def test_a_plugin_that_hangs_is_killed_after_the_timeout(tmp_path, monkeypatch):
    plugin = tmp_path / "slow"
    plugin.write_text("#!/bin/sh\nsleep 30\n")
    plugin.chmod(0o755)
    monkeypatch.setattr(_cni_plugin, "PLUGIN_TIMEOUT", 0.5)
    invocation = _cni_plugin.Invocation(str(plugin), "{}", "n", "pod", "", "eth0")
    with pytest.raises(_cni_plugin.PluginError) as caught:
        _cni_plugin.call(invocation, "ADD")
    assert "no answer within 0.5 s" in str(caught.value)
