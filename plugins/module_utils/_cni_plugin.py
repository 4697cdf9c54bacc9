# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""Third-party CNI plugin binaries: find one, run it with the CNI protocol, read its answer.

The contract is rkt's: the plugin is named by the conf's `type` and searched in the conf dir
first, then the system plugin dirs; stdin is the conf file's bytes, unmodified; the
environment names the command, the pod, its namespace, the interface and the search path.
An answer may be in any result shape from CNI 0.1.0 to 1.0.0; a failure is error JSON.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from ansible_collections.podnet.cni.plugins.module_utils._command import run
from ansible_collections.podnet.cni.plugins.module_utils._errors import (
    CommandError,
    ConfError,
    PodnetError,
)

SYSTEM_PLUGIN_DIRS = ("/usr/lib/rkt/plugins/net", "/opt/cni/bin", "/usr/lib/cni")
# What rkt told every plugin; plugins read the version from the conf, not from here.
ENV_CNI_VERSION = "0.1.0"

# DEL failures are not errors (teardown must finish), so they are kept for the user here and
# reported by the module once it is done.
_warnings: list[str] = []


class PluginError(PodnetError):
    """A plugin failed, or answered something that is not CNI."""


def search_dirs(conf_dir: str, plugin_dirs: list[str] | None = None) -> list[str]:
    """The plugin search path: as configured, else the conf dir and the system dirs."""
    if plugin_dirs:
        return list(plugin_dirs)
    return [conf_dir, *SYSTEM_PLUGIN_DIRS]


def find_plugin(kind: str, dirs: list[str], where: str, field_name: str = "type") -> str:
    """The first executable regular file named kind in dirs, or a ConfError naming both."""
    if "/" in kind or kind in (".", ".."):
        raise ConfError(where, field_name, kind, "a plugin name cannot contain '/'")
    for directory in dirs:
        candidate = os.path.join(directory, kind)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    for directory in dirs:
        candidate = os.path.join(directory, kind)
        if os.path.isfile(candidate):
            raise ConfError(where, field_name, kind, f"plugin {candidate} is not executable")
    raise ConfError(
        where,
        field_name,
        kind,
        f"not a built-in type, and no plugin binary of that name in {', '.join(dirs)}",
    )


DEFAULT_HOST_LOCAL_DIR = "/var/lib/cni/networks"
PLUGIN_TIMEOUT = 120  # seconds: a hung plugin must not hang the play


def read_conf_text(conf, where: str, data_dir: str | None = None) -> str:
    """The conf file's own text (what the plugin gets on stdin); a built-in's rendered JSON.

    A host-local IPAM without its own dataDir gets the module's data_dir, so a plugin's leases
    land where podnet's do (and are seen by it) when that is not CNI's default dir.
    """
    if conf.path is None:
        text = json.dumps(conf.conf)
    else:
        try:
            with open(conf.path, encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfError(where, None, None, f"cannot be read: {exc}") from None
    ipam = conf.conf.get("ipam") or {}
    if (
        data_dir
        and data_dir != DEFAULT_HOST_LOCAL_DIR
        and ipam.get("type") == "host-local"
        and not ipam.get("dataDir")
    ):
        raw = json.loads(text)
        key = next((k for k in raw if k.lower() == "ipam"), "ipam")
        raw[key]["dataDir"] = data_dir
        text = json.dumps(raw)
    return text


@dataclass(frozen=True)
class Invocation:
    """Everything one plugin call needs; saved with the attachment so DEL needs nothing else."""

    plugin: str
    conf_text: str
    network: str
    container_id: str
    netns: str
    ifname: str
    args: str = ""
    cni_path: list[str] = field(default_factory=list)

    def env(self, command: str) -> dict[str, str]:
        return {
            "CNI_VERSION": ENV_CNI_VERSION,
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": self.container_id,
            "CNI_NETNS": self.netns,
            "CNI_ARGS": self.args,
            "CNI_IFNAME": self.ifname,
            "CNI_PATH": ":".join(self.cni_path),
        }

    def saved(self) -> dict:
        return {
            "plugin": self.plugin,
            "plugin_conf": self.conf_text,
            "plugin_netns": self.netns,
            "cni_path": list(self.cni_path),
        }

    @classmethod
    def from_saved(cls, saved: dict, container_id: str, netns: str) -> Invocation:
        return cls(
            plugin=saved["plugin"],
            conf_text=saved["plugin_conf"],
            network=saved["network"],
            container_id=container_id,
            netns=netns,
            ifname=saved["ifname"],
            args=saved.get("args", ""),
            cni_path=list(saved.get("cni_path", [])),
        )


@dataclass(frozen=True)
class ResultIP:
    """One address of a result; interface is an index into the result's interfaces."""

    address: str
    prefixlen: int
    version: int
    gateway: str | None
    interface: int | None

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefixlen}"


@dataclass
class Result:
    """A plugin's ADD answer in one shape, whatever CNI version it was printed in."""

    cni_version: str
    interfaces: list[dict] = field(default_factory=list)
    ips: list[ResultIP] = field(default_factory=list)
    routes: list[dict] = field(default_factory=list)
    dns: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)


