# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""Links, addresses, routes and sysctls of one network namespace, through pyroute2.

A `Netlink` is bound to one namespace for its whole life: the socket is opened while the
calling thread sits inside that namespace (see _netns.entered) and stays bound to it after
the thread returns, so the host side and every pod side are driven from one process.
"""

from __future__ import annotations

import contextlib
import errno
import os

from ansible_collections.podnet.cni.plugins.module_utils import _netns
from ansible_collections.podnet.cni.plugins.module_utils._addr import norm_mac
from ansible_collections.podnet.cni.plugins.module_utils._errors import NetlinkError

try:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError as _PyrouteError
except ImportError:  # reported by the module through missing_required_lib
    IPRoute = None
    _PyrouteError = OSError

RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_HOST = 254
RT_TABLE_MAIN = 254
IFA_F_NOPREFIXROUTE = 0x200
IFA_F_NODAD = 0x02
AF_INET = 2
AF_INET6 = 10


class LinkError(NetlinkError):
    """A link request the kernel refused, with its errno for callers that explain it."""

    def __init__(self, code: int | None, text: str) -> None:
        self.code = code
        super().__init__(os.strerror(code) if isinstance(code, int) and code > 0 else text)


def _explain(what: str, exc: Exception) -> NetlinkError:
    code = getattr(exc, "code", None)
    reason = os.strerror(code) if isinstance(code, int) and code > 0 else str(exc)
    return NetlinkError(f"{what}: {reason}")


class Netlink:
    """Netlink operations in one namespace (the caller's own when netns is None)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        if netns is None:
            self._ipr = IPRoute()
        else:
            with _netns.entered(netns):
                self._ipr = IPRoute()

    def close(self) -> None:
        self._ipr.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # links

    def index(self, ifname: str) -> int | None:
        found = self._ipr.link_lookup(ifname=ifname)
        return found[0] if found else None

    def link(self, ifname: str) -> dict | None:
        """A flat view of a link: ifname, index, kind, mtu, mac, up, master, peer index."""
        index = self.index(ifname)
        if index is None:
            return None
        msg = self._ipr.get_links(index)[0]
        info = msg.get("IFLA_LINKINFO")
        return {
            "ifname": msg.get("IFLA_IFNAME"),
            "index": index,
            "kind": info.get("IFLA_INFO_KIND") if info else None,
            "mtu": msg.get("IFLA_MTU"),
            "mac": norm_mac(msg.get("IFLA_ADDRESS") or ""),
            "up": bool(msg["flags"] & 1),
            "master": msg.get("IFLA_MASTER"),
            "peer": msg.get("IFLA_LINK"),
        }

    def links(self) -> list[str]:
        return [msg.get("IFLA_IFNAME") for msg in self._ipr.get_links()]

    def set_up(self, ifname: str) -> None:
        try:
            self._ipr.link("set", index=self._need(ifname), state="up")
        except _PyrouteError as exc:
            raise _explain(f'cannot set "{ifname}" up', exc) from exc

    def add_veth(self, host_ifname: str, pod_ifname: str, pod_netns: str, mtu: int | None) -> None:
        """Create a veth pair here whose peer lands in the pod namespace under pod_ifname."""
        fd = os.open(pod_netns, os.O_RDONLY)
        try:
            extra = {"mtu": mtu} if mtu else {}
            peer = {"ifname": pod_ifname, "net_ns_fd": fd, **extra}
            self._ipr.link("add", ifname=host_ifname, kind="veth", peer=peer, **extra)
        except _PyrouteError as exc:
            raise _explain(
                f'cannot create veth "{host_ifname}" with pod interface "{pod_ifname}"', exc
            ) from exc
        finally:
            os.close(fd)

    def create(self, **spec) -> None:
        """Add a link from a raw spec (macvlan, ipvlan, ...); failures keep the kernel's errno."""
        try:
            self._ipr.link("add", **spec)
        except _PyrouteError as exc:
            raise LinkError(getattr(exc, "code", None), str(exc)) from exc

    def rename(self, ifname: str, new_name: str) -> None:
        try:
            self._ipr.link("set", index=self._need(ifname), ifname=new_name)
        except _PyrouteError as exc:
            raise LinkError(getattr(exc, "code", None), str(exc)) from exc

    def add_bridge(self, ifname: str, mtu: int | None) -> None:
        extra = {"mtu": mtu} if mtu else {}
        try:
            self._ipr.link("add", ifname=ifname, kind="bridge", **extra)
        except _PyrouteError as exc:
            raise _explain(f'cannot create bridge "{ifname}"', exc) from exc

    def set_master(self, ifname: str, master: str) -> None:
        try:
            self._ipr.link("set", index=self._need(ifname), master=self._need(master))
        except _PyrouteError as exc:
            raise _explain(f'cannot attach "{ifname}" to bridge "{master}"', exc) from exc

    def set_hairpin(self, ifname: str, enabled: bool) -> None:
        try:
            self._ipr.brport("set", index=self._need(ifname), mode=int(enabled))
        except _PyrouteError as exc:
            raise _explain(f'cannot set hairpin mode on "{ifname}"', exc) from exc

    def ports(self, bridge: str) -> list[str]:
        index = self.index(bridge)
        if index is None:
            return []
        links = self._ipr.get_links()
        return [m.get("IFLA_IFNAME") for m in links if m.get("IFLA_MASTER") == index]

    def delete(self, ifname: str) -> bool:
        """Delete a link; a missing one is success. True if one was deleted."""
        index = self.index(ifname)
        if index is None:
            return False
        try:
            self._ipr.link("del", index=index)
        except _PyrouteError as exc:
            if exc.code == errno.ENODEV:
                return False
            raise _explain(f'cannot delete link "{ifname}"', exc) from exc
        return True

    # addresses

    def addresses(self, ifname: str, family: int | None = None) -> list[str]:
        index = self.index(ifname)
        if index is None:
            return []
        found = []
        for msg in self._ipr.get_addr(index=index):
            if family is None or msg["family"] == family:
                found.append(f"{msg.get('IFA_ADDRESS')}/{msg['prefixlen']}")
        return found

    def add_address(
        self, ifname: str, address: str, prefixlen: int, prefix_route: bool = True
    ) -> bool:
        """Add address/prefixlen; True if added, False if it was already there.

        prefix_route=False keeps the kernel from adding the connected subnet route.
        """
        flags = 0 if prefix_route else IFA_F_NOPREFIXROUTE
        if ":" in address:
            flags |= IFA_F_NODAD  # usable at once: the address is ours by lease, not by chance
        extra = {"flags": flags} if flags else {}
        try:
            self._ipr.addr(
                "add",
                index=self._need(ifname),
                address=address,
                prefixlen=prefixlen,
                **extra,
            )
        except _PyrouteError as exc:
            if exc.code == errno.EEXIST:
                return False
            raise _explain(f'cannot add address {address}/{prefixlen} to "{ifname}"', exc) from exc
        return True

    def del_address(self, ifname: str, address: str, prefixlen: int) -> None:
        with contextlib.suppress(_PyrouteError):
            self._ipr.addr("del", index=self._need(ifname), address=address, prefixlen=prefixlen)

    # routes

    def routes(self, ifname: str | None = None, family: int = 2) -> list[dict]:
        """Main-table routes as dicts: dst (cidr text, 'default' for /0), gateway, oif, scope."""
        query = {"table": RT_TABLE_MAIN, "family": family}
        if ifname is not None:
            index = self.index(ifname)
            if index is None:
                return []
            query["oif"] = index
        found = []
        for msg in self._ipr.get_routes(**query):
            dst = msg.get("RTA_DST")
            found.append(
                {
                    "dst": f"{dst}/{msg['dst_len']}" if dst else "default",
                    "gateway": msg.get("RTA_GATEWAY"),
                    "oif": msg.get("RTA_OIF"),
                    "scope": msg["scope"],
                    "src": msg.get("RTA_PREFSRC"),
                }
            )
        return found

    def add_route(
        self,
        dst: str,
        ifname: str,
        gateway: str | None = None,
        scope: int = RT_SCOPE_UNIVERSE,
        src: str | None = None,
    ) -> bool:
        """Add a route; True if added, False if an identical one existed."""
        spec = {"dst": dst, "oif": self._need(ifname), "scope": scope}
        if gateway:
            spec["gateway"] = gateway
        if src:
            spec["prefsrc"] = src
        try:
            self._ipr.route("add", **spec)
        except _PyrouteError as exc:
            if exc.code == errno.EEXIST:
                return False
            via = f" via {gateway}" if gateway else ""
            raise _explain(f'cannot add route {dst}{via} dev "{ifname}"', exc) from exc
        return True

    def del_route(self, dst: str, ifname: str) -> None:
        index = self.index(ifname)
        if index is None:
            return
        with contextlib.suppress(_PyrouteError):
            self._ipr.route("del", dst=dst, oif=index)

    def _need(self, ifname: str) -> int:
        index = self.index(ifname)
        if index is None:
            raise NetlinkError(f'interface "{ifname}" does not exist')
        return index


def read_sysctl(key: str) -> str | None:
    """Read a sysctl of the calling thread's namespace; None when the key does not exist."""
    try:
        with open(_sysctl_path(key)) as handle:
            return handle.read().strip()
    except FileNotFoundError:
        return None


def write_sysctl(key: str, value: str) -> None:
    try:
        with open(_sysctl_path(key), "w") as handle:
            handle.write(value)
    except OSError as exc:
        raise NetlinkError(f"cannot set sysctl {key}={value}: {exc.strerror}") from exc


def _sysctl_path(key: str) -> str:
    # Slash form ("net/ipv4/conf/eth0.5/forwarding") keeps dots in interface names intact.
    return "/proc/sys/" + (key if "/" in key else key.replace(".", "/"))
