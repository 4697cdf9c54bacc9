# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""Bringing pods onto networks and off again: plan, (check mode stops here), apply, record.

A pod is a network namespace. `present` selects networks the way rkt's --net did, compares
what is wanted with what the pod's saved record and the kernel show, and changes only the
difference: attachments no longer wanted are removed, missing or broken ones are (re)made.
A failure undoes what that run did. The record saved per pod is enough for `absent`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import traceback
from dataclasses import dataclass, field

from ansible_collections.podnet.cni.plugins.module_utils import _forward, _netns
from ansible_collections.podnet.cni.plugins.module_utils._addr import norm_ip
from ansible_collections.podnet.cni.plugins.module_utils._attachment import (
    IP6_FORWARD,
    IP_FORWARD,
    MASQUERADE_PROBLEM,
    HostSide,
    PodSide,
    Undo,
    host_veth_name,
)
from ansible_collections.podnet.cni.plugins.module_utils._bridge import DEFAULT_BRIDGE
from ansible_collections.podnet.cni.plugins.module_utils._cni_plugin import (
    drain_warnings,
    search_dirs,
)
from ansible_collections.podnet.cni.plugins.module_utils._conf import available
from ansible_collections.podnet.cni.plugins.module_utils._errors import ConfError, PodnetError
from ansible_collections.podnet.cni.plugins.module_utils._host_state import HostLedger
from ansible_collections.podnet.cni.plugins.module_utils._ipam import (
    ipam_for,
    ipam_of_attachment,
)
from ansible_collections.podnet.cni.plugins.module_utils._links import Netlink
from ansible_collections.podnet.cni.plugins.module_utils._network_types import (
    TYPES,
    owns_ipam,
    type_for,
)
from ansible_collections.podnet.cni.plugins.module_utils._pod_state import PodStore
from ansible_collections.podnet.cni.plugins.module_utils._selection import (
    parse_cni_args,
    parse_networks,
    select,
)
from ansible_collections.podnet.cni.plugins.module_utils._state_files import (
    locked,
    write_text,
)

ETC_NETNS_DIR = "/etc/netns"
HOST_MODE_WARNING = (
    "pod {pod!r} shares the host's network namespace: it sees every host interface, and "
    "abstract unix sockets (X11, D-Bus) are shared with the host"
)


@dataclass
class Settings:
    """Host-level options shared by every pod of one module call."""

    conf_dir: str
    data_dir: str
    state_dir: str
    etc_dir: str = ETC_NETNS_DIR
    add_default_restricted: bool = True
    nat_backend: str = "auto"
    check_mode: bool = False
    plugin_dirs: list[str] | None = None  # None: the conf dir, then the system plugin dirs


@dataclass
class Wanted:
    """One network the pod should be on, as the selection says."""

    conf: object
    ifname: str
    args: str
    requested_ips: list[str]
    ipam: object
    fingerprint: str

    def matches(self, attachment: dict) -> bool:
        return (
            attachment.get("network") == self.conf.name
            and attachment.get("ifname") == self.ifname
            and attachment.get("args", "") == self.args
            and attachment.get("fingerprint") == self.fingerprint
        )


@dataclass
class Outcome:
    changed: bool = False
    actions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)
    record: dict | None = None


