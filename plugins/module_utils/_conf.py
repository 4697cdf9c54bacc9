# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""Network confs of a net.d directory: key-case normalisation, validation, loading, writing."""

from __future__ import annotations

import copy
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

try:
    from netaddr import IPAddress, IPNetwork
except ImportError:  # the module reports it through missing_required_lib
    IPAddress = IPNetwork = None

from ansible_collections.podnet.cni.plugins.module_utils._addr import parse_cidr, parse_ip
from ansible_collections.podnet.cni.plugins.module_utils._errors import ConfError, PodnetError

if TYPE_CHECKING:
    from ansible.module_utils.basic import AnsibleModule

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
RESERVED_NAMES = ("host", "none", "all")
CONF_SUFFIX = ".conf"
DEFAULT_CONF_DIR = "/etc/rkt/net.d"

# Canonical spellings per JSON object kind. Go's encoding/json (which rkt and the reference
# plugins use) matches keys case-insensitively, so "IpMasq" in a file means ipMasq.
_PLUGIN_KEYS = (
    "cniVersion",
    "name",
    "type",
    "ipMasq",
    "mtu",
    "ipam",
    "dns",
    "bridge",
    "isGateway",
    "isDefaultGateway",
    "hairpinMode",
    "forceAddress",
    "promiscMode",
    "vlan",
    "macspoofchk",
    "enabledad",
    "master",
    "mode",
    "mac",
    "subnetFile",
    "dataDir",
    "delegate",
    "sysctl",
    "capabilities",
    "args",
    "runtimeConfig",
    "prevResult",
)
_IPAM_KEYS = (
    "type",
    "subnet",
    "rangeStart",
    "rangeEnd",
    "gateway",
    "routes",
    "ranges",
    "dataDir",
    "resolvConf",
)
_RANGE_KEYS = ("subnet", "rangeStart", "rangeEnd", "gateway")
_ROUTE_KEYS = ("dst", "gw")
_DNS_KEYS = ("nameservers", "domain", "search", "options")

_BOOL_FIELDS = (
    "ipMasq",
    "isGateway",
    "isDefaultGateway",
    "hairpinMode",
    "forceAddress",
    "promiscMode",
    "macspoofchk",
    "enabledad",
)
_MACVLAN_MODES = ("bridge", "private", "vepa", "passthru")
_IPVLAN_MODES = ("l2", "l3", "l3s")
BUILT_IN_TYPES = ("ptp", "bridge", "macvlan", "ipvlan", "flannel", "tuning")
_IFNAME_MAX = 15

BUILT_IN_CONFS: tuple[tuple[str, dict], ...] = (
    (
        "99-default.conf",
        {
            "cniVersion": "0.1.0",
            "name": "default",
            "type": "ptp",
            "ipMasq": True,
            "ipam": {
                "type": "host-local",
                "subnet": "172.16.28.0/24",
                "routes": [{"dst": "0.0.0.0/0"}],
            },
        },
    ),
    (
        "99-default-restricted.conf",
        {
            "cniVersion": "0.1.0",
            "name": "default-restricted",
            "type": "ptp",
            "ipMasq": False,
            "ipam": {"type": "host-local", "subnet": "172.31.0.0/16"},
        },
    ),
)


@dataclass
class NetConf:
    """One network conf: a file of a net.d dir, or a built-in (path None)."""

    name: str
    type: str
    conf: dict
    path: str | None
    sort_key: str

    @property
    def ipam(self) -> dict:
        return self.conf.get("ipam") or {}

    @property
    def ip_masq(self) -> bool:
        return bool(self.conf.get("ipMasq", False))

    @property
    def mtu(self) -> int | None:
        mtu = self.conf.get("mtu")
        return mtu if _is_int(mtu) else None

    @property
    def dns(self) -> dict:
        return self.conf.get("dns") or {}


@dataclass(frozen=True)
class Range:
    """One host-local range with its defaults filled in (end inclusive)."""

    subnet: IPNetwork
    start: IPAddress
    end: IPAddress
    gateway: IPAddress

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"

    def overlaps(self, other: Range) -> bool:
        if self.start.version != other.start.version:
            return False
        return self.start <= other.end and other.start <= self.end


# --- key-case normalisation ------------------------------------------------------------------


