# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""The flannel network type: a bridge (or ptp) network on the subnet flanneld leased this host.

flanneld writes its lease to a subnet file (FLANNEL_NETWORK, FLANNEL_SUBNET, FLANNEL_MTU,
FLANNEL_IPMASQ). flannel turns that into a delegate conf, host-local on the host's subnet with
a route to the whole flannel network, saves it under dataDir and lets the delegate type attach
the pod. The subnet file is read while planning, so a missing file or key changes nothing.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from dataclasses import dataclass

from ansible_collections.podnet.cni.plugins.module_utils._attachment import (
    HostSide,
    PodSide,
    Undo,
)
from ansible_collections.podnet.cni.plugins.module_utils._conf import NetConf
from ansible_collections.podnet.cni.plugins.module_utils._errors import ConfError
from ansible_collections.podnet.cni.plugins.module_utils._ipam import HostLocal
from ansible_collections.podnet.cni.plugins.module_utils._state_files import write_text

NAME = "flannel"
DEFAULT_SUBNET_FILE = "/run/flannel/subnet.env"
DEFAULT_DATA_DIR = "/var/lib/cni/flannel"
REQUIRED_KEYS = ("FLANNEL_NETWORK", "FLANNEL_SUBNET", "FLANNEL_MTU", "FLANNEL_IPMASQ")
# Subnet-form keys of the input ipam that the flannel subnet replaces.
_REPLACED_IPAM_KEYS = ("subnet", "rangeStart", "rangeEnd", "gateway", "ranges")


@dataclass(frozen=True)
class SubnetEnv:
    """flanneld's lease for this host, normalised (subnet host bits cleared)."""

    networks: tuple[str, ...]
    subnet: str
    mtu: int
    ip_masq: bool

    def as_dict(self) -> dict:
        return {
            "networks": list(self.networks),
            "subnet": self.subnet,
            "mtu": self.mtu,
            "ip_masq": self.ip_masq,
        }


def parse_subnet_env(text: str, path: str, where: str) -> SubnetEnv:
    """Parse KEY=VALUE lines as flanneld writes them; every missing key is named at once."""
    from netaddr import AddrFormatError, IPNetwork

    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        values[key.strip()] = value.strip().strip('"')

    missing = [key for key in REQUIRED_KEYS if not values.get(key)]
    if missing:
        raise ConfError(
            where,
            "subnetFile",
            None,
            f"{path} is missing {', '.join(missing)} (is flanneld running on this host?)",
        )

    def cidr(key: str, text: str) -> str:
        try:
            network = IPNetwork(text)
        except (AddrFormatError, ValueError):
            raise ConfError(where, "subnetFile", path, f"{key}={text} is not a CIDR") from None
        if network.version != 4 or "/" not in text:
            raise ConfError(where, "subnetFile", path, f"{key}={text} is not an IPv4 CIDR")
        return str(network.cidr)

    networks: list[str] = []
    for text in values["FLANNEL_NETWORK"].split(","):
        network = cidr("FLANNEL_NETWORK", text.strip())
        if network not in networks:
            networks.append(network)
    subnet = cidr("FLANNEL_SUBNET", values["FLANNEL_SUBNET"])

    mtu_text = values["FLANNEL_MTU"]
    if not mtu_text.isdigit() or not 68 <= int(mtu_text) <= 65535:
        raise ConfError(
            where, "subnetFile", path, f"FLANNEL_MTU={mtu_text} is not an MTU from 68 to 65535"
        )
    return SubnetEnv(
        networks=tuple(networks),
        subnet=subnet,
        mtu=int(mtu_text),
        ip_masq=values["FLANNEL_IPMASQ"] == "true",
    )


def read_subnet_env(conf: NetConf) -> SubnetEnv:
    where = f'network "{conf.name}"'
    path = conf.conf.get("subnetFile") or DEFAULT_SUBNET_FILE
    try:
        with open(path) as handle:
            text = handle.read()
    except OSError as exc:
        reason = f"cannot read the flannel subnet file: {exc.strerror}"
        raise ConfError(where, "subnetFile", path, reason) from None
    return parse_subnet_env(text, path, where)


def delegate_conf(conf: NetConf, env: SubnetEnv) -> dict:
    """The conf the delegate type runs with: the user's delegate with flannel's lease filled in."""
    from ansible_collections.podnet.cni.plugins.module_utils._network_types import (
        owns_ipam,
        type_for,
    )

    where = f'network "{conf.name}"'
    delegate = copy.deepcopy(conf.conf.get("delegate") or {})
    delegate.setdefault("type", "bridge")
    kind = type_for(delegate["type"])
    if kind is None or kind.NAME == NAME or owns_ipam(kind):
        raise ConfError(
            where,
            "delegate.type",
            delegate["type"],
            "flannel can delegate to a built-in type with host-local addresses (bridge, ptp)",
        )

    delegate["name"] = conf.name
    delegate.setdefault("ipMasq", not env.ip_masq)
    delegate.setdefault("mtu", env.mtu)
    if delegate["type"] == "bridge":
        delegate.setdefault("isGateway", True)
    for key in ("cniVersion", "runtimeConfig"):
        if key in conf.conf:
            delegate[key] = copy.deepcopy(conf.conf[key])

    ipam = {k: v for k, v in conf.ipam.items() if k not in _REPLACED_IPAM_KEYS}
    ipam.setdefault("type", "host-local")
    if ipam["type"] != "host-local":
        raise ConfError(where, "ipam.type", ipam["type"], "flannel only works with host-local")
    ipam["subnet"] = env.subnet
    ipam["routes"] = list(ipam.get("routes", [])) + [{"dst": net} for net in env.networks]
    delegate["ipam"] = ipam
    return delegate


