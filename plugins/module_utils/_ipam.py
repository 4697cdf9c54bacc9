# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""IPAM types behind one interface: validate, predict, allocate, release, check a lease.

The pod orchestration asks `ipam_for(conf)` and never needs to know which IPAM a network
uses; a saved attachment names its IPAM so teardown finds it again without the conf.
"""

from __future__ import annotations

from ansible_collections.podnet.cni.plugins.module_utils._conf import host_local_ranges
from ansible_collections.podnet.cni.plugins.module_utils._host_local import LeaseStore
from ansible_collections.podnet.cni.plugins.module_utils._plugin_ipam import PluginIpam


class HostLocal:
    """host-local: leases as files in <data_dir>/<network>/ (the CNI layout)."""

    name = "host-local"

    def __init__(self, network: str, ipam: dict, data_dir: str) -> None:
        self.network = network
        self.ipam = ipam
        self.data_dir = ipam.get("dataDir") or data_dir
        self.store = LeaseStore(self.data_dir, network)

    def ranges(self) -> list:
        return host_local_ranges(self.ipam, f'network "{self.network}"')

    def validate(self) -> None:
        self.ranges()

    def predict(self, owner: str, ifname: str, requested: list[str]) -> list:
        return self.store.predict(self.ranges(), owner, ifname, requested or None)

    def allocate(self, owner: str, ifname: str, requested: list[str]) -> list:
        return self.store.allocate(self.ranges(), owner, ifname, requested or None)

    def release(self, owner: str, ifname: str) -> None:
        self.store.release(owner, ifname)

    def holds(self, owner: str, ifname: str, address: str) -> bool:
        return address in self.store.find(owner, ifname)

    def saved(self) -> dict:
        """What an attachment keeps so teardown can find the leases without the conf."""
        return {"ipam_type": self.name, "data_dir": self.data_dir}


IPAM_TYPES = {HostLocal.name: HostLocal}


def ipam_for(network: str, ipam: dict, data_dir: str, conf=None, plugin_dirs=(), args=""):
    """The IPAM of a conf, or None when the conf has no ipam.type (an L2-only network).

    A type not built in is a CNI plugin binary, run with the conf and the attachment's args.
    """
    kind = ipam.get("type")
    if not kind:
        return None
    if kind not in IPAM_TYPES:
        return PluginIpam(network, ipam, data_dir, conf, plugin_dirs, args)
    return IPAM_TYPES[kind](network, ipam, data_dir)


def ipam_of_attachment(attachment: dict):
    """The IPAM that served a saved attachment, rebuilt from what the attachment kept."""
    kind = attachment.get("ipam_type") or ("host-local" if attachment.get("data_dir") else None)
    if kind == PluginIpam.name:
        return PluginIpam.from_attachment(attachment)
    if kind not in IPAM_TYPES:
        return None
    return IPAM_TYPES[kind](attachment["network"], {}, attachment["data_dir"])
