# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""Port forwards, rkt's --port: a pod's declared port reached through a host port.

Plan (parse the declared ports and NAME:[HOSTIP:]HOSTPORT requests, pick the forwardable
network, refuse clashes) -> check mode stops -> apply (route_localnet, then the NAT rules in one
transaction) -> record the forwards in the pod's record. The rules are tagged with the pod, so
removal needs nothing from the record but the backend's name (bugs.md C06).
"""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass, field

from ansible_collections.podnet.cni.plugins.module_utils._addr import parse_ip
from ansible_collections.podnet.cni.plugins.module_utils._errors import PodnetError
from ansible_collections.podnet.cni.plugins.module_utils._host_state import HostLedger
from ansible_collections.podnet.cni.plugins.module_utils._nat import (
    FORWARD_PROTOCOLS,
    PortForward,
    nat_backend,
    usable_backends,
)
from ansible_collections.podnet.cni.plugins.module_utils._pod_state import PodStore
from ansible_collections.podnet.cni.plugins.module_utils._state_files import locked

ROUTE_LOCALNET = "net/ipv4/conf/{ifname}/route_localnet"
# rkt's AC name: lower-case alphanumerics and dashes.
_PORT_NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


@dataclass(frozen=True)
class DeclaredPort:
    """A port the pod's app declares (rkt's image manifest `ports`)."""

    name: str
    port: int
    protocol: str


@dataclass(frozen=True)
class Request:
    """One forward asked for: a declared port name to a host port, maybe on one host address."""

    name: str
    host_ip: str | None
    host_port: int

    @property
    def text(self) -> str:
        host = f"{self.host_ip}:" if self.host_ip else ""
        return f"{self.name}:{host}{self.host_port}"


@dataclass
class Outcome:
    changed: bool = False
    actions: list[str] = field(default_factory=list)
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    forwards: list[dict] = field(default_factory=list)


def owner(pod: str) -> str:
    """The ledger owner of a pod's forward sysctls (attachments use "<pod>:<network>")."""
    return f"{pod}:forward"


# parsing


def port_number(value: object, where: str) -> int:
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or not 0 < int(text) < 65536:
        raise PodnetError(f'{where}: "{value}" is not a valid port number (1-65535)')
    return int(text)


def parse_ports(ports: object) -> dict[str, DeclaredPort]:
    """The pod's declared ports by name; names must be unique (rkt: one app per name)."""
    if ports is None:
        ports = []
    if not isinstance(ports, list):
        raise PodnetError(f"ports: must be a list of {{name, port, protocol}}, got {ports!r}")
    declared: dict[str, DeclaredPort] = {}
    for index, item in enumerate(ports):
        where = f"ports[{index}]"
        if not isinstance(item, dict) or "name" not in item or "port" not in item:
            raise PodnetError(f"{where}: must be a dict with name and port, got {item!r}")
        name = str(item["name"])
        if not _PORT_NAME.fullmatch(name):
            raise PodnetError(
                f'{where}: field "name": "{name}" is not a valid port name '
                "(lower-case letters, digits and dashes)"
            )
        protocol = str(item.get("protocol") or "tcp").lower()
        if protocol not in FORWARD_PROTOCOLS:
            raise PodnetError(f'{where}: field "protocol": "{protocol}" is not tcp or udp')
        if name in declared:
            raise PodnetError(f'{where}: port name "{name}" is declared more than once')
        declared[name] = DeclaredPort(name, port_number(item["port"], f"{where}.port"), protocol)
    return declared


def parse_request(item: object) -> Request:
    """rkt's NAME:[HOSTIP:]HOSTPORT, or a dict with name, host_port and maybe host_ip."""
    if isinstance(item, dict):
        # Keys in any letter case (hostPort, HOST_IP): an unknown one is an error, never
        # silently dropped, since a dropped host_ip would widen the forward to every address.
        keys = {str(k).lower().replace("_", ""): k for k in item}
        unknown = [keys[k] for k in keys if k not in ("name", "hostport", "hostip")]
        if unknown:
            raise PodnetError(
                f"forward {item!r}: unknown key(s) {', '.join(map(str, unknown))} "
                "(use name, host_port, host_ip)"
            )
        if "name" not in keys or "hostport" not in keys:
            raise PodnetError(f"forward {item!r}: a dict needs name and host_port")
        name, host_port = item[keys["name"]], item[keys["hostport"]]
        host_ip = item[keys["hostip"]] if "hostip" in keys else None
        shown = f"forward {item!r}"
    elif isinstance(item, str):
        parts = item.split(":")
        if len(parts) not in (2, 3) or not all(parts):
            raise PodnetError(f'forward "{item}" is not in name:[ip:]port format')
        name, host_ip, host_port = parts[0], parts[1] if len(parts) == 3 else None, parts[-1]
        shown = f'forward "{item}"'
    else:
        raise PodnetError(f"forward {item!r} is not in name:[ip:]port format")

    if host_ip in ("", "0.0.0.0"):
        host_ip = None
    if host_ip is not None:
        try:
            address = parse_ip(host_ip)
        except ValueError as exc:
            raise PodnetError(f'{shown}: "{host_ip}" is not a valid IP') from exc
        if address.version != 4:
            raise PodnetError(f'{shown}: "{host_ip}" is not IPv4 (IPv6 is not supported yet)')
        host_ip = str(address)
    return Request(str(name), host_ip, port_number(host_port, shown))