def fingerprint(conf) -> str:
    """Identifies a conf's content: an edited conf means the attachment must be remade."""
    text = json.dumps(conf.conf, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def summary(record: dict | None) -> dict:
    """The part of a pod record shown in diffs: mode, namespace and attachments."""
    if not record:
        return {}
    return {
        "mode": record.get("mode"),
        "netns": record.get("netns"),
        "attachments": [
            {"network": a["network"], "ifname": a["ifname"], "address": a.get("address")}
            for a in record.get("attachments", [])
        ],
    }


def interfaces(record: dict | None) -> list[dict]:
    """What the module returns per attachment."""
    keys = ("network", "type", "ifname", "address", "gateway", "mac", "host_ifname")
    found = []
    for attachment in (record or {}).get("attachments", []):
        interface = {key: attachment.get(key) for key in keys}
        interface["addresses"] = attachment.get("addresses") or [attachment.get("address")]
        found.append(interface)
    return found


class PodNetworks:
    """Drives pods on one host: the host namespace is the one the calling thread is in."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = PodStore(settings.state_dir)
        self.host_netlink = Netlink()
        self.ledger = HostLedger(settings.state_dir)
        self.host = HostSide(self.host_netlink, self.ledger, settings.nat_backend)
        self.host.data_dir = settings.data_dir
        self.host.plugin_dirs = search_dirs(settings.conf_dir, settings.plugin_dirs)
        self.warnings: list[str] = []
        self._written: set[str] = set()

    def close(self) -> None:
        self.host_netlink.close()

    # selection

    def wanted(self, networks: object) -> tuple[str, list[Wanted], list[str]]:
        """Mode and networks for a request; every input error is raised before any change."""
        confs, warnings = available(self.settings.conf_dir)
        selection = select(parse_networks(networks), confs, self.settings.add_default_restricted)
        wanted = []
        for selected in selection.networks:
            conf = selected.conf
            where = f'network "{conf.name}"'
            kind = type_for(conf.type)
            if kind is None:
                raise ConfError(
                    where,
                    "type",
                    conf.type,
                    f"type is not supported (supported: {', '.join(sorted(TYPES))})",
                )
            if hasattr(kind, "ipam_for"):  # a meta type (flannel) derives the IPAM it uses
                ipam = kind.ipam_for(conf, self.settings.data_dir)
            else:
                ipam = (
                    None
                    if owns_ipam(kind)
                    else ipam_for(
                        conf.name,
                        conf.ipam,
                        self.settings.data_dir,
                        conf,
                        self.host.plugin_dirs,
                        selected.args,
                    )
                )
            if ipam is not None:
                ipam.validate()
                warnings += overlap_warnings(conf, ipam, confs)
            if hasattr(kind, "check"):  # what only the host can tell: a master, kernel support
                kind.check(self.host, conf)
            wanted.append(
                Wanted(
                    conf=conf,
                    ifname=selected.ifname,
                    args=selected.args,
                    requested_ips=_requested_ips(where, selected.args),
                    ipam=ipam,
                    fingerprint=fingerprint(conf),
                )
            )
        return selection.mode, wanted, warnings

    # present

    def present(
        self, name: str, networks: object, netns: str | None, hostname: str | None
    ) -> Outcome:
        mode, wanted, warnings = self.wanted(networks)
        outcome = Outcome(warnings=list(warnings))
        record = self.store.load(name)
        outcome.before = summary(record)
        netns_path = None if mode == "host" else (netns or _netns.default_path(name))

        if record and (record.get("mode") == "host") != (mode == "host"):
            self._teardown(name, record, outcome)
            record = None
        if record and record.get("netns") != netns_path:
            self._teardown(name, record, outcome)
            record = None

        if mode == "host":
            outcome.warnings.append(HOST_MODE_WARNING.format(pod=name))
            if record is None:
                outcome.changed = True
                outcome.actions.append(f"record pod {name} in host mode")
                record = {"name": name, "mode": "host", "netns": None, "attachments": []}
                if not self.settings.check_mode:
                    self.store.save(name, record)
            outcome.after = summary(record)
            outcome.record = record
            return outcome

        namespace_ok = _netns.is_netns(netns_path)
        if netns is not None and not namespace_ok:
            raise PodnetError(f'field "netns": {netns} is not a network namespace')
        if namespace_ok and _netns.identity(netns_path) == _netns.identity(_netns.current_path()):
            raise PodnetError(
                f'pod {name}: namespace {netns_path} is the host\'s own; use networks "host" '
                "to share it"
            )
        # A namespace that exists before podnet first sees the pod is someone else's: podnet
        # uses it but never deletes it.
        record = record or {
            "name": name,
            "mode": mode,
            "netns": netns_path,
            "netns_created": not namespace_ok,
            "attachments": [],
        }
        record["mode"] = mode

        pod = self._pod_side(name, netns_path, alive=namespace_ok)
        try:
            keep, drop, add, fix = self._difference(
                pod, record, wanted if mode == "contained" else []
            )
            for attachment in fix:
                outcome.actions.append(
                    f"repair the masquerade of {attachment['network']} ({attachment['ifname']})"
                )
            for attachment, why in drop:
                outcome.actions.append(
                    f"remove {attachment['network']} ({attachment['ifname']})"
                    + (f": {why}" if why else "")
                )
            if not namespace_ok:
                outcome.actions.append(f"create namespace {netns_path}")
            for item, _address in add:
                outcome.actions.append(f"add {item.conf.name} ({item.ifname})")
            hostname = hostname or record.get("hostname") or name
            etc_changes = self._etc_files(name, hostname, mode, wanted, dry=True)
            outcome.actions += [f"write {path}" for path in etc_changes]
            outcome.changed = bool(outcome.actions)

            if self.settings.check_mode:
                predicted = dict(
                    record,
                    attachments=keep
                    + [self._predict(name, item, address) for item, address in add],
                )
                outcome.after = summary(predicted)
                outcome.record = predicted
                return outcome
            if not outcome.changed:
                outcome.after = summary(record)
                outcome.record = record
                return outcome

            with locked(self.settings.state_dir):
                self.ledger.reload()
                record["hostname"] = hostname
                self._apply(name, record, pod, keep, drop, add, namespace_ok)
                for attachment in fix:
                    self._remasquerade(name, attachment)
                if fix:
                    self.store.save(name, record)
                moved = _forward.retarget(self.host, name, record)
                if moved:
                    outcome.actions += moved
                    self.ledger.save()
                    self.store.save(name, record)
                self._written = set(record.get("etc_files", []))
                self._etc_files(name, hostname, mode, wanted, dry=False)
                record["etc_files"] = sorted(self._written)
                self.store.save(name, record)
            outcome.warnings += self.warnings
            self.warnings = []
        finally:
            if pod.netlink is not None:
                pod.netlink.close()
        outcome.after = summary(record)
        outcome.record = record
        return outcome

    def _pod_side(self, name: str, netns_path: str | None, alive: bool = True) -> PodSide:
        if netns_path is None or not alive:
            return PodSide(name, netns_path or "", None)
        return PodSide(name, netns_path, Netlink(netns_path))

    def _difference(self, pod: PodSide, record: dict, wanted: list[Wanted]):
        """Split into attachments to keep, to drop (with why), to add (with an address), and
        kept ones whose masquerade alone is missing (fixed in place: the pod keeps its link)."""
        keep: list[dict] = []
        fix: list[dict] = []
        drop: list[tuple[dict, str]] = []
        add: list[tuple[Wanted, str | None]] = []
        current = list(record.get("attachments", []))
        for item in wanted:
            match = next((a for a in current if item.matches(a)), None)
            if match is None:
                add.append((item, None))
                continue
            current.remove(match)
            broken = self._problems(pod, match)
            if broken and all(problem.startswith(MASQUERADE_PROBLEM) for problem in broken):
                keep.append(match)
                fix.append(match)
            elif broken:
                drop.append((match, "; ".join(broken)))
                address = (match.get("address") or "").split("/")[0] or None
                add.append((item, address))
            else:
                keep.append(match)
        drop = [(a, "") for a in current] + drop
        return keep, drop, add, fix

    def _problems(self, pod: PodSide, attachment: dict) -> list[str]:
        if attachment.get("pending"):
            return ["an earlier run stopped while making it"]
        kind = type_for(attachment.get("type"))
        if kind is None:
            return [f"unknown type {attachment.get('type')}"]
        found = kind.problems(self.host, pod, attachment)
        ipam = ipam_of_attachment(attachment)
        if ipam is not None and attachment.get("address"):
            address = attachment["address"].split("/")[0]
            if not ipam.holds(pod.name, attachment["ifname"], address):
                found.append(f"lease for {address} is missing")
        return found

    def _predict(self, name: str, item: Wanted, address: str | None) -> dict:
        requested = [address] if address else item.requested_ips
        leases = item.ipam.predict(name, item.ifname, requested) if item.ipam else []
        main = next((lease for lease in leases if lease.address.version == 4), None)
        main = main or (leases[0] if leases else None)
        return {
            "network": item.conf.name,
            "type": item.conf.type,
            "ifname": item.ifname,
            "address": main.cidr if main else None,
            "addresses": [lease.cidr for lease in leases],
            "gateway": str(main.gateway) if main else None,
        }

    def _remasquerade(self, pod: str, attachment: dict) -> None:
        """Put a pod's masquerade back (someone flushed the rules) with the backend in use now."""
        previous = self.host.nat_for(attachment)
        if previous is not self.host.nat:
            previous.remove_masquerade(pod, attachment["network"])
        address = attachment["address"].split("/")[0]
        self.host.nat.ensure_masquerade(pod, attachment["network"], address, attachment["subnet"])
        attachment["nat_backend"] = self.host.nat.name

    def _apply(self, name, record, pod, keep, drop, add, namespace_ok) -> None:
        for attachment, _reason in reversed(drop):
            self._detach(pod, attachment)
            record["attachments"].remove(attachment)
        self.store.save(name, record)

        undo = Undo()
        made = None
        try:
            if not namespace_ok:
                _netns.create(record["netns"])
                undo.push(_netns.delete, record["netns"])
                made = pod = self._pod_side(name, record["netns"])
            pod.netlink.set_up("lo")
            for item, address in add:
                # Recorded before it is made: a run killed half way leaves teardown a trail.
                pending = self._pending(pod.name, item)
                record["attachments"].append(pending)
                self.store.save(name, record)
                attachment = self._attach(pod, item, address, undo)
                record["attachments"][record["attachments"].index(pending)] = attachment
                for route in attachment.get("shadowed_routes", []):
                    self.warnings.append(
                        f'pod {name}: network "{item.conf.name}": route {route["dst"]} is '
                        f"already served by an earlier network of the pod; not added on "
                        f"{item.ifname}"
                    )
            record["attachments"].sort(key=lambda a: int(a["ifname"][3:]))
            self.store.save(name, record)
            self.ledger.save()
        except BaseException as exc:
            failures = undo.run()
            record["attachments"] = [a for a in record["attachments"] if a in keep]
            self.ledger.save()
            if not namespace_ok:
                self.store.delete(name)
            else:
                self.store.save(name, record)
            if failures:
                detail = "; ".join(failures)
                raise PodnetError(
                    f"{exc}; undo after the failure was incomplete: {detail}"
                ) from exc
            raise
        finally:
            if made is not None:
                made.netlink.close()

    def _pending(self, pod: str, item: Wanted) -> dict:
        """What teardown needs to undo an attachment that a killed run left half made."""
        conf = item.conf
        return {
            "network": conf.name,
            "type": conf.type,
            "ifname": item.ifname,
            "args": item.args,
            "fingerprint": item.fingerprint,
            "pending": True,
            "host_ifname": host_veth_name(pod, item.ifname),
            "bridge": conf.conf.get("bridge") or DEFAULT_BRIDGE,
            "masquerade": conf.ip_masq,
            "sysctls": [IP_FORWARD, IP6_FORWARD],
            **(item.ipam.saved() if item.ipam is not None else {}),
        }

    def _attach(self, pod: PodSide, item: Wanted, address: str | None, undo: Undo) -> dict:
        conf = item.conf
        leases = []
        if item.ipam is not None:
            requested = [address] if address else item.requested_ips
            leases = item.ipam.allocate(pod.name, item.ifname, requested)
            undo.push(item.ipam.release, pod.name, item.ifname)
        attachment = {
            "network": conf.name,
            "type": conf.type,
            "ifname": item.ifname,
            "args": item.args,
            "fingerprint": item.fingerprint,
            "dns": conf.dns or {},
            **(item.ipam.saved() if item.ipam is not None else {}),
        }
        kind = type_for(conf.type)
        attachment.update(kind.add(self.host, pod, conf, item.ifname, leases, undo, args=item.args))
        if attachment.get("masquerade"):
            attachment["nat_backend"] = self.host.nat.name
        return attachment

    def _detach(self, pod: PodSide, attachment: dict) -> None:
        kind = type_for(attachment.get("type"))
        if kind is not None and attachment.get("pending"):
            # Half made by a killed run: remove what can be found, by name and by tag.
            with contextlib.suppress(Exception):
                kind.remove(self.host, pod, attachment)
        elif kind is not None:
            kind.remove(self.host, pod, attachment)
        ipam = ipam_of_attachment(attachment)
        if ipam is not None:
            ipam.release(pod.name, attachment["ifname"])

    # absent

    def absent(self, name: str) -> Outcome:
        outcome = Outcome()
        record = self.store.load(name)
        outcome.before = summary(record)
        if record is None:
            return outcome
        self._teardown(name, record, outcome)
        return outcome

    def _teardown(self, name: str, record: dict, outcome: Outcome) -> None:
        outcome.changed = True
        for attachment in reversed(record.get("attachments", [])):
            outcome.actions.append(f"remove {attachment['network']} ({attachment['ifname']})")
        netns_path = record.get("netns")
        if netns_path and record.get("netns_created"):
            outcome.actions.append(f"delete namespace {netns_path}")
        outcome.actions.append(f"forget pod {name}")
        if self.settings.check_mode:
            return
        with locked(self.settings.state_dir):
            self.ledger.reload()
            alive = bool(netns_path) and _netns.is_netns(netns_path)
            pod = self._pod_side(name, netns_path, alive=alive)
            try:
                _forward.remove_pod_forwards(self.host, name, record)
                for attachment in reversed(record.get("attachments", [])):
                    self._detach(pod, attachment)
            finally:
                if pod.netlink is not None:
                    pod.netlink.close()
            self.ledger.save()
            if netns_path and record.get("netns_created"):
                _netns.delete(netns_path)
            self._remove_etc_files(name, record)
            self.store.delete(name)

    # /etc/netns/<pod>: what `ip netns exec` bind-mounts over /etc

    def _remove_etc_files(self, name: str, record: dict) -> None:
        """Remove the files podnet wrote there, and the dir if that leaves it empty."""
        directory = os.path.join(self.settings.etc_dir, name)
        for base in record.get("etc_files", ["hosts"]):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, base))
        with contextlib.suppress(OSError):
            os.rmdir(directory)

    def _etc_files(
        self, name: str, hostname: str, mode: str, wanted: list[Wanted], dry: bool
    ) -> list[str]:
        """Write hosts (and resolv.conf when a network gives DNS); return what differs."""
        if mode == "host":
            return []
        directory = os.path.join(self.settings.etc_dir, name)
        files = {"hosts": _hosts_text(hostname)}
        resolv = _resolv_text(wanted)
        if resolv:
            files["resolv.conf"] = resolv
        changed = []
        for base, text in files.items():
            path = os.path.join(directory, base)
            if not dry:
                self._written.add(base)
            try:
                with open(path) as handle:
                    if handle.read() == text:
                        continue
            except FileNotFoundError:
                pass
            changed.append(path)
            if not dry:
                write_text(path, text)
        return changed


