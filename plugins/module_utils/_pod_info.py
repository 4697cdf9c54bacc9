# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""Reading pod records back, checked against the kernel."""

from __future__ import annotations

from ansible_collections.podnet.cni.plugins.module_utils import _netns
from ansible_collections.podnet.cni.plugins.module_utils._errors import PodnetError
from ansible_collections.podnet.cni.plugins.module_utils._links import Netlink
from ansible_collections.podnet.cni.plugins.module_utils._pod import interfaces
from ansible_collections.podnet.cni.plugins.module_utils._pod_state import PodStore


def describe_pods(state_dir: str, name: str | None = None) -> list[dict]:
    """Each recorded pod with its interfaces, and whether the kernel still has them."""
    store = PodStore(state_dir)
    described = []
    for pod in [name] if name else store.names():
        try:
            record = store.load(pod)
        except PodnetError as exc:  # one damaged record must not hide the other pods
            described.append({"name": pod, "alive": False, "interfaces": [], "error": str(exc)})
            continue
        if record is None:
            continue
        netns = record.get("netns")
        alive = record.get("mode") == "host" or (bool(netns) and _netns.is_netns(netns))
        found = interfaces(record)
        if netns and alive:
            with Netlink(netns) as pod_side:
                for interface in found:
                    interface["present"] = pod_side.index(interface["ifname"]) is not None
        else:
            for interface in found:
                interface["present"] = False
        described.append(
            {
                "name": pod,
                "mode": record.get("mode"),
                "netns": netns,
                "hostname": record.get("hostname"),
                "alive": alive,
                "interfaces": found,
            }
        )
    return described
