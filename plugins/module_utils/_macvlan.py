# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""The macvlan network type: the pod on the LAN of a host interface (the master), no host hop.

Modes: bridge (default: pods on one master reach each other inside the kernel), private
(they do not), vepa (through the external switch), passthru (one pod takes the master). The
CNI plugin ignores ipMasq; podnet follows rkt's docs and masquerades the pod's address when
it is set, which only matters for traffic the pod routes through this host.
"""

from __future__ import annotations

from ansible_collections.podnet.cni.plugins.module_utils import _lan_types
from ansible_collections.podnet.cni.plugins.module_utils._attachment import HostSide, PodSide, Undo

NAME = "macvlan"
KIND = _lan_types.MACVLAN


def check(host: HostSide, conf) -> None:
    """Fail before any change: master missing, MTU above the master's, a rival kind, no kernel."""
    _lan_types.check(KIND, host, conf)


def add(
    host: HostSide, pod: PodSide, conf, ifname: str, leases: list, undo: Undo, args: str = ""
) -> dict:
    return _lan_types.add(KIND, host, pod, conf, ifname, leases, undo)


def remove(host: HostSide, pod: PodSide, attachment: dict) -> None:
    _lan_types.remove(host, pod, attachment)


def problems(host: HostSide, pod: PodSide, attachment: dict) -> list[str]:
    return _lan_types.problems(KIND, host, pod, attachment)