def _canonical_keys(obj: dict, canonical: tuple[str, ...], where: str, path: str) -> dict:
    """Copy obj with known keys in their canonical spelling; unknown keys pass unchanged."""
    by_fold = {key.lower(): key for key in canonical}
    out: dict = {}
    spelled: dict[str, str] = {}
    for key, value in obj.items():
        target = by_fold.get(key.lower(), key) if isinstance(key, str) else key
        if target in out:
            raise ConfError(
                where,
                _join(path, target),
                None,
                f'is given twice, as "{spelled[target]}" and "{key}"',
            )
        spelled[target] = key
        out[target] = value
    return out


def normalise_keys(conf: dict, where: str) -> dict:
    """Return a deep copy of a plugin conf with every known key in its canonical case."""
    return _normalise_plugin(copy.deepcopy(conf), where, "")


def _normalise_plugin(conf: dict, where: str, path: str) -> dict:
    conf = _canonical_keys(conf, _PLUGIN_KEYS, where, path)
    if isinstance(conf.get("ipam"), dict):
        conf["ipam"] = _normalise_ipam(conf["ipam"], where, _join(path, "ipam"))
    if isinstance(conf.get("dns"), dict):
        conf["dns"] = _canonical_keys(conf["dns"], _DNS_KEYS, where, _join(path, "dns"))
    if isinstance(conf.get("delegate"), dict):
        conf["delegate"] = _normalise_plugin(conf["delegate"], where, _join(path, "delegate"))
    return conf


def _normalise_ipam(ipam: dict, where: str, path: str) -> dict:
    ipam = _canonical_keys(ipam, _IPAM_KEYS, where, path)
    for i, route in enumerate(_list(ipam.get("routes"))):
        if isinstance(route, dict):
            ipam["routes"][i] = _canonical_keys(route, _ROUTE_KEYS, where, f"{path}.routes[{i}]")
    for i, range_set in enumerate(_list(ipam.get("ranges"))):
        for j, entry in enumerate(_list(range_set)):
            if isinstance(entry, dict):
                here = f"{path}.ranges[{i}][{j}]"
                range_set[j] = _canonical_keys(entry, _RANGE_KEYS, where, here)
    return ipam


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- validation ------------------------------------------------------------------------------


def validate(conf: dict, where: str) -> dict:
    """Check a conf the way the plugins would (and stricter where they misbehave); normalise it."""
    if not isinstance(conf, dict):
        raise ConfError(where, None, conf, "a network conf must be a JSON object")
    conf = normalise_keys(conf, where)

    name = conf.get("name")
    if name is None:
        raise ConfError(where, "name", None, "is required: every network conf needs a name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfError(
            where,
            "name",
            name,
            "must be a string of letters, digits, '_', '.', '-' starting with a letter or digit",
        )
    if name in RESERVED_NAMES:
        raise ConfError(
            where,
            "name",
            name,
            "is reserved: host, none and all are modes of --net, not networks",
        )
    kind = conf.get("type")
    if kind is None:
        raise ConfError(where, "type", None, "is required: it names the plugin to run")
    if not isinstance(kind, str) or not kind:
        raise ConfError(where, "type", kind, "must be a non-empty string (the plugin name)")
    if "cniVersion" in conf and not isinstance(conf["cniVersion"], str):
        raise ConfError(where, "cniVersion", conf["cniVersion"], "must be a string like 0.3.1")
    if kind not in BUILT_IN_TYPES:
        return conf

    _check_plugin(conf, kind, where, "")
    return conf


def _check_plugin(conf: dict, kind: str, where: str, path: str) -> None:
    for key in _BOOL_FIELDS:
        if key in conf and not isinstance(conf[key], bool):
            raise ConfError(where, _join(path, key), conf[key], "must be true or false")
    if "mtu" in conf:
        mtu = conf["mtu"]
        if not _is_int(mtu) or not 68 <= mtu <= 65535:
            raise ConfError(where, _join(path, "mtu"), mtu, "must be an integer from 68 to 65535")
    if "dns" in conf:
        _check_dns(conf["dns"], where, _join(path, "dns"))
    if "ipam" in conf and not isinstance(conf["ipam"], dict):
        raise ConfError(where, _join(path, "ipam"), conf["ipam"], "must be an object")

    checks: dict[str, Callable[[dict, str, str], None]] = {
        "ptp": _check_ptp,
        "bridge": _check_bridge,
        "macvlan": _check_macvlan,
        "ipvlan": _check_ipvlan,
        "flannel": _check_flannel,
        "tuning": _check_tuning,
    }
    checks[kind](conf, where, path)
    if "ipam" in conf:
        _check_ipam(conf["ipam"], where, _join(path, "ipam"))


