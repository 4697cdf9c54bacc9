"""Faults a new user found: moved pods and their forwards, killed runs, shared lease dirs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from sandbox import COLLECTIONS, links, netns_exists
from test_pod_network import BRIDGE_CONF, down, host_snapshot, lease_files, up, write_conf
from test_port_forward import HTTP, OUTSIDE, UPLINK, forward, ok, through

DEBIAN_PLUGINS = "/usr/lib/cni"


def test_forwards_follow_a_pod_that_moved_to_another_address(host):
    host.add_outside()
    write_conf(host, "10-lan.conf", dict(BRIDGE_CONF, hairpinMode=True))
    pod = host.pod_name()
    up(host, pod, ["lan:IP=10.22.0.40"], add_default_restricted=False)
    ok(forward(host, pod, ["http:8090"], ports=(HTTP,)))
    assert through(pod, host.outside, UPLINK, 8090) == OUTSIDE

    moved = up(host, pod, ["lan:IP=10.22.0.41"], add_default_restricted=False)
    assert any("aim the forwards" in action for action in moved["actions"])
    assert through(pod, host.outside, UPLINK, 8090) == OUTSIDE
    again = forward(host, pod, ["http:8090"], ports=(HTTP,))
    assert again["changed"] is False and again["forwards"][0]["address"] == "10.22.0.41"


def test_absent_after_a_killed_run_leaves_nothing(host):
    """A run killed half way has recorded each attachment before making it."""
    write_conf(host, "10-lan.conf", BRIDGE_CONF)
    before = host_snapshot(host)
    names = [host.pod_name() for _pod in range(12)]
    payload = {
        "pods": [{"name": n, "networks": ["lan", "default"]} for n in names],
        **host.opts(),
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": payload}, handle)
    module = "ansible_collections.podnet.cni.plugins.modules.pod_network"
    run = subprocess.Popen(
        ["nsenter", f"--net={host.netns}", sys.executable, "-m", module, handle.name],
        env={**os.environ, "PYTHONPATH": COLLECTIONS},
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(lease_files(host)) < 8:
        time.sleep(0.005)
    run.send_signal(signal.SIGKILL)
    run.wait()
    os.unlink(handle.name)
    assert lease_files(host), "the kill should land while pods are being made"

    gone = host.module("pod_network", {"pods": [{"name": n} for n in names], "state": "absent"})
    assert not gone.failed, gone.get("msg")
    assert not any(netns_exists(n) for n in names)
    assert lease_files(host) == []
    assert host_snapshot(host) == before


def test_third_party_host_local_leases_land_in_the_modules_data_dir(host):
    shutil.copy(os.path.join(DEBIAN_PLUGINS, "bridge"), os.path.join(host.conf_dir, "cnibr"))
    write_conf(
        host,
        "10-tp.conf",
        {
            "cniVersion": "0.4.0",
            "name": "tp",
            "type": "cnibr",
            "bridge": "tpbr1",
            "isGateway": True,
            "ipam": {"type": "host-local", "subnet": "10.79.0.0/24"},
        },
    )
    pod = host.pod_name()
    up(host, pod, ["tp"], add_default_restricted=False)
    assert os.path.exists(os.path.join(host.data_dir, "tp", "10.79.0.2"))
    assert not os.path.exists("/var/lib/cni/networks/tp")
    down(host, pod)
    assert lease_files(host) == []


def test_two_pods_given_one_static_address_on_ptp_fail_clearly(host):
    static = {
        "name": "fixed",
        "type": "ptp",
        "ipam": {
            "type": "static",
            "addresses": [{"address": "10.77.0.5/24", "gateway": "10.77.0.1"}],
        },
    }
    write_conf(host, "10-fixed.conf", static)
    first, second = host.pod_name(), host.pod_name()
    up(host, first, ["fixed"], add_default_restricted=False)
    failed = host.module(
        "pod_network", {"name": second, "networks": ["fixed"], "add_default_restricted": False}
    )
    assert failed.failed and "10.77.0.5" in failed["msg"] and "another pod" in failed["msg"]
    assert not netns_exists(second)
    route = [
        r
        for r in host.run(["ip", "-j", "route"]).stdout
        and json.loads(host.run(["ip", "-j", "route"]).stdout)
        if r["dst"] == "10.77.0.5"
    ]
    assert len(route) == 1 and route[0]["dev"] in links(host.name)


def test_a_forward_dict_with_an_unknown_key_is_refused(host):
    pod = host.pod_name()
    up(host, pod, ["default"])
    result = forward(host, pod, [{"name": "http", "host_port": 8081, "HOST_IPADDR": "1.2.3.4"}])
    assert result.failed and "HOST_IPADDR" in result["msg"]
    cased = ok(forward(host, pod, [{"Name": "http", "hostPort": 8081, "HOST_IP": UPLINK}]))
    assert cased["forwards"][0]["host_ip"] == UPLINK


def test_lease_gc_without_a_network_leaves_other_runtimes_networks_alone(host):
    foreign = os.path.join(host.data_dir, "podman-net")
    os.makedirs(foreign)
    with open(os.path.join(foreign, "10.88.0.7"), "w") as handle:
        handle.write("9f86d081884c7d65\r\neth0")
    pod = host.pod_name()
    up(host, pod, ["default"])
    result = host.module(
        "ipam_lease",
        {
            "gc": True,
            "conf_dir": host.conf_dir,
            "data_dir": host.data_dir,
            "state_dir": host.state_dir,
        },
        with_dirs=False,
    )
    assert not result.failed, result.get("msg")
    assert os.path.exists(os.path.join(foreign, "10.88.0.7"))