class FlannelHostLocal(HostLocal):
    """host-local on flannel's subnet; an address kept from an older subnet is not asked for.

    When flanneld moves the host to a new subnet the attachment is remade, and the old
    address (which the orchestrator asks to keep) can no longer be had.
    """

    def predict(self, owner: str, ifname: str, requested: list[str]) -> list:
        return super().predict(owner, ifname, self._in_subnet(requested))

    def allocate(self, owner: str, ifname: str, requested: list[str]) -> list:
        return super().allocate(owner, ifname, self._in_subnet(requested))

    def _in_subnet(self, requested: list[str]) -> list[str]:
        from netaddr import IPAddress, IPNetwork

        subnet = IPNetwork(self.ipam["subnet"])
        return [address for address in requested or [] if IPAddress(address) in subnet]


def ipam_for(conf: NetConf, data_dir: str) -> FlannelHostLocal:
    """The IPAM a flannel network allocates from; reading the subnet file here fails early."""
    where = f'network "{conf.name}"'
    scratch_dir = conf.conf.get("dataDir", DEFAULT_DATA_DIR)
    if not isinstance(scratch_dir, str) or not scratch_dir:
        raise ConfError(where, "dataDir", scratch_dir, "must be a path")
    delegate = delegate_conf(conf, read_subnet_env(conf))
    ipam = FlannelHostLocal(conf.name, delegate["ipam"], data_dir)
    ipam.validate()
    return ipam


def scratch_path(conf: NetConf, pod: str) -> str:
    return os.path.join(conf.conf.get("dataDir") or DEFAULT_DATA_DIR, pod)


def add(
    host: HostSide, pod: PodSide, conf: NetConf, ifname: str, leases: list, undo: Undo, args=""
) -> dict:
    """Save the delegate conf, then let the delegate attach the pod with flannel's lease."""
    from ansible_collections.podnet.cni.plugins.module_utils._network_types import type_for

    env = read_subnet_env(conf)
    delegate = delegate_conf(conf, env)
    kind = type_for(delegate["type"])

    # Saved before the delegate runs, and taken away again if it fails (bugs.md C16).
    path = scratch_path(conf, pod.name)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    write_text(path, json.dumps(delegate, sort_keys=True) + "\n", mode=0o600)
    undo.push(_remove_scratch, path)

    delegate_net = NetConf(conf.name, delegate["type"], delegate, None, conf.sort_key)
    record = kind.add(host, pod, delegate_net, ifname, leases, undo, args=args)
    record.update(
        {
            "delegate_type": delegate["type"],
            "delegate": delegate,
            "scratch_file": path,
            "flannel": env.as_dict(),
            "subnet_file": conf.conf.get("subnetFile") or DEFAULT_SUBNET_FILE,
        }
    )
    return record


def _remove_scratch(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _delegate_kind(attachment: dict):
    from ansible_collections.podnet.cni.plugins.module_utils._network_types import type_for

    return type_for(attachment.get("delegate_type"))


def remove(host: HostSide, pod: PodSide, attachment: dict) -> None:
    """Delegate teardown from the record; the saved conf (maybe empty, C16) is never needed."""
    kind = _delegate_kind(attachment)
    if kind is not None:
        kind.remove(host, pod, attachment)
    if attachment.get("scratch_file"):
        _remove_scratch(attachment["scratch_file"])


def problems(host: HostSide, pod: PodSide, attachment: dict) -> list[str]:
    """The delegate's drift, a lost saved conf, and flanneld having moved the host's lease."""
    kind = _delegate_kind(attachment)
    if kind is None:
        return [f"unknown delegate type {attachment.get('delegate_type')}"]
    found = kind.problems(host, pod, attachment)

    path = attachment.get("scratch_file")
    if path and not os.path.isfile(path):
        found.append(f"saved delegate conf {path} is missing")

    subnet_file = attachment.get("subnet_file")
    if subnet_file:
        probe = NetConf(attachment["network"], NAME, {"subnetFile": subnet_file}, None, "")
        current = read_subnet_env(probe).as_dict()
        if current != attachment.get("flannel"):
            found.append(f"flannel's lease in {subnet_file} changed: {current}")
    return found
