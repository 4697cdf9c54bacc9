# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""Masquerade with iptables, the way the CNI plugins lay it out, changed one restore at a time.

Per pod and network, in table nat (C = name: "<network>" id: "<pod>"):

    -N CNI-<sha512(network + pod)>   (28 characters whatever the names' length)
    -A CNI-…      -d <subnet>      -m comment --comment C -j ACCEPT
    -A CNI-…      ! -d 224.0.0.0/4 -m comment --comment C -j MASQUERADE
    -A POSTROUTING -s <address>/32 -m comment --comment C -j CNI-…

Every rule carries the tag, so a pod's rules are found in `iptables-save` without its address.
Changes go through `iptables-restore --noflush`: one commit, never a half-built chain.

Port forwards (F = forward pod: "<pod>", J = podnet port forwards):

    -A PREROUTING  -m addrtype --dst-type LOCAL -m comment --comment J -j PODNET-FWD-DNAT
    -A OUTPUT      -m addrtype --dst-type LOCAL -m comment --comment J -j PODNET-FWD-DNAT
    -A POSTROUTING -m conntrack --ctstate DNAT -m comment --comment J -j PODNET-FWD-SNAT
    -A PODNET-FWD-DNAT [-d <host ip>/32] -p tcp -m tcp --dport 8080 -m comment --comment F
       -j DNAT --to-destination <pod ip>:80
    -A PODNET-FWD-SNAT -s 127.0.0.1/32 -d <pod ip>/32 -p tcp -m tcp --dport 80 ... -j MASQUERADE
    -A PODNET-FWD-SNAT -s <pod subnet> -d <pod ip>/32 -p tcp -m tcp --dport 80 ... -j MASQUERADE

Unlike nftables' maps this is one rule per forward on the packet path; it is the fallback.
The shared chains and their jumps go when the last forward does.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass

try:
    from netaddr import IPAddress, IPNetwork
except ImportError:  # the module reports it through missing_required_lib
    IPAddress = IPNetwork = None

from ansible_collections.podnet.cni.plugins.module_utils._command import run
from ansible_collections.podnet.cni.plugins.module_utils._errors import CommandError, PodnetError
from ansible_collections.podnet.cni.plugins.module_utils._nat import (
    MULTICAST_V4,
    Masquerade,
    NatBackend,
    PortForward,
    check_tag_name,
    masquerade_tag,
)

TABLE = "nat"
POSTROUTING = "POSTROUTING"
BUILTIN_CHAINS = ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")
CHAIN_PREFIX = "CNI-"
CHAIN_LEN = 28

# xt_comment keeps 255 characters.
COMMENT_MAX = 255

_COMMENT = re.compile(r'name: "([^"]*)" id: "([^"]*)"')


def chain_name(network: str, pod: str) -> str:
    """The CNI chain name: fixed length, so long network names stay valid (rkt #2314)."""
    digest = hashlib.sha512((network + pod).encode()).hexdigest()
    return (CHAIN_PREFIX + digest)[:CHAIN_LEN]


def tag(pod: str, network: str) -> str:
    """The rule comment that marks a pod's rules on one network (the CNI plugins' format)."""
    comment = f'name: "{network}" id: "{pod}"'
    return masquerade_tag(pod, network, comment, COMMENT_MAX, "iptables")


def parse_tag(comment: str | None) -> tuple[str, str] | None:
    """(pod, network) from a rule comment, None when it is not a pod tag."""
    found = _COMMENT.fullmatch(comment or "")
    return (found.group(2), found.group(1)) if found else None


@dataclass(frozen=True)
class Rule:
    """One `-A <chain> <args>` line of iptables-save, split the way the shell would."""

    chain: str
    args: tuple[str, ...]

    def option(self, name: str) -> str | None:
        args = self.args
        for index, token in enumerate(args[:-1]):
            if token == name and (index == 0 or args[index - 1] != "!"):
                return args[index + 1]
        return None

    @property
    def comment(self) -> str | None:
        return self.option("--comment")

    @property
    def target(self) -> str | None:
        return self.option("-j")

    @property
    def source(self) -> str | None:
        return self.option("-s")


@dataclass
class NatTable:
    """The nat table as iptables-save shows it."""

    chains: list[str]
    rules: list[Rule]

    def rules_in(self, chain: str) -> list[Rule]:
        return [rule for rule in self.rules if rule.chain == chain]


def parse_save(text: str) -> NatTable:
    """Parse `iptables-save -t nat` output (comments and counters ignored)."""
    chains, rules = [], []
    for line in text.splitlines():
        if line.startswith(":"):
            chains.append(line[1:].split()[0])
        elif line.startswith("-A "):
            tokens = shlex.split(line)
            rules.append(Rule(tokens[1], tuple(tokens[2:])))
    return NatTable(chains, rules)


def accept_args(subnet: str, comment: str) -> tuple[str, ...]:
    return ("-d", subnet, "-m", "comment", "--comment", comment, "-j", "ACCEPT")


def masquerade_args(comment: str) -> tuple[str, ...]:
    return ("!", "-d", MULTICAST_V4, "-m", "comment", "--comment", comment, "-j", "MASQUERADE")


def jump_args(address: str, chain: str, comment: str) -> tuple[str, ...]:
    return ("-s", f"{address}/32", "-m", "comment", "--comment", comment, "-j", chain)


def render(command: str, chain: str, args: tuple[str, ...]) -> str:
    """One restore line, quoting the way iptables-restore reads it back."""
    return " ".join([command, chain, *(_quote(token) for token in args)])


def _quote(token: str) -> str:
    if token and not any(char in token for char in " \"'\\\t"):
        return token
    return '"' + token.replace("\\", "\\\\").replace('"', '\\"') + '"'


def plan_ensure(table: NatTable, pod: str, network: str, address: str, subnet: str) -> list[str]:
    """Restore lines that make the masquerade whole; [] when it already is.

    Other addresses of the same pod and network share the chain (one ACCEPT per subnet, as
    CNI does). A jump for this address under another tag is stale (a pod whose state was
    lost): it goes, and so does its chain once nothing jumps there.
    """
    comment = tag(pod, network)
    chain = chain_name(network, pod)
    lines = []

    present = [rule.args for rule in table.rules_in(chain)]
    accepts = [args for args in present if args[-1] == "ACCEPT" and comment in args]
    wanted = list(dict.fromkeys([*accepts, accept_args(subnet, comment)]))
    wanted.append(masquerade_args(comment))
    if chain not in table.chains or present != wanted:
        lines.append(f":{chain} - [0:0]")
        lines += [render("-A", chain, args) for args in wanted]

    jump = jump_args(address, chain, comment)
    postrouting = table.rules_in(POSTROUTING)
    exact = [rule for rule in postrouting if rule.args == jump]
    stale = [
        rule
        for rule in postrouting
        if rule.source == f"{address}/32"
        and rule.args != jump
        and parse_tag(rule.comment) is not None
    ]
    lines += [render("-D", POSTROUTING, rule.args) for rule in stale]
    lines += [render("-D", POSTROUTING, jump) for _extra in exact[1:]]
    if not exact:
        lines.append(render("-A", POSTROUTING, jump))

    leaving = set(stale)
    for orphan in sorted({rule.target for rule in stale} - {chain, None}):
        still_used = any(r.target == orphan and r not in leaving for r in table.rules)
        if orphan not in BUILTIN_CHAINS and not still_used:
            lines += [f"-F {orphan}", f"-X {orphan}"]
    return lines


def plan_remove(table: NatTable, pod: str, network: str | None) -> list[str]:
    """Restore lines that drop a pod's rules and chains found by tag (or by chain name)."""

    def ours(rule: Rule) -> bool:
        owner = parse_tag(rule.comment)
        return owner is not None and owner[0] == pod and network in (None, owner[1])

    chains = {rule.chain for rule in table.rules if ours(rule)}
    chains |= {rule.target for rule in table.rules if ours(rule) and rule.chain in BUILTIN_CHAINS}
    if network is not None and chain_name(network, pod) in table.chains:
        chains.add(chain_name(network, pod))
    chains = {name for name in chains if name and name not in BUILTIN_CHAINS}

    lines = [
        render("-D", rule.chain, rule.args)
        for rule in table.rules
        if rule.chain not in chains and (ours(rule) or rule.target in chains)
    ]
    for name in sorted(chains):
        lines += [f"-F {name}", f"-X {name}"]
    return lines


def records(table: NatTable) -> list[Masquerade]:
    """Masquerade records per jump; a chain nothing jumps to shows with address None."""
    found = set()
    jumped = set()
    for rule in table.rules_in(POSTROUTING):
        owner = parse_tag(rule.comment)
        if owner is None or not (rule.target or "").startswith(CHAIN_PREFIX):
            continue
        jumped.add(rule.target)
        address = (rule.source or "").removesuffix("/32") or None
        found.add(Masquerade(*owner, address, _subnet_for(table, rule.target, address)))

    for chain in table.chains:
        if chain in jumped or chain in BUILTIN_CHAINS:
            continue
        owners = {parse_tag(rule.comment) for rule in table.rules_in(chain)} - {None}
        for owner in owners:
            found.add(Masquerade(*owner, None, _subnet_for(table, chain, None)))
    return sorted(found, key=lambda m: (m.pod, m.network, m.address or "", m.subnet or ""))


def _subnet_for(table: NatTable, chain: str, address: str | None) -> str | None:
    """The ACCEPT subnet of a chain that holds address (the only one when address is None)."""
    subnets = [
        rule.option("-d")
        for rule in table.rules_in(chain)
        if rule.target == "ACCEPT" and rule.option("-d")
    ]
    if address is None:
        return subnets[0] if len(subnets) == 1 else None
    holding = [subnet for subnet in subnets if IPAddress(address) in IPNetwork(subnet)]
    return holding[0] if holding else None


FORWARD_DNAT = "PODNET-FWD-DNAT"
FORWARD_SNAT = "PODNET-FWD-SNAT"
FORWARD_JUMP_COMMENT = "podnet port forwards"
_FORWARD_COMMENT = re.compile(r'forward pod: "([^"]*)"')
_LOCAL = ("-m", "addrtype", "--dst-type", "LOCAL")
_FORWARD_JUMPS = (
    (
        "PREROUTING",
        (*_LOCAL, "-m", "comment", "--comment", FORWARD_JUMP_COMMENT, "-j", FORWARD_DNAT),
    ),
    ("OUTPUT", (*_LOCAL, "-m", "comment", "--comment", FORWARD_JUMP_COMMENT, "-j", FORWARD_DNAT)),
    (
        POSTROUTING,
        (
            "-m",
            "conntrack",
            "--ctstate",
            "DNAT",
            "-m",
            "comment",
            "--comment",
            FORWARD_JUMP_COMMENT,
            "-j",
            FORWARD_SNAT,
        ),
    ),
)


def forward_tag(pod: str) -> str:
    return f'forward pod: "{check_tag_name("pod", pod)}"'


def parse_forward_tag(comment: str | None) -> str | None:
    found = _FORWARD_COMMENT.fullmatch(comment or "")
    return found.group(1) if found else None


def _port_match(protocol: str, port: int) -> tuple[str, ...]:
    return ("-p", protocol, "-m", protocol, "--dport", str(port))


def dnat_args(forward: PortForward) -> tuple[str, ...]:
    destination = ("-d", f"{forward.host_ip}/32") if forward.host_ip else ()
    return (
        *destination,
        *_port_match(forward.protocol, forward.host_port),
        "-m",
        "comment",
        "--comment",
        forward_tag(forward.pod),
        "-j",
        "DNAT",
        "--to-destination",
        f"{forward.address}:{forward.port}",
    )


def snat_args(forward: PortForward, source: str) -> tuple[str, ...]:
    return (
        "-s",
        source,
        "-d",
        f"{forward.address}/32",
        *_port_match(forward.protocol, forward.port),
        "-m",
        "comment",
        "--comment",
        forward_tag(forward.pod),
        "-j",
        "MASQUERADE",
    )


def forward_rules(forwards: list[PortForward]) -> list[Rule]:
    """The chain rules these forwards need, each once, in order."""
    found = []
    for forward in forwards:
        found.append(Rule(FORWARD_DNAT, dnat_args(forward)))
    for forward in forwards:
        for source in ("127.0.0.1/32", forward.subnet):
            found.append(Rule(FORWARD_SNAT, snat_args(forward, source)))
    return list(dict.fromkeys(found))


def _semantic(rule: Rule) -> tuple:
    """What a rule does, whatever order iptables-save prints its matches in."""
    names = ("-s", "-d", "-p", "--dport", "--comment", "-j", "--to-destination")
    return (rule.chain, *(rule.option(name) for name in names))


def _dnat_key(rule: Rule) -> tuple:
    host_ip = (rule.option("-d") or "").removesuffix("/32") or None
    return (host_ip, rule.option("-p"), rule.option("--dport"))


def plan_forwards(table: NatTable, pod: str, forwards: list[PortForward]) -> list[str]:
    """Restore lines that leave exactly these forwards for pod; [] when the table says so.

    Another pod's DNAT on a wanted host port is stale (the caller refused clashes with pods it
    knows), so it goes with its masquerades, or it would keep taking that port (C06).
    """
    wanted = forward_rules(forwards)
    wanted_keys = {_semantic(rule) for rule in wanted}
    taken = {_dnat_key(Rule(FORWARD_DNAT, dnat_args(f))) for f in forwards}
    ours = [r for r in table.rules if r.chain in (FORWARD_DNAT, FORWARD_SNAT)]

    stale_targets = {
        (r.option("--to-destination"), r.option("-p"), parse_forward_tag(r.comment))
        for r in ours
        if r.chain == FORWARD_DNAT
        and parse_forward_tag(r.comment) not in (None, pod)
        and _dnat_key(r) in taken
    }

    def leaving(rule: Rule) -> bool:
        owner = parse_forward_tag(rule.comment)
        if owner is None:
            return True
        if owner == pod:
            return _semantic(rule) not in wanted_keys
        if rule.chain == FORWARD_DNAT:
            return _dnat_key(rule) in taken
        target = f"{(rule.option('-d') or '').removesuffix('/32')}:{rule.option('--dport')}"
        return (target, rule.option("-p"), owner) in stale_targets

    lines, seen = [], set()
    for rule in ours:
        if leaving(rule) or _semantic(rule) in seen:
            lines.append(render("-D", rule.chain, rule.args))
        else:
            seen.add(_semantic(rule))
    remaining = len(ours) - len(lines)
    missing = [rule for rule in wanted if _semantic(rule) not in seen]

    if remaining + len(missing) == 0:
        return _drop_forward_chains(table) if _has_forward_parts(table) else []
    made = [f":{c} - [0:0]" for c in (FORWARD_DNAT, FORWARD_SNAT) if c not in table.chains]
    lines = made + lines
    for chain, args in _FORWARD_JUMPS:
        present = [r for r in table.rules_in(chain) if r.args == args]
        lines += [render("-D", chain, args) for _extra in present[1:]]
        if not present:
            lines.append(render("-I", chain, args))
    lines += [render("-A", rule.chain, rule.args) for rule in missing]
    return lines


def _has_forward_parts(table: NatTable) -> bool:
    jumps = any(r.target in (FORWARD_DNAT, FORWARD_SNAT) for r in table.rules)
    return jumps or any(chain in table.chains for chain in (FORWARD_DNAT, FORWARD_SNAT))


def _drop_forward_chains(table: NatTable) -> list[str]:
    lines = [
        render("-D", rule.chain, rule.args)
        for rule in table.rules
        if rule.target in (FORWARD_DNAT, FORWARD_SNAT)
        and rule.chain not in (FORWARD_DNAT, FORWARD_SNAT)
    ]
    for chain in (FORWARD_DNAT, FORWARD_SNAT):
        if chain in table.chains:
            lines += [f"-F {chain}", f"-X {chain}"]
    return lines


def forward_records(table: NatTable) -> list[PortForward]:
    """The forwards the DNAT rules show; subnet from the pod's hairpin masquerade."""
    subnets = {}
    for rule in table.rules_in(FORWARD_SNAT):
        source = rule.option("-s")
        if source and source != "127.0.0.1/32":
            key = (rule.option("-d"), rule.option("-p"), rule.option("--dport"))
            subnets[key] = source
    found = []
    for rule in table.rules_in(FORWARD_DNAT):
        pod = parse_forward_tag(rule.comment)
        target = rule.option("--to-destination") or ""
        if pod is None or ":" not in target:
            continue
        address, port = target.rsplit(":", 1)
        host_ip, protocol, host_port = _dnat_key(rule)
        subnet = subnets.get((f"{address}/32", protocol, port), "")
        found.append(
            PortForward(pod, protocol, host_ip, int(host_port), address, int(port), subnet)
        )
    return sorted(found, key=lambda f: (f.pod, f.protocol, f.host_port, f.host_ip or ""))


class IptablesNat(NatBackend):
    """The iptables backend: plans against `iptables-save`, applies with one restore commit."""

    name = "iptables"

    def __init__(self, save: str = "iptables-save", restore: str = "iptables-restore") -> None:
        self.save = save
        self.restore = restore

    def masquerades(self) -> list[Masquerade]:
        return records(self._read())

    def forwards(self) -> list[PortForward]:
        return forward_records(self._read())

    def _plan_masquerade(self, pod: str, network: str, address: str, subnet: str) -> list[str]:
        return plan_ensure(self._read(), pod, network, address, subnet)

    def _plan_unmasquerade(self, pod: str, network: str | None) -> list[str]:
        return plan_remove(self._read(), pod, network)

    def _plan_forwards(self, pod: str, forwards: list[PortForward]) -> list[str]:
        forward_tag(pod)
        return plan_forwards(self._read(), pod, forwards)

    def _read(self) -> NatTable:
        _rc, out, _err = run([self.save, "-t", TABLE])
        return parse_save(out)

    def _apply(self, lines: list[str], what: str) -> None:
        script = "\n".join([f"*{TABLE}", *lines, "COMMIT"]) + "\n"
        try:
            run([self.restore, "-w", "--noflush"], stdin=script)
        except CommandError as exc:
            detail = exc.stderr.strip()
            raise PodnetError(f"{what}: iptables-restore refused the change: {detail}") from exc