def _ranges(ipam) -> list:
    ranges = getattr(ipam, "ranges", None)
    return [member for range_set in ranges() for member in range_set] if ranges else []


def overlap_warnings(conf, ipam, confs: dict) -> list[str]:
    """Two networks whose ranges overlap each keep their own leases, so both may hand out one
    address, and the host's route to one pod then steals the other's traffic. Networks on one
    LAN may share a subnet with disjoint ranges; only overlapping ranges are a hazard."""
    mine = _ranges(ipam)
    found = []
    for other in confs.values() if mine else ():
        if other.name == conf.name or other.ipam.get("type") != "host-local":
            continue
        try:
            theirs = _ranges(ipam_for(other.name, other.ipam, ipam.data_dir))
        except PodnetError:
            continue  # that conf's own error is reported when a pod joins it
        for member in mine:
            for clash in theirs:
                same_family = member.start.version == clash.start.version
                if same_family and member.start <= clash.end and clash.start <= member.end:
                    found.append(
                        f'network "{conf.name}": range {member} overlaps range {clash} of '
                        f'network "{other.name}": both may hand out the same address'
                    )
    return found


def _requested_ips(where: str, args: str) -> list[str]:
    """The IP= argument (host-local's only key); unknown keys fail unless IgnoreUnknown."""
    if not args:
        return []
    pairs = parse_cni_args(args)
    ignore_unknown = pairs.get("IgnoreUnknown", "").lower() in ("1", "true")
    unknown = [key for key in pairs if key not in ("IP", "IgnoreUnknown")]
    if unknown and not ignore_unknown:
        raise ConfError(where, "args", args, f"unknown argument(s): {', '.join(unknown)}")
    if "IP" not in pairs:
        return []
    try:
        return [norm_ip(pairs["IP"])]
    except ValueError as exc:
        raise ConfError(where, "args.IP", pairs["IP"], "not an IP address") from exc


