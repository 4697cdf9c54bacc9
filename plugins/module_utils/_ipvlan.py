# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""The ipvlan network type: the pod on the LAN of a host interface (the master), no host hop.

Modes: l2 (default), l3, l3s. ipvlan links share the master's MAC. Many kernels ship without
ipvlan (this project's CI kernel among them): that is found out before any change and
reported as such. ipMasq is honoured as for macvlan (rkt's docs).
"""

from __future__ import annotations

from ansible_collections.podnet.cni.plugins.module_utils import _lan_types
from ansible_collections.podnet.cni.plugins.module_utils._attachment import HostSide, PodSide, Undo

NAME = "ipvlan"
KIND = _lan_types.IPVLAN


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
