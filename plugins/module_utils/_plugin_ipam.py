# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""An IPAM type podnet does not implement (Debian's `static`, say): a CNI plugin binary.

ptp and bridge delegate to it the way the reference plugins do (CNI's IPAM delegation): the
whole conf on stdin, the same environment, ADD for an address and DEL to give it back.
"""

from __future__ import annotations

from dataclasses import replace

from ansible_collections.podnet.cni.plugins.module_utils import _cni_plugin, _netns
from ansible_collections.podnet.cni.plugins.module_utils._cni_plugin import Invocation
from ansible_collections.podnet.cni.plugins.module_utils._errors import IpamError
from ansible_collections.podnet.cni.plugins.module_utils._host_local import Lease


class PluginIpam:
    """IPAM by a plugin binary; an attachment keeps its invocation so DEL needs no conf."""

    name = "cni-plugin"

    def __init__(
        self,
        network: str,
        ipam: dict,
        data_dir: str,
        conf=None,
        plugin_dirs: list[str] | tuple[str, ...] = (),
        args: str = "",
    ) -> None:
        self.network = network
        self.ipam = ipam
        self.data_dir = data_dir
        self.conf = conf
        self.plugin_dirs = list(plugin_dirs)
        self.args = args
        self.invocation: Invocation | None = None

    @classmethod
    def from_attachment(cls, attachment: dict) -> PluginIpam:
        ipam = cls(attachment["network"], {}, "")
        saved = attachment.get("ipam_plugin") or {}
        if saved:
            ipam.invocation = Invocation.from_saved(
                {
                    **saved,
                    "network": attachment["network"],
                    "ifname": attachment["ifname"],
                    "args": attachment.get("args", ""),
                },
                container_id="",
                netns="",
            )
        return ipam

    def _where(self) -> str:
        return f'network "{self.network}"'

    def validate(self) -> None:
        """Find the binary and read the conf now, so a missing one fails before any change."""
        _cni_plugin.find_plugin(self.ipam["type"], self.plugin_dirs, self._where(), "ipam.type")
        _cni_plugin.read_conf_text(self.conf, self._where())

    def predict(self, owner: str, ifname: str, requested: list[str]) -> list:
        """Nothing: check mode runs no plugin, so a third party's answer cannot be known."""
        return []

    def allocate(self, owner: str, ifname: str, requested: list[str]) -> list[Lease]:
        """ADD; the plugin's addresses as leases (CNI_ARGS carries any IP= request as given)."""
        from netaddr import IPAddress

        where = self._where()
        self.invocation = Invocation(
            plugin=_cni_plugin.find_plugin(self.ipam["type"], self.plugin_dirs, where, "ipam.type"),
            conf_text=_cni_plugin.read_conf_text(self.conf, where),
            network=self.network,
            container_id=owner,
            netns=_netns.default_path(owner),
            ifname=ifname,
            args=self.args,
            cni_path=self.plugin_dirs,
        )
        result = _cni_plugin.add(self.invocation)
        if not result.ips:
            _cni_plugin.delete(self.invocation)
            raise IpamError(f"{where}: IPAM plugin {self.invocation.plugin} gave no address")
        ips = sorted(result.ips, key=lambda ip: ip.version)
        return [
            Lease(
                address=IPAddress(ip.address),
                prefixlen=ip.prefixlen,
                gateway=IPAddress(ip.gateway) if ip.gateway else None,
                owner=owner,
                ifname=ifname,
                network=self.network,
            )
            for ip in ips
        ]

    def release(self, owner: str, ifname: str) -> None:
        """DEL; tolerant: a failure is a warning (teardown must finish)."""
        if self.invocation is None:
            return
        path = _netns.default_path(owner)
        netns = path if _netns.is_netns(path) else ""
        _cni_plugin.delete(replace(self.invocation, container_id=owner, netns=netns))

    def holds(self, owner: str, ifname: str, address: str) -> bool:
        """Assumed: only the plugin knows its leases, and CHECK needs a newer conf than most."""
        return True

    def saved(self) -> dict:
        saved = self.invocation.saved() if self.invocation else {}
        return {"ipam_type": self.name, "ipam_plugin": saved}