def _check_ptp(conf: dict, where: str, path: str) -> None:
    ipam = conf.get("ipam")
    if not isinstance(ipam, dict) or "type" not in ipam:
        raise ConfError(
            where,
            _join(path, "ipam.type"),
            None,
            "is required: a ptp network has no L2 mode, it needs an IPAM plugin",
        )


def _check_bridge(conf: dict, where: str, path: str) -> None:
    if "bridge" in conf:
        _check_ifname(conf["bridge"], where, _join(path, "bridge"))
    if "vlan" in conf and (not _is_int(conf["vlan"]) or not 0 <= conf["vlan"] <= 4094):
        raise ConfError(where, _join(path, "vlan"), conf["vlan"], "must be an integer 0..4094")
    if conf.get("isDefaultGateway") is True and conf.get("isGateway") is False:
        raise ConfError(
            where,
            _join(path, "isGateway"),
            False,
            "contradicts isDefaultGateway: true, which implies isGateway: true",
        )
    if conf.get("hairpinMode") is True and conf.get("promiscMode") is True:
        raise ConfError(
            where,
            _join(path, "promiscMode"),
            True,
            "cannot be set together with hairpinMode: choose one",
        )


def _check_macvlan(conf: dict, where: str, path: str) -> None:
    _check_master_and_mode(conf, where, path, "macvlan", _MACVLAN_MODES)


def _check_ipvlan(conf: dict, where: str, path: str) -> None:
    _check_master_and_mode(conf, where, path, "ipvlan", _IPVLAN_MODES)


def _check_master_and_mode(
    conf: dict, where: str, path: str, kind: str, modes: tuple[str, ...]
) -> None:
    if "master" not in conf:
        raise ConfError(
            where,
            _join(path, "master"),
            None,
            f"is required: a {kind} network needs the host interface to attach to",
        )
    _check_ifname(conf["master"], where, _join(path, "master"))
    if "mode" in conf and conf["mode"] not in modes:
        raise ConfError(
            where,
            _join(path, "mode"),
            conf["mode"],
            f"is not {'an' if kind[0] in 'aeiou' else 'a'} {kind} mode (one of {', '.join(modes)})",
        )


def _check_flannel(conf: dict, where: str, path: str) -> None:
    if "subnetFile" in conf and not isinstance(conf["subnetFile"], str):
        raise ConfError(where, _join(path, "subnetFile"), conf["subnetFile"], "must be a path")
    delegate = conf.get("delegate")
    if delegate is None:
        return
    if not isinstance(delegate, dict):
        raise ConfError(where, _join(path, "delegate"), delegate, "must be an object")
    for key in ("name", "ipam"):
        if key in delegate:
            raise ConfError(
                where,
                _join(path, f"delegate.{key}"),
                delegate[key],
                "must not be set: flannel fills it in from the conf and its subnet file",
            )
    kind = delegate.get("type", "bridge")
    if not isinstance(kind, str) or not kind:
        raise ConfError(where, _join(path, "delegate.type"), kind, "must be a plugin name")
    if kind in ("bridge", "ptp", "macvlan", "ipvlan"):
        for key in _BOOL_FIELDS:
            if key in delegate and not isinstance(delegate[key], bool):
                raise ConfError(
                    where, _join(path, f"delegate.{key}"), delegate[key], "must be true or false"
                )
        if kind == "bridge":
            _check_bridge(delegate, where, _join(path, "delegate"))


def _check_tuning(conf: dict, where: str, path: str) -> None:
    sysctl = conf.get("sysctl", {})
    if not isinstance(sysctl, dict):
        raise ConfError(where, _join(path, "sysctl"), sysctl, "must be an object of key: value")
    for key, value in sysctl.items():
        if not str(key).startswith("net."):
            raise ConfError(
                where,
                _join(path, f"sysctl.{key}"),
                value,
                "only net.* sysctls can be set inside a pod",
            )
        if not isinstance(value, str):
            raise ConfError(where, _join(path, f"sysctl.{key}"), value, "must be a string")


