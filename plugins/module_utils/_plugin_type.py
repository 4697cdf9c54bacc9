# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""A network type podnet does not implement: the conf's `type` names a CNI plugin binary.

The plugin does everything (interface, addresses, its own IPAM through CNI_PATH); podnet
runs it the way rkt did and records its answer. The attachment keeps the plugin's path and
the conf's text, so teardown runs the same DEL even when the conf has changed or gone.
"""

from __future__ import annotations

from ansible_collections.podnet.cni.plugins.module_utils import _cni_plugin
from ansible_collections.podnet.cni.plugins.module_utils._attachment import (
    HostSide,
    PodSide,
    Undo,
)
from ansible_collections.podnet.cni.plugins.module_utils._cni_plugin import Invocation

NAME = "cni-plugin"
OWN_IPAM = True


def check(host: HostSide, conf) -> None:
    """Fail before any change when the plugin cannot be found or the conf cannot be read."""
    where = f'network "{conf.name}"'
    _cni_plugin.find_plugin(conf.type, host.plugin_dirs, where)
    _cni_plugin.read_conf_text(conf, where)


def add(
    host: HostSide, pod: PodSide, conf, ifname: str, leases: list, undo: Undo, args: str = ""
) -> dict:
    """ADD through the plugin; its DEL is the undo (and runs at once if the ADD fails)."""
    where = f'network "{conf.name}"'
    invocation = Invocation(
        plugin=_cni_plugin.find_plugin(conf.type, host.plugin_dirs, where),
        conf_text=_cni_plugin.read_conf_text(conf, where, host.data_dir),
        network=conf.name,
        container_id=pod.name,
        netns=pod.netns,
        ifname=ifname,
        args=args,
        cni_path=list(host.plugin_dirs),
    )
    result = _cni_plugin.add(invocation)
    undo.push(_cni_plugin.delete, invocation)

    # An answer without addresses is fine (tuning, an L2-only plugin): rkt accepted it too.
    ips = sorted(result.ips, key=lambda ip: ip.version)
    first = ips[0] if ips else None
    link = pod.netlink.link(ifname) if pod.netlink is not None else None
    record = {
        **invocation.saved(),
        "cni_version": str(conf.conf.get("cniVersion") or "0.1.0"),
        "result": result.raw,
        "address": first.cidr if first else None,
        "addresses": [ip.cidr for ip in ips],
        "gateway": first.gateway if first else None,
        "mac": _pod_mac(result, ifname) or (link["mac"] if link else None),
        "routes": result.routes,
        "host_ifname": _host_ifname(result),
    }
    if any(result.dns.get(key) for key in ("nameservers", "domain", "search", "options")):
        record["dns"] = result.dns
    return record


def _pod_mac(result, ifname: str) -> str | None:
    for interface in result.interfaces:
        if interface.get("sandbox") and interface.get("name") == ifname:
            return interface.get("mac")
    return None


def _host_ifname(result) -> str | None:
    """The host end of the pod's link: listed last among the host-side interfaces by the
    reference plugins (a bridge comes before its port)."""
    host_side = [i.get("name") for i in result.interfaces if not i.get("sandbox")]
    return host_side[-1] if host_side else None


def remove(host: HostSide, pod: PodSide, attachment: dict) -> None:
    """DEL with what ADD had; a namespace already gone is passed as "" (CNI's rule)."""
    netns = pod.netns if pod.netlink is not None else ""
    _cni_plugin.delete(Invocation.from_saved(attachment, pod.name, netns))


def problems(host: HostSide, pod: PodSide, attachment: dict) -> list[str]:
    """The pod's interface and addresses; plus the plugin's own CHECK when its conf allows."""
    if pod.netlink is None:
        return [f'namespace "{pod.netns}" is gone']
    ifname = attachment["ifname"]
    if pod.netlink.link(ifname) is None:
        return [f'interface "{ifname}" is missing in the pod']
    present = pod.netlink.addresses(ifname)
    found = [
        f'address {address} is missing on "{ifname}"'
        for address in attachment.get("addresses", [])
        if address not in present
    ]
    if not found and _cni_plugin.supports_check(attachment.get("cni_version")):
        invocation = Invocation.from_saved(attachment, pod.name, pod.netns)
        failure = _cni_plugin.check(invocation, attachment.get("result") or {})
        if failure:
            found.append(failure)
    return found