def _hosts_text(hostname: str) -> str:
    return (
        "# Written by podnet.cni for this pod\n"
        f"127.0.0.1\tlocalhost localhost.localdomain {hostname}\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
    )


def _resolv_text(wanted: list[Wanted]) -> str | None:
    """rkt's rule: the first network (in order) whose conf gives DNS writes resolv.conf."""
    for item in wanted:
        dns = item.conf.dns or {}
        if not any(dns.get(key) for key in ("nameservers", "domain", "search", "options")):
            continue
        lines = [f"# Generated by podnet.cni from network {item.conf.name}", ""]
        if dns.get("search"):
            lines.append("search " + " ".join(dns["search"]))
        lines += [f"nameserver {server}" for server in dns.get("nameservers") or []]
        if dns.get("options"):
            lines.append("options " + " ".join(dns["options"]))
        if dns.get("domain"):
            lines.append(f"domain {dns['domain']}")
        return "\n".join(lines) + "\n"
    return None


POD_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]{0,62}$")
_LABEL = r"[a-zA-Z0-9]([a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])?"
HOSTNAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")


def check_pod_request(request: dict) -> None:
    """A pod name becomes a file name in three directories: no separators, no dot-dot."""
    name = request.get("name")
    if not isinstance(name, str) or not POD_NAME.fullmatch(name) or name in (".", ".."):
        raise PodnetError(
            f'field "name": {name!r} is not a valid pod name (letters, digits, "_", "." and '
            '"-", starting with a letter or digit, at most 63 characters)'
        )
    hostname = request.get("hostname")
    if hostname is not None and (len(hostname) > 253 or not HOSTNAME.fullmatch(hostname)):
        raise PodnetError(f'pod {name}: field "hostname": {hostname!r} is not a valid hostname')