def _check_ifname(value: object, where: str, fieldpath: str) -> None:
    if not isinstance(value, str) or not value:
        raise ConfError(where, fieldpath, value, "must be an interface name")
    if len(value) > _IFNAME_MAX:
        raise ConfError(
            where,
            fieldpath,
            value,
            f"is longer than {_IFNAME_MAX} characters, the kernel's limit for interface names",
        )
    if value in (".", "..") or any(ch in value for ch in "/:") or any(ch.isspace() for ch in value):
        raise ConfError(
            where,
            fieldpath,
            value,
            "is not a valid interface name (no '/', ':', spaces, '.' or '..')",
        )


def _check_dns(dns: object, where: str, path: str) -> None:
    if not isinstance(dns, dict):
        raise ConfError(where, path, dns, "must be an object")
    for i, server in enumerate(_string_list(dns, "nameservers", where, path)):
        try:
            parse_ip(server)
        except ValueError:
            raise ConfError(
                where, f"{path}.nameservers[{i}]", server, "is not an IP address"
            ) from None
    _string_list(dns, "search", where, path)
    _string_list(dns, "options", where, path)
    if "domain" in dns and not isinstance(dns["domain"], str):
        raise ConfError(where, f"{path}.domain", dns["domain"], "must be a string")


def _string_list(obj: dict, key: str, where: str, path: str) -> list[str]:
    value = obj.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfError(where, f"{path}.{key}", value, "must be a list of strings")
    return value


def _check_ipam(ipam: dict, where: str, path: str) -> None:
    kind = ipam.get("type")
    if "type" in ipam and (not isinstance(kind, str) or not kind):
        raise ConfError(where, f"{path}.type", kind, "must be a non-empty string")
    if kind != "host-local":
        return
    for key in ("dataDir", "resolvConf"):
        if key in ipam and not isinstance(ipam[key], str):
            raise ConfError(where, f"{path}.{key}", ipam[key], "must be a path")
    _ranges(ipam, where, path)
    _check_routes(ipam.get("routes", []), where, f"{path}.routes")


def _check_routes(routes: object, where: str, path: str) -> None:
    if not isinstance(routes, list):
        raise ConfError(where, path, routes, "must be a list of {dst, gw} objects")
    for i, route in enumerate(routes):
        here = f"{path}[{i}]"
        if not isinstance(route, dict):
            raise ConfError(where, here, route, "must be an object with dst and optional gw")
        if "dst" not in route:
            raise ConfError(where, f"{here}.dst", None, "is required (a CIDR like 0.0.0.0/0)")
        dst = _network(route["dst"], where, f"{here}.dst")
        if "gw" in route:
            gw = _address(route["gw"], where, f"{here}.gw")
            if gw.version != dst.version:
                raise ConfError(
                    where,
                    f"{here}.gw",
                    route["gw"],
                    f"is IPv{gw.version} but dst {dst} is IPv{dst.version}",
                )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _address(value: object, where: str, fieldpath: str) -> IPAddress:
    if not isinstance(value, str):
        raise ConfError(where, fieldpath, value, "must be an IP address string")
    try:
        return parse_ip(value)
    except ValueError:
        raise ConfError(where, fieldpath, value, "is not an IP address") from None


def _network(value: object, where: str, fieldpath: str) -> IPNetwork:
    """Parse a CIDR that names a network: host bits set is an error, as in host-local."""
    if not isinstance(value, str):
        raise ConfError(where, fieldpath, value, "must be a CIDR string like 10.1.0.0/24")
    try:
        net = parse_cidr(value)
    except ValueError:
        raise ConfError(where, fieldpath, value, "is not a CIDR like 10.1.0.0/24") from None
    if net.ip != net.network:
        raise ConfError(
            where,
            fieldpath,
            value,
            f"has host bits set: for a /{net.prefixlen} the network address is {net.network}",
        )
    return net.cidr


# --- host-local ranges -----------------------------------------------------------------------


def host_local_ranges(ipam: dict, where: str) -> list[list[Range]]:
    """Range sets of a host-local ipam with defaults filled in; the legacy subnet form first."""
    ipam = _normalise_ipam(copy.deepcopy(ipam), where, "ipam")
    return _ranges(ipam, where, "ipam")


