"""Third-party CNI plugins on the real kernel: Debian's containernetworking-plugins as the
third party, plus tiny script plugins that fail or print garbage."""

from __future__ import annotations

import json
import os
import shutil
import stat

import pytest
from sandbox import addresses, links, netns_exists, ping, sh

DEBIAN_PLUGINS = "/usr/lib/cni"
pytestmark = pytest.mark.skipif(
    not os.path.exists(os.path.join(DEBIAN_PLUGINS, "bridge")),
    reason="needs Debian's containernetworking-plugins in /usr/lib/cni",
)


def write_conf(host, filename: str, conf: dict) -> None:
    with open(os.path.join(host.conf_dir, filename), "w") as handle:
        json.dump(conf, handle)


def write_plugin(host, name: str, body: str) -> str:
    path = os.path.join(host.conf_dir, name)
    with open(path, "w") as handle:
        handle.write("#!/bin/sh\n" + body)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return path


def pod_network(host, pod: str, networks, check: bool = False, **extra) -> dict:
    args = {"name": pod, "networks": networks, "add_default_restricted": False, **extra}
    return host.module("pod_network", args, check=check)


def down(host, pod: str) -> dict:
    result = host.module("pod_network", {"name": pod, "state": "absent"})
    assert not result.failed, result.get("msg")
    return result


def lease_files(host) -> list[str]:
    found = []
    for root, _dirs, files in os.walk(host.data_dir):
        found += [os.path.join(root, f) for f in files if f[0].isdigit()]
    return found


def pod_state_files(host) -> list[str]:
    pods_dir = os.path.join(host.state_dir, "pods")
    return os.listdir(pods_dir) if os.path.isdir(pods_dir) else []


def bridge_conf(host, name: str = "tp", kind: str = "cnibridge") -> dict:
    return {
        "cniVersion": "0.4.0",
        "name": name,
        "type": kind,
        "bridge": "tpbr0",
        "isGateway": True,
        "ipam": {"type": "host-local", "subnet": "10.78.0.0/24", "dataDir": host.data_dir},
    }


def test_debian_bridge_as_third_party_gives_pods_addresses_that_reach_each_other(host):
    shutil.copy(os.path.join(DEBIAN_PLUGINS, "bridge"), os.path.join(host.conf_dir, "cnibridge"))
    write_conf(host, "10-tp.conf", bridge_conf(host))
    before = set(links(host.name))
    first, second = host.pod_name(), host.pod_name()

    predicted = pod_network(host, first, ["tp"], check=True)
    assert not predicted.failed, predicted.get("msg")
    assert predicted["changed"] and not netns_exists(first)
    assert set(links(host.name)) == before and not lease_files(host)

    one = pod_network(host, first, ["tp"])
    two = pod_network(host, second, ["tp"])
    assert not one.failed and not two.failed, (one.get("msg"), two.get("msg"))
    address_one = one["interfaces"][0]["address"]
    address_two = two["interfaces"][0]["address"]
    assert address_one.startswith("10.78.0.") and address_two.startswith("10.78.0.")
    assert addresses(first, "eth0") == [address_one]
    assert addresses(second, "eth0") == [address_two]
    assert links(first)["eth0"]["address"] == one["interfaces"][0]["mac"]
    assert "tpbr0" in links(host.name)
    assert ping(first, address_two.split("/")[0]) and ping(second, address_one.split("/")[0])
    assert len(lease_files(host)) == 2

    again = pod_network(host, first, ["tp"])  # cniVersion 0.4.0: the plugin's CHECK decides
    assert not again.failed and not again["changed"], again

    host.run(["ip", "netns", "exec", first, "ip", "addr", "flush", "dev", "eth0"])
    repaired = pod_network(host, first, ["tp"])
    assert not repaired.failed and repaired["changed"], repaired
    assert addresses(first, "eth0") == [repaired["interfaces"][0]["address"]]
    assert len(lease_files(host)) == 2  # the old lease went with the DEL before the new ADD

    down(host, first)
    down(host, second)
    # The bridge stays, as CNI's bridge plugin never deletes it; every pod's veth goes.
    assert set(links(host.name)) == before | {"tpbr0"}
    assert not lease_files(host)
    assert not netns_exists(first) and not netns_exists(second)
    assert not pod_state_files(host)


def test_ptp_with_debian_static_ipam_gets_the_static_address(host):
    write_conf(
        host,
        "10-st.conf",
        {
            "cniVersion": "0.3.1",
            "name": "st",
            "type": "ptp",
            "ipam": {
                "type": "static",
                "addresses": [{"address": "10.77.0.5/24", "gateway": "10.77.0.1"}],
            },
        },
    )
    before = set(links(host.name))
    pod = host.pod_name()

    predicted = pod_network(host, pod, ["st"], check=True)
    assert not predicted.failed and predicted["changed"] and not netns_exists(pod)

    result = pod_network(host, pod, ["st"])
    assert not result.failed, result.get("msg")
    assert result["interfaces"][0]["address"] == "10.77.0.5/24"
    assert addresses(pod, "eth0") == ["10.77.0.5/24"]
    assert ping(pod, "10.77.0.1")

    again = pod_network(host, pod, ["st"])
    assert not again.failed and not again["changed"], again

    down(host, pod)
    assert set(links(host.name)) == before and not netns_exists(pod)