def forwardable(record: dict) -> dict:
    """rkt's rule: the first network with ipMasq, else the last; it must have an address."""
    attachments = [a for a in record.get("attachments", []) if a.get("address")]
    if not attachments:
        raise PodnetError(
            f'pod "{record.get("name")}" has no network with an address to forward to'
        )
    masqueraded = [a for a in attachments if a.get("masquerade")]
    return masqueraded[0] if masqueraded else attachments[-1]


def plan(
    pod: str,
    record: dict,
    ports: object,
    requests: object,
    others: dict[str, list[PortForward]],
) -> list[tuple[str, PortForward]]:
    """(port name, forward) for every request; every input error is raised here, before any
    change. others holds the forwards of the host's other pods."""
    mode = record.get("mode")
    if mode == "host":
        raise PodnetError(f'pod "{pod}" is in host mode: it already uses the host\'s ports')
    if mode == "none" or not record.get("attachments"):
        raise PodnetError(f'pod "{pod}" has no networks (mode none): nothing to forward to')

    declared = parse_ports(ports)
    attachment = forwardable(record)
    address = attachment["address"].split("/")[0]
    subnet = attachment.get("subnet") or attachment["address"]

    planned: list[tuple[str, PortForward]] = []
    for item in requests or []:
        request = parse_request(item)
        port = declared.get(request.name)
        if port is None:
            raise PodnetError(
                f'forward "{request.text}": port name "{request.name}" is not among the '
                f"pod's declared ports ({', '.join(sorted(declared)) or 'none declared'})"
            )
        forward = PortForward(
            pod, port.protocol, request.host_ip, request.host_port, address, port.port, subnet
        )
        for _name, earlier in planned:
            if forward.overlaps(earlier):
                raise PodnetError(
                    f"forward {request.text}: port {describe_host(forward)} already mapped "
                    f"to pod port {earlier.port}"
                )
        for other, forwards in sorted(others.items()):
            clash = next((f for f in forwards if f.overlaps(forward)), None)
            if clash is not None:
                raise PodnetError(
                    f"forward {request.text}: port {describe_host(forward)} is already "
                    f'forwarded to pod "{other}" ({describe_host(clash)})'
                )
        planned.append((request.name, forward))
    return planned


def describe_host(forward: PortForward) -> str:
    return f"{forward.protocol}-{forward.host_ip or '0.0.0.0'}:{forward.host_port}"


def describe(forward: PortForward) -> str:
    return f"{describe_host(forward)} -> {forward.address}:{forward.port}"


def localnet_ifnames(attachment: dict) -> list[str]:
    """Where 127.0.0.1-sourced packets leave for the pod: the bridge, or the ptp host veth."""
    ifname = attachment.get("bridge") or attachment.get("host_ifname")
    return [ifname] if ifname else []


def saved(record: dict | None) -> list[PortForward]:
    """The forwards a pod record keeps."""
    found = []
    for item in (record or {}).get("forwards", []):
        found.append(
            PortForward(
                item["pod"],
                item["protocol"],
                item.get("host_ip"),
                item["host_port"],
                item["address"],
                item["port"],
                item["subnet"],
            )
        )
    return found


def as_dict(name: str, forward: PortForward) -> dict:
    return {
        "name": name,
        "pod": forward.pod,
        "protocol": forward.protocol,
        "host_ip": forward.host_ip,
        "host_port": forward.host_port,
        "address": forward.address,
        "port": forward.port,
        "subnet": forward.subnet,
    }


# the flow