def _ranges(ipam: dict, where: str, path: str) -> list[list[Range]]:
    sets: list[tuple[str, list[Range]]] = []
    if "subnet" in ipam:
        sets.append((f"{path}.subnet", [_range(ipam, where, path)]))
    elif any(key in ipam for key in _RANGE_KEYS):
        raise ConfError(
            where,
            f"{path}.subnet",
            None,
            "is required when rangeStart, rangeEnd or gateway is set",
        )

    ranges = ipam.get("ranges", [])
    if not isinstance(ranges, list):
        raise ConfError(where, f"{path}.ranges", ranges, "must be a list of range sets")
    for i, range_set in enumerate(ranges):
        here = f"{path}.ranges[{i}]"
        if not isinstance(range_set, list) or not range_set:
            raise ConfError(
                where, here, range_set, "must be a non-empty list of {subnet, ...} objects"
            )
        members = []
        for j, entry in enumerate(range_set):
            if not isinstance(entry, dict):
                raise ConfError(where, f"{here}[{j}]", entry, "must be an object with a subnet")
            members.append(_range(entry, where, f"{here}[{j}]"))
        _check_range_set(members, where, here)
        sets.append((here, members))

    if not sets:
        raise ConfError(
            where,
            f"{path}.subnet",
            None,
            "is required: host-local needs ipam.subnet or ipam.ranges",
        )
    for i, (here, members) in enumerate(sets):
        for earlier_path, earlier in sets[:i]:
            for one in members:
                for other in earlier:
                    if one.overlaps(other):
                        raise ConfError(
                            where,
                            here,
                            str(one),
                            f"overlaps range {other} of {earlier_path}",
                        )
    return [members for _set_path, members in sets]


def _check_range_set(members: list[Range], where: str, here: str) -> None:
    versions = {member.subnet.version for member in members}
    if len(versions) > 1:
        raise ConfError(
            where,
            here,
            [str(m.subnet) for m in members],
            "mixes IPv4 and IPv6 subnets: one range set is one address family",
        )
    for i, one in enumerate(members):
        for other in members[:i]:
            if one.overlaps(other):
                raise ConfError(where, f"{here}[{i}]", str(one), f"overlaps range {other}")


def _link_local_gateway(entry: dict, subnet, where: str, path: str) -> IPAddress | None:
    """An IPv6 gateway may be link-local (rkt's own example uses fe80::1) outside the subnet."""
    if "gateway" not in entry or subnet.version != 6:
        return None
    address = _address(entry["gateway"], where, f"{path}.gateway")
    if address.version == 6 and address.is_link_local():
        return address
    return None


def _range(entry: dict, where: str, path: str) -> Range:
    if "subnet" not in entry:
        raise ConfError(where, f"{path}.subnet", None, "is required (a CIDR like 10.1.0.0/24)")
    subnet = _network(entry["subnet"], where, f"{path}.subnet")
    if subnet.prefixlen > (30 if subnet.version == 4 else 126):
        raise ConfError(
            where,
            f"{path}.subnet",
            entry["subnet"],
            f"network {subnet} is too small to allocate from",
        )
    v4 = subnet.version == 4
    first_host = IPAddress(subnet.first + 1, subnet.version)
    last_host = IPAddress(subnet.last - 1 if v4 else subnet.last, subnet.version)

    def explicit(key: str) -> IPAddress | None:
        if key not in entry:
            return None
        fieldpath = f"{path}.{key}"
        address = _address(entry[key], where, fieldpath)
        if address not in subnet:
            raise ConfError(where, fieldpath, entry[key], f"{address} is not in subnet {subnet}")
        if address == subnet.network:
            raise ConfError(
                where, fieldpath, entry[key], f"{address} is the network address of {subnet}"
            )
        if v4 and address == subnet.broadcast:
            raise ConfError(
                where, fieldpath, entry[key], f"{address} is the broadcast address of {subnet}"
            )
        return address

    start = explicit("rangeStart")
    end = explicit("rangeEnd")
    gateway = _link_local_gateway(entry, subnet, where, path) or explicit("gateway")
    last = end if end is not None else last_host
    if start is not None and start > last:
        which = "rangeEnd" if end is not None else "the default rangeEnd"
        raise ConfError(
            where, f"{path}.rangeStart", entry["rangeStart"], f"{start} is after {which} {last}"
        )
    result = Range(
        subnet=subnet,
        start=start if start is not None else first_host,
        end=last,
        gateway=gateway if gateway is not None else first_host,
    )
    if result.start == result.end == result.gateway:
        raise ConfError(
            where,
            f"{path}.rangeStart",
            str(result.start),
            "the range holds only the gateway: no address is left for pods",
        )
    return result