CALLS_LOG = 'echo "$CNI_COMMAND netns=[$CNI_NETNS] id=$CNI_CONTAINERID" >> "{log}"\n'


def test_failing_plugin_gives_its_message_and_leaves_nothing(host):
    log = os.path.join(host.root, "calls.log")
    write_plugin(
        host,
        "failer",
        CALLS_LOG.format(log=log)
        + 'if [ "$CNI_COMMAND" = ADD ]; then\n'
        + '  printf \'{"code": 999, "msg": "no lemons today", "details": "try Tuesday"}\'\n'
        + "  exit 1\nfi\n",
    )
    write_conf(host, "10-bad.conf", {"cniVersion": "0.4.0", "name": "bad", "type": "failer"})
    before = set(links(host.name))
    pod = host.pod_name()

    result = pod_network(host, pod, ["bad"])
    assert result.failed
    assert "no lemons today; try Tuesday" in result["msg"] and "failer" in result["msg"]
    with open(log) as handle:
        calls = [line.split()[0] for line in handle]
    assert calls == ["ADD", "DEL"]  # the half-made ADD is cleaned up by its own DEL
    assert not netns_exists(pod) and set(links(host.name)) == before
    assert not pod_state_files(host)


def test_plugin_printing_garbage_is_a_clear_error_and_leaves_nothing(host):
    log = os.path.join(host.root, "calls.log")
    write_plugin(host, "babbler", CALLS_LOG.format(log=log) + "echo 'hello, I am not JSON'\n")
    write_conf(host, "10-babble.conf", {"cniVersion": "0.3.1", "name": "babble", "type": "babbler"})
    pod = host.pod_name()

    result = pod_network(host, pod, ["babble"])
    assert result.failed
    assert "error parsing the plugin's result" in result["msg"]
    assert "hello, I am not JSON" in result["msg"]
    with open(log) as handle:
        assert [line.split()[0] for line in handle] == ["ADD", "DEL"]
    assert not netns_exists(pod) and not pod_state_files(host)


@pytest.mark.parametrize("field", ["type", "ipam.type"])
def test_plugin_not_found_fails_before_any_change(host, field):
    conf = {"cniVersion": "0.3.1", "name": "ghost", "type": "ptp", "ipam": {}}
    if field == "type":
        conf["type"] = "nosuchplugin"
    else:
        conf["ipam"] = {"type": "nosuchplugin"}
    write_conf(host, "10-ghost.conf", conf)
    pod = host.pod_name()

    result = pod_network(host, pod, ["ghost"])
    assert result.failed
    assert f'field "{field}"' in result["msg"] and "nosuchplugin" in result["msg"]
    assert host.conf_dir in result["msg"] and "/usr/lib/cni" in result["msg"]
    assert not result["actions"] and not result.get("changed")
    assert not netns_exists(pod) and not pod_state_files(host)


def test_plugin_dirs_option_replaces_the_search_path(host):
    plugin_dir = os.path.join(host.root, "plugins")
    os.makedirs(plugin_dir)
    shutil.copy(os.path.join(DEBIAN_PLUGINS, "bridge"), os.path.join(plugin_dir, "cnibridge"))
    write_conf(host, "10-tp.conf", bridge_conf(host))
    pod = host.pod_name()

    missing = pod_network(host, pod, ["tp"])  # not in the conf dir nor the system dirs
    assert missing.failed and "cnibridge" in missing["msg"]

    # host-local must be found through CNI_PATH, which is the same list.
    found = pod_network(host, pod, ["tp"], plugin_dirs=[plugin_dir, DEBIAN_PLUGINS])
    assert not found.failed, found.get("msg")
    assert addresses(pod, "eth0") == [found["interfaces"][0]["address"]]
    down(host, pod)
    assert not lease_files(host)


def test_teardown_after_the_namespace_vanished_still_runs_del_and_releases_the_lease(host):
    log = os.path.join(host.root, "calls.log")
    write_plugin(host, "cnibridge", CALLS_LOG.format(log=log) + f"exec {DEBIAN_PLUGINS}/bridge\n")
    write_conf(host, "10-tp.conf", bridge_conf(host))
    pod = host.pod_name()
    result = pod_network(host, pod, ["tp"])
    assert not result.failed, result.get("msg")
    assert len(lease_files(host)) == 1

    sh(["ip", "netns", "del", pod])
    assert not netns_exists(pod)
    down(host, pod)

    with open(log) as handle:
        calls = handle.read().splitlines()
    assert calls[0] == f"ADD netns=[/run/netns/{pod}] id={pod}"
    assert calls[-1] == f"DEL netns=[] id={pod}"
    assert not lease_files(host) and not pod_state_files(host)
    assert set(links(host.name)) == {"lo", "tpbr0"}