def call(invocation: Invocation, command: str, stdin: str | None = None) -> str:
    """Run the plugin once; return its stdout, or raise PluginError with its own message."""
    where = f'network "{invocation.network}": plugin {invocation.plugin}'
    try:
        rc, stdout, stderr = run(
            [invocation.plugin],
            stdin=invocation.conf_text if stdin is None else stdin,
            check=False,
            env=invocation.env(command),
            timeout=PLUGIN_TIMEOUT,
        )
    except OSError as exc:
        raise PluginError(f"{where}: cannot run: {exc}") from None
    except CommandError as exc:  # the timeout
        raise PluginError(f"{where}: {command} {exc.stderr}") from None
    if rc != 0:
        raise PluginError(f"{where}: {command} failed (rc={rc}): {error_message(stdout, stderr)}")
    return stdout


def add(invocation: Invocation) -> Result:
    """ADD; a failed or unreadable ADD is followed by a best-effort DEL (it may have half-made
    things: a veth, a lease) before the error is raised."""
    try:
        return parse_result(call(invocation, "ADD"), f'network "{invocation.network}"')
    except PluginError:
        delete(invocation)
        _warnings.clear()  # the ADD error says enough; a DEL complaint about it is noise
        raise


def delete(invocation: Invocation) -> bool:
    """DEL, tolerant as rkt's teardown: a failure becomes a warning, never an error."""
    try:
        call(invocation, "DEL")
    except PluginError as exc:
        _warnings.append(str(exc))
        return False
    return True


def check(invocation: Invocation, result: dict) -> str | None:
    """CHECK (CNI >= 0.4.0) with the saved ADD result as prevResult; the failure text or None."""
    try:
        conf = json.loads(invocation.conf_text)
    except ValueError:
        return None
    conf["prevResult"] = result
    try:
        call(invocation, "CHECK", stdin=json.dumps(conf))
    except PluginError as exc:
        return str(exc)
    return None


def supports_check(cni_version: str | None) -> bool:
    return _version_tuple(cni_version or "0.1.0") >= (0, 4, 0)


def drain_warnings() -> list[str]:
    """What plugins complained about during teardown since the last call."""
    found = list(_warnings)
    _warnings.clear()
    return found


# --- parsing ---------------------------------------------------------------------------------


def error_message(stdout: str, stderr: str = "") -> str:
    """A failed plugin's own words: msg; details from its error JSON, else what it printed."""
    try:
        answer = json.loads(stdout)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and isinstance(answer.get("msg"), str):
        text = answer["msg"]
        if answer.get("details"):
            text += f"; {answer['details']}"
        if "code" in answer:
            text += f" (CNI error code {answer['code']})"
        return text
    printed = (stdout.strip() or stderr.strip())[:500]
    return f"no CNI error JSON in its output: {printed!r}"


def parse_result(text: str, where: str) -> Result:
    """Read an ADD result of CNI 0.1.0/0.2.0 (ip4/ip6) or 0.3.0 up to 1.0.0 (ips) shape."""
    try:
        answer = json.loads(text)
    except ValueError:
        raise PluginError(
            f"{where}: error parsing the plugin's result: not JSON: {text.strip()[:500]!r}"
        ) from None
    if not isinstance(answer, dict):
        raise PluginError(f"{where}: error parsing the plugin's result: not a JSON object")
    result = Result(cni_version=str(answer.get("cniVersion") or "0.1.0"), raw=answer)
    dns = answer.get("dns")
    result.dns = dns if isinstance(dns, dict) else {}

    if "ips" in answer or "interfaces" in answer:
        result.interfaces = _objects(answer.get("interfaces"), "interfaces", where)
        for i, entry in enumerate(_objects(answer.get("ips"), "ips", where)):
            result.ips.append(_ip(entry, f"ips[{i}]", where))
        result.routes = _routes(answer.get("routes"), "routes", where)
        return result

    for key in ("ip4", "ip6"):
        entry = answer.get(key)
        if entry is None:
            continue
        if not isinstance(entry, dict):
            raise PluginError(f"{where}: error parsing the plugin's result: {key} is not an object")
        address = _ip({"address": entry.get("ip"), "gateway": entry.get("gateway")}, key, where)
        result.ips.append(address)
        result.routes += _routes(entry.get("routes"), f"{key}.routes", where)
    return result


def _objects(value: object, key: str, where: str) -> list[dict]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise PluginError(f"{where}: error parsing the plugin's result: {key} is not a list")
    return value


def _ip(entry: dict, key: str, where: str) -> ResultIP:
    from netaddr import AddrFormatError, IPAddress, IPNetwork

    address, gateway, interface = entry.get("address"), entry.get("gateway"), entry.get("interface")
    try:
        if not isinstance(address, str) or "/" not in address:
            raise ValueError("not a CIDR")
        network = IPNetwork(address)
        gateway = str(IPAddress(gateway)) if gateway else None
    except (AddrFormatError, ValueError, TypeError):
        raise PluginError(
            f"{where}: error parsing the plugin's result: {key}: bad address "
            f"{address!r} or gateway {gateway!r}"
        ) from None
    if interface is not None and not isinstance(interface, int):
        raise PluginError(f"{where}: error parsing the plugin's result: {key}.interface")
    return ResultIP(str(network.ip), network.prefixlen, network.version, gateway, interface)


def _routes(value: object, key: str, where: str) -> list[dict]:
    from netaddr import AddrFormatError, IPNetwork

    routes = _objects(value, key, where)
    for i, route in enumerate(routes):
        try:
            IPNetwork(route["dst"])
        except (AddrFormatError, KeyError, TypeError, ValueError):
            raise PluginError(
                f"{where}: error parsing the plugin's result: {key}[{i}].dst {route.get('dst')!r}"
            ) from None
    return [{k: route[k] for k in ("dst", "gw") if route.get(k)} for route in routes]


def _version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (0,)