# --- comparing -------------------------------------------------------------------------------


def comparable(conf: dict) -> dict:
    """A copy of a normalised conf with address text canonical, for equality checks."""
    out = copy.deepcopy(conf)
    ipam = out.get("ipam")
    if isinstance(ipam, dict):
        _canonical_addresses(ipam, _RANGE_KEYS)
        for route in _list(ipam.get("routes")):
            _canonical_addresses(route, _ROUTE_KEYS)
        for range_set in _list(ipam.get("ranges")):
            for entry in _list(range_set):
                _canonical_addresses(entry, _RANGE_KEYS)
    dns = out.get("dns")
    if isinstance(dns, dict) and isinstance(dns.get("nameservers"), list):
        dns["nameservers"] = [_canonical_text(server) for server in dns["nameservers"]]
    return out


def _canonical_addresses(obj: object, keys: tuple[str, ...]) -> None:
    if not isinstance(obj, dict):
        return
    for key in keys:
        if key in obj:
            obj[key] = _canonical_text(obj[key])


def _canonical_text(value: object) -> object:
    if not isinstance(value, str):
        return value
    try:
        return str(parse_cidr(value)) if "/" in value else str(parse_ip(value))
    except ValueError:
        return value


# --- loading ---------------------------------------------------------------------------------


def built_ins() -> list[NetConf]:
    """The networks every host has without a file: default and default-restricted."""
    return [
        NetConf(
            name=conf["name"],
            type=conf["type"],
            conf=copy.deepcopy(conf),
            path=None,
            sort_key=base,
        )
        for base, conf in BUILT_IN_CONFS
    ]


def conf_files(conf_dir: str) -> list[str]:
    """Paths of the *.conf files of a dir, byte-wise by name; a missing dir has none."""
    try:
        entries = list(os.scandir(conf_dir))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfError(f'conf dir "{conf_dir}"', None, None, f"cannot be read: {exc}") from None
    names = [
        entry.name for entry in entries if entry.name.endswith(CONF_SUFFIX) and not entry.is_dir()
    ]
    names.sort(key=os.fsencode)
    return [os.path.join(conf_dir, name) for name in names]


def read_conf_file(path: str) -> dict:
    """Parse one conf file as JSON; a key given twice or bad JSON is a ConfError on the file."""
    where = f'conf "{path}"'
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfError(where, None, None, f"cannot be read: {exc}") from None
    return parse_conf_text(text, where)