class Forwards:
    """Forwards of the pods on one host; the host namespace is the calling thread's."""

    def __init__(self, state_dir: str, nat_prefer: str = "auto", check_mode: bool = False):
        self.state_dir = state_dir
        self.store = PodStore(state_dir)
        self.nat_prefer = nat_prefer
        self.check_mode = check_mode

    def _record(self, pod: str) -> dict:
        record = self.store.load(pod)
        if record is None:
            raise PodnetError(
                f'pod "{pod}" is unknown: no record in {self.store.pods_dir} '
                "(create it with pod_network first)"
            )
        return record

    def _others(self, pod: str) -> dict[str, list[PortForward]]:
        return {name: saved(self.store.load(name)) for name in self.store.names() if name != pod}

    def present(self, pod: str, ports: object, requests: object) -> Outcome:
        record = self._record(pod)
        planned = plan(pod, record, ports, requests, self._others(pod))
        wanted = [forward for _name, forward in planned]
        attachment = forwardable(record)
        backend = nat_backend(self.nat_prefer)
        before = saved(record)
        outcome = Outcome(
            before=sorted(describe(f) for f in before),
            after=sorted(describe(f) for f in wanted),
            forwards=[as_dict(name, f) for name, f in planned],
        )

        old_backend = record.get("forward_backend")
        stale_backend = bool(old_backend) and old_backend != backend.name
        keys = [ROUTE_LOCALNET.format(ifname=i) for i in localnet_ifnames(attachment)]
        keys = keys if wanted else []
        old_keys = record.get("forward_sysctls", [])
        ledger = HostLedger(self.state_dir)
        sysctls_ok = all(_holds(ledger, key, pod) for key in keys)
        rules_ok = backend.has_forwards(pod, wanted)
        record_ok = (
            before == wanted
            and set(old_keys) == set(keys)
            and (old_backend == backend.name or not wanted)
        )
        if rules_ok and sysctls_ok and record_ok and not stale_backend:
            return outcome

        outcome.changed = True
        if stale_backend:
            outcome.actions.append(f"remove forwards of pod {pod} from {old_backend}")
        outcome.actions += [f"forward {describe(f)}" for f in wanted if f not in before]
        outcome.actions += [f"remove forward {describe(f)}" for f in before if f not in wanted]
        if not rules_ok and set(before) == set(wanted):
            outcome.actions.append(f"repair the {backend.name} rules of pod {pod}'s forwards")
        if self.check_mode:
            return outcome

        with locked(self.state_dir):
            ledger = HostLedger(self.state_dir)
            self._apply(pod, record, planned, backend, keys, ledger, stale_backend)
        return outcome

    def _apply(self, pod, record, planned, backend, keys, ledger, stale_backend) -> None:
        wanted = [forward for _name, forward in planned]
        previous = saved(record)
        try:
            for key in keys:
                ledger.acquire_sysctl(key, "1", owner(pod))
            backend.ensure_forwards(pod, wanted)
        except BaseException:
            # The rule change is one transaction: either it happened or nothing did. Put back
            # what this run changed and leave the record as it was.
            for key in keys:
                if key not in record.get("forward_sysctls", []):
                    ledger.release_sysctl(key, owner(pod))
            ledger.save()
            raise

        if stale_backend:
            _backend_named(record["forward_backend"]).remove_forwards(pod)
        for key in record.get("forward_sysctls", []):
            if key not in keys:
                ledger.release_sysctl(key, owner(pod))
        ledger.save()
        record["forwards"] = [as_dict(name, f) for name, f in planned]
        record["forward_sysctls"] = keys
        record["forward_backend"] = backend.name if wanted else None
        if not wanted:
            for key in ("forwards", "forward_sysctls", "forward_backend"):
                record.pop(key, None)
        try:
            self.store.save(pod, record)
        except BaseException:
            backend.ensure_forwards(pod, previous)
            raise

    def absent(self, pod: str) -> Outcome:
        record = self.store.load(pod)
        before = saved(record)
        outcome = Outcome(before=sorted(describe(f) for f in before))
        if record is None:
            return outcome
        backends = _backends_of(record, self.nat_prefer)
        left = [b for b in backends if not b.has_forwards(pod, [])]
        if not before and not left and not record.get("forward_sysctls"):
            return outcome
        outcome.changed = True
        outcome.actions += [f"remove forward {describe(f)}" for f in before]
        if not before:
            outcome.actions.append(f"remove leftover forward rules of pod {pod}")
        if self.check_mode:
            return outcome
        with locked(self.state_dir):
            ledger = HostLedger(self.state_dir)
            _remove(backends, pod, record, ledger)
            ledger.save()
            self.store.save(pod, record)
        return outcome


