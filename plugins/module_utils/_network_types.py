# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""The network types podnet.cni implements itself, by the conf's `type`.

Each type module offers NAME, add(host, pod, conf, ifname, leases, undo, args="") -> dict,
remove(host, pod, attachment) and problems(host, pod, attachment) -> list[str]; one whose
plugin does its own address management sets OWN_IPAM = True and gets no leases.
"""

from __future__ import annotations

from ansible_collections.podnet.cni.plugins.module_utils import (
    _bridge,
    _flannel,
    _ipvlan,
    _macvlan,
    _plugin_type,
    _ptp,
)

TYPES = {kind.NAME: kind for kind in (_ptp, _bridge, _flannel, _macvlan, _ipvlan)}


def type_for(name: str | None):
    """The module implementing a network type; any other name is a CNI plugin binary's."""
    if not name:
        return None
    return TYPES.get(name, _plugin_type)


def owns_ipam(kind) -> bool:
    return bool(getattr(kind, "OWN_IPAM", False))