def parse_conf_text(text: str, where: str) -> dict:
    """Parse conf JSON text; only a JSON object is a conf."""

    def no_repeats(pairs: list[tuple[str, object]]) -> dict:
        seen: dict = {}
        for key, value in pairs:
            if key in seen:
                raise ConfError(where, key, None, "is given twice")
            seen[key] = value
        return seen

    try:
        conf = json.loads(text, object_pairs_hook=no_repeats)
    except json.JSONDecodeError as exc:
        raise ConfError(
            where,
            None,
            None,
            f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from None
    if not isinstance(conf, dict):
        raise ConfError(where, None, None, "is not a JSON object")
    return conf


def load_file(path: str) -> NetConf:
    """Read and validate one conf file."""
    conf = validate(read_conf_file(path), f'conf "{path}"')
    return NetConf(
        name=conf["name"],
        type=conf["type"],
        conf=conf,
        path=path,
        sort_key=os.path.basename(path),
    )


def load_dir(conf_dir: str) -> tuple[list[NetConf], list[str]]:
    """Every conf of a net.d dir in file-name order; a later file reusing a name is ignored."""
    confs: list[NetConf] = []
    warnings: list[str] = []
    first: dict[str, NetConf] = {}
    for path in conf_files(conf_dir):
        netconf = load_file(path)
        if netconf.name in first:
            warnings.append(
                f'network "{netconf.name}" is already defined in "{first[netconf.name].path}",'
                f' ignoring "{path}"'
            )
            continue
        first[netconf.name] = netconf
        confs.append(netconf)
    return confs, warnings


def available(conf_dir: str) -> tuple[dict[str, NetConf], list[str]]:
    """The networks a pod can join: the built-ins, each replaced by a user conf of its name."""
    networks = {netconf.name: netconf for netconf in built_ins()}
    confs, warnings = load_dir(conf_dir)
    for netconf in confs:
        networks[netconf.name] = netconf
    return networks, warnings


def render(conf: dict) -> str:
    """The file text of a conf: stable JSON, keys in the given order, trailing newline."""
    return json.dumps(conf, indent=2, ensure_ascii=False) + "\n"


# --- managing one conf file (the cni_conf module) --------------------------------------------


@dataclass
class FileChange:
    """One change to a file of the conf dir: what, where, and the text before and after."""

    action: str  # create | update | chmod | remove
    path: str
    before: str
    after: str
    mode: int | None = None

    def describe(self) -> str:
        if self.action == "chmod":
            return f"chmod {self.mode:04o} {self.path}"
        return f"{self.action} {self.path}"


@dataclass
class ConfFilePlan:
    """What cni_conf would do: the target file, the normalised conf, the changes."""

    path: str | None
    conf: dict | None
    changes: list[FileChange] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def parse_mode(mode: object) -> int:
    """A file mode from an octal string ('0644') or an int (YAML's 0644 is already 420)."""
    if isinstance(mode, int) and not isinstance(mode, bool):
        value = mode
    elif isinstance(mode, str) and re.fullmatch(r"0?[0-7]{3,4}", mode.strip()):
        value = int(mode.strip(), 8)
    else:
        raise PodnetError(f"mode: {mode!r} is not an octal file mode like '0644'")
    if not 0 <= value <= 0o7777:
        raise PodnetError(f"mode: {mode!r} is not an octal file mode like '0644'")
    return value


def conf_file_path(
    conf_dir: str, name: str, ordinal: object = None, path: str | None = None
) -> str:
    """Where a conf lives: an explicit path, <ordinal>-<name>.conf, or <name>.conf."""
    if path:
        return path
    if ordinal is None or ordinal == "":
        return os.path.join(conf_dir, f"{name}{CONF_SUFFIX}")
    if isinstance(ordinal, bool) or not isinstance(ordinal, (int, str)):
        raise PodnetError(f"ordinal: {ordinal!r} must be a string or an integer")
    text = str(ordinal)
    if not NAME_RE.match(text):
        raise PodnetError(
            f"ordinal: {text!r} must be letters, digits, '_', '.', '-' (a file name prefix)"
        )
    return os.path.join(conf_dir, f"{text}-{name}{CONF_SUFFIX}")


def _name_of(conf: object) -> str | None:
    """The network name of a conf not yet validated (any key case), if it is a usable name."""
    if not isinstance(conf, dict):
        return None
    for key, value in conf.items():
        if isinstance(key, str) and key.lower() == "name":
            return value if isinstance(value, str) and NAME_RE.match(value) else None
    return None


def _scan_names(conf_dir: str) -> tuple[dict[str, list[str]], list[str]]:
    """Network name -> files defining it, tolerating files that do not parse (warned about)."""
    names: dict[str, list[str]] = {}
    warnings: list[str] = []
    for path in conf_files(conf_dir):
        try:
            conf = normalise_keys(read_conf_file(path), f'conf "{path}"')
        except ConfError as exc:
            warnings.append(f"skipping unreadable conf: {exc}")
            continue
        if isinstance(conf.get("name"), str):
            names.setdefault(conf["name"], []).append(path)
    return names, warnings


def _current(path: str) -> tuple[str | None, dict | None, int | None]:
    """Current rendered text, normalised conf (None if unparsable) and mode of a file."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return None, None, None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfError(f'conf "{path}"', None, None, f"cannot be read: {exc}") from None
    try:
        parsed = parse_conf_text(text, f'conf "{path}"')
        return render(parsed), normalise_keys(parsed, f'conf "{path}"'), mode
    except ConfError:
        return text, None, mode


def plan_conf_file(
    conf_dir: str,
    state: str,
    conf: dict | None = None,
    name: str | None = None,
    ordinal: object = None,
    path: str | None = None,
    mode: object = "0644",
) -> ConfFilePlan:
    """Compare the wanted conf file with the dir and list the changes; touches nothing."""
    if state == "present":
        return _plan_present(conf_dir, conf, name, ordinal, path, parse_mode(mode))
    return _plan_absent(conf_dir, conf, name, ordinal, path)


def _plan_present(
    conf_dir: str,
    conf: dict | None,
    name: str | None,
    ordinal: object,
    path: str | None,
    mode: int,
) -> ConfFilePlan:
    if conf is None:
        raise PodnetError("conf: is required with state=present")
    guess = _name_of(conf)
    where = (
        f'conf "{conf_file_path(conf_dir, guess, ordinal, path)}"'
        if guess is not None or path
        else f'conf for "{conf_dir}"'
    )
    wanted = validate(conf, where)
    target = conf_file_path(conf_dir, wanted["name"], ordinal, path)
    if name is not None and name != wanted["name"]:
        raise ConfError(where, "name", wanted["name"], f'differs from the name option "{name}"')

    names, warnings = _scan_names(conf_dir)
    others = [
        other
        for other in names.get(wanted["name"], [])
        if os.path.abspath(other) != os.path.abspath(target)
    ]
    if others:
        raise ConfError(
            where,
            "name",
            wanted["name"],
            f'network "{wanted["name"]}" is already defined in "{others[0]}"; remove that file'
            " or use its path",
        )

    plan = ConfFilePlan(path=target, conf=wanted, warnings=warnings)
    before, current, current_mode = _current(target)
    after = render(wanted)
    if before is None:
        plan.changes.append(FileChange("create", target, "", after, mode))
    elif current is None or comparable(current) != comparable(wanted):
        plan.changes.append(FileChange("update", target, before, after, mode))
    elif current_mode != mode:
        plan.changes.append(FileChange("chmod", target, before, before, mode))
    return plan


def _plan_absent(
    conf_dir: str, conf: dict | None, name: str | None, ordinal: object, path: str | None
) -> ConfFilePlan:
    if name is None:
        name = _name_of(conf)
    warnings: list[str] = []
    if path:
        targets = [path]
    elif name is None:
        raise PodnetError("state=absent needs path, name, or a conf with a name")
    elif ordinal not in (None, ""):
        targets = [conf_file_path(conf_dir, name, ordinal)]
    else:
        names, warnings = _scan_names(conf_dir)
        targets = names.get(name, [])

    changes = [change for change in map(_removal, targets) if change is not None]
    first = changes[0].path if changes else (targets[0] if targets else None)
    return ConfFilePlan(path=first, conf=None, changes=changes, warnings=warnings)


def _removal(path: str) -> FileChange | None:
    before, _conf, _mode = _current(path)
    return None if before is None else FileChange("remove", path, before, "")


def apply_conf_file(plan: ConfFilePlan, atomic_move: Callable[[str, str], None]) -> None:
    """Carry out a plan: atomic writes (temp file in the same dir, then atomic_move)."""
    for change in plan.changes:
        try:
            if change.action == "remove":
                _remove(change.path)
            elif change.action == "chmod":
                os.chmod(change.path, change.mode)
            else:
                _write_atomically(change.path, change.after, change.mode, atomic_move)
        except OSError as exc:
            raise PodnetError(f'conf "{change.path}": cannot {change.action}: {exc}') from None


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _write_atomically(
    path: str, text: str, mode: int | None, atomic_move: Callable[[str, str], None]
) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o755, exist_ok=True)
    # Not ending in .conf, so a pod set up meanwhile never reads the half-written file.
    fd, temp = tempfile.mkstemp(dir=directory, prefix=".cni_conf-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(temp, mode)
        atomic_move(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    if mode is not None:
        os.chmod(path, mode)


def run_cni_conf(module: AnsibleModule) -> dict:
    """The cni_conf module: plan, stop there in check mode, apply, and report."""
    params = module.params
    plan = plan_conf_file(
        params["conf_dir"],
        params["state"],
        conf=params["conf"],
        name=params["name"],
        ordinal=params["ordinal"],
        path=params["path"],
        mode=params["mode"],
    )
    for warning in plan.warnings:
        module.warn(warning)

    if not module.check_mode:
        apply_conf_file(plan, module.atomic_move)

    result: dict = {
        "changed": plan.changed,
        "path": plan.path,
        "conf": plan.conf,
        "actions": [change.describe() for change in plan.changes],
    }
    if params["state"] == "absent":
        result["removed"] = [change.path for change in plan.changes]
    if module._diff:
        diffs = [
            {"before": c.before, "after": c.after, "before_header": c.path, "after_header": c.path}
            for c in plan.changes
        ]
        result["diff"] = diffs[0] if len(diffs) == 1 else (diffs or {})
    return result