def _holds(ledger: HostLedger, key: str, pod: str) -> bool:
    from ansible_collections.podnet.cni.plugins.module_utils._links import read_sysctl

    entry = ledger.entries["sysctls"].get(key)
    return bool(entry) and owner(pod) in entry["owners"] and read_sysctl(key) in ("1", None)


def _backend_named(name: str):
    return nat_backend(name)


def _backends_of(record: dict, prefer: str) -> list:
    """The backend the record names, else every usable one (a sweep by tag finds the rest)."""
    name = record.get("forward_backend")
    if name:
        try:
            return [nat_backend(name)]
        except PodnetError:
            return usable_backends()
    if prefer != "auto":
        return [nat_backend(prefer)]
    return usable_backends()


def _remove(backends: list, pod: str, record: dict, ledger: HostLedger) -> list[str]:
    """Drop a pod's forward rules (by tag) and sysctls, and forget them in the record."""
    actions = []
    for backend in backends:
        if backend.remove_forwards(pod):
            actions.append(f"remove forward rules of pod {pod} ({backend.name})")
    for key in record.get("forward_sysctls", []):
        ledger.release_sysctl(key, owner(pod))
    for key in ("forwards", "forward_sysctls", "forward_backend"):
        record.pop(key, None)
    return actions


def retarget(host, pod: str, record: dict) -> list[str]:
    """pod_network's hook after it changed a pod: aim the pod's forwards at its address now.

    A pod that moved (another address, another network with ipMasq) would otherwise leave its
    host ports pointing at an address the next pod may get. A pod left with no address loses
    its forwards. Returns what was done; the caller saves the record and the ledger.
    """
    forwards = saved(record)
    if not forwards:
        return []
    try:
        attachment = forwardable(record)
    except PodnetError:
        remove_pod_forwards(host, pod, record)
        return [f"remove the forwards of pod {pod}: it has no network with an address left"]
    address = attachment["address"].split("/")[0]
    subnet = attachment["subnet"]
    keys = [ROUTE_LOCALNET.format(ifname=i) for i in localnet_ifnames(attachment)]
    if all(f.address == address and f.subnet == subnet for f in forwards) and set(keys) == set(
        record.get("forward_sysctls", [])
    ):
        return []
    names = [item["name"] for item in record["forwards"]]
    moved = [
        PortForward(f.pod, f.protocol, f.host_ip, f.host_port, address, f.port, subnet)
        for f in forwards
    ]
    for key in keys:
        host.ledger.acquire_sysctl(key, "1", owner(pod))
    _backend_named(record.get("forward_backend") or host.nat.name).ensure_forwards(pod, moved)
    for key in record.get("forward_sysctls", []):
        if key not in keys:
            host.ledger.release_sysctl(key, owner(pod))
    record["forwards"] = [as_dict(name, f) for name, f in zip(names, moved, strict=True)]
    record["forward_sysctls"] = keys
    return [f"aim the forwards of pod {pod} at {address}"]


def remove_pod_forwards(host, pod: str, record: dict) -> list[str]:
    """pod_network's teardown hook: remove the pod's forwards; host is its HostSide (the
    ledger is saved by the caller). A pod that never had forwards costs nothing."""
    if not record.get("forward_backend") and not record.get("forward_sysctls"):
        return []
    return _remove(_backends_of(record, "auto"), pod, record, host.ledger)


def run_module(module) -> None:
    """port_forward's body."""
    params = module.params
    forwards = Forwards(params["state_dir"], params["nat_backend"], module.check_mode)
    try:
        if params["state"] == "present":
            outcome = forwards.present(params["pod"], params["ports"], params["forward"])
        else:
            outcome = forwards.absent(params["pod"])
    except PodnetError as exc:
        module.fail_json(msg=str(exc), changed=False)
    except Exception as exc:  # noqa: BLE001 - reported with its traceback, never raised raw
        module.fail_json(msg=f"unexpected error: {exc}", exception=traceback.format_exc())

    result = {
        "changed": outcome.changed,
        "actions": outcome.actions,
        "forwards": outcome.forwards,
    }
    if module._diff:
        header = f"pod {params['pod']} forwards"
        result["diff"] = {
            "before": {"forwards": outcome.before},
            "after": {"forwards": outcome.after},
            "before_header": header,
            "after_header": header,
        }
    module.exit_json(**result)
