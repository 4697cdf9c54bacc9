"""A LAN for macvlan/ipvlan tests: a veth master in the sandbox host, the LAN on its far end.

The kernel here has no dummy links, so the master is a veth whose peer sits in a "LAN"
namespace holding 192.0.2.1/24 (TEST-NET-1, only ever inside these namespaces).
"""

from __future__ import annotations

import json
import os
import sys

from sandbox import COLLECTIONS, ip_json, links, netns_exists, ns_run, sh, unique

MASTER = "lan0"
LAN_ADDRESS = "192.0.2.1"
HOST_ADDRESS = "192.0.2.254"


class Lan:
    """The LAN namespace and the master link in the sandbox host."""

    def __init__(self, host, mtu: int = 1500) -> None:
        self.host = host
        self.name = unique("l")
        sh(["ip", "netns", "add", self.name])
        ns_run(self.name, ["ip", "link", "set", "lo", "up"])
        host.run(
            ["ip", "link", "add", MASTER, "mtu", str(mtu), "type", "veth"]
            + ["peer", "name", "lanpeer", "mtu", str(mtu), "netns", self.name]
        )
        host.run(["ip", "link", "set", MASTER, "up"])
        ns_run(self.name, ["ip", "addr", "add", f"{LAN_ADDRESS}/24", "dev", "lanpeer"])
        ns_run(self.name, ["ip", "link", "set", "lanpeer", "up"])

    def destroy(self) -> None:
        if netns_exists(self.name):
            sh(["ip", "netns", "del", self.name], check=False)


def lan_conf(kind: str, name: str = "lan", **extra) -> dict:
    ipam = {
        "type": "host-local",
        "subnet": "192.0.2.0/24",
        "rangeStart": "192.0.2.10",
        "rangeEnd": "192.0.2.50",
        "routes": [{"dst": "0.0.0.0/0"}],
    }
    return {"name": name, "type": kind, "master": MASTER, "ipam": ipam, **extra}


def link_details(ns: str, ifname: str) -> dict:
    """`ip -d link` of one link: kind and mode live under linkinfo."""
    (found,) = ip_json(ns, "-d", "link", "show", "dev", ifname)
    return found


def pod_links(ns: str) -> list[str]:
    return sorted(links(ns)) if netns_exists(ns) else []


def detected_unsupported(host, kind: str) -> str | None:
    """podnet's own run-time answer, asked inside the sandbox host: why `kind` cannot be made."""
    code = (
        "import json\n"
        "from ansible_collections.podnet.cni.plugins.module_utils import _lan_types\n"
        "from ansible_collections.podnet.cni.plugins.module_utils._links import Netlink\n"
        f"kind = _lan_types.{kind.upper()}\n"
        "print(json.dumps(_lan_types.unsupported_reason(kind, Netlink())))\n"
    )
    env = {**os.environ, "PYTHONPATH": COLLECTIONS}
    result = host.run([sys.executable, "-c", code], env=env)
    return json.loads(result.stdout)