def run_module(module) -> None:
    """pod_network's body: one pod (name) or many (pods) through one PodNetworks."""
    params = module.params
    settings = Settings(
        conf_dir=params["conf_dir"],
        data_dir=params["data_dir"],
        state_dir=params["state_dir"],
        etc_dir=params["etc_netns_dir"],
        add_default_restricted=params["add_default_restricted"],
        nat_backend=params["nat_backend"],
        check_mode=module.check_mode,
        plugin_dirs=params.get("plugin_dirs"),
    )
    requests = params["pods"] or [
        {
            "name": params["name"],
            "networks": params["networks"],
            "netns": params["netns"],
            "hostname": params["hostname"],
        }
    ]
    results, changed, actions, diffs = [], False, [], []
    try:
        for request in requests:
            check_pod_request(request)
    except PodnetError as exc:
        module.fail_json(msg=str(exc), changed=False, actions=[])
    networks = PodNetworks(settings)
    try:
        for request in requests:
            name = request["name"]
            if params["state"] == "present":
                outcome = networks.present(
                    name, request.get("networks"), request.get("netns"), request.get("hostname")
                )
            else:
                outcome = networks.absent(name)
            for warning in outcome.warnings + drain_warnings():
                module.warn(warning)
            changed |= outcome.changed
            actions += outcome.actions
            diffs.append(
                {
                    "before": outcome.before,
                    "after": outcome.after,
                    "before_header": f"pod {name}",
                    "after_header": f"pod {name}",
                }
            )
            record = outcome.record or {}
            results.append(
                {
                    "name": name,
                    "mode": record.get("mode") if params["state"] == "present" else None,
                    "netns": record.get("netns") if params["state"] == "present" else None,
                    "interfaces": interfaces(record) if params["state"] == "present" else [],
                    "changed": outcome.changed,
                }
            )
    except PodnetError as exc:
        module.fail_json(msg=str(exc), changed=changed, actions=actions)
    except Exception as exc:  # noqa: BLE001 - reported with its traceback, never raised raw
        module.fail_json(
            msg=f"unexpected error: {exc}", exception=traceback.format_exc(), actions=actions
        )
    finally:
        networks.close()

    result = {"changed": changed, "actions": actions}
    if params["pods"]:
        result["pods"] = results
    else:
        result.update({k: results[0][k] for k in ("mode", "netns", "interfaces")})
    if module._diff:
        result["diff"] = diffs if params["pods"] else diffs[0]
    module.exit_json(**result)
