# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""Masquerade with nftables: one table, a pod is one tagged map element, one transaction a change.

Layout (family inet, so IPv6 maps and rules can join the same table later):

    table inet podnet
      map masq_pods { type ipv4_addr : verdict }
          10.99.0.2 comment "pod=P net=N" : jump masq_0a630000_24
      chain postrouting (nat, srcnat)
          ip daddr 224.0.0.0/4 return
          ip saddr vmap @masq_pods
      chain masq_0a630000_24            (one per pod subnet, named after it)
          ip daddr 10.99.0.0/24 return
          masquerade

A hash lookup on the source address keeps the packet path constant however many pods there are,
and the few per-subnet chains stay short. An interval set of `address . subnet` would do the
same with one chain, but deleting from it removes whatever element the key overlaps. The element
comment is the tag that finds a pod without its address. Port forwarding will add its own maps
and prerouting/output chains here. The table is deleted when no element is left.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field

from netaddr import IPAddress, IPNetwork

from ansible_collections.podnet.cni.plugins.module_utils._command import run
from ansible_collections.podnet.cni.plugins.module_utils._errors import CommandError, PodnetError
from ansible_collections.podnet.cni.plugins.module_utils._nat import (
    MULTICAST_V4,
    Masquerade,
    check_tag_name,
    masquerade_target,
    nat_lock,
)

FAMILY = "inet"
TABLE = "podnet"
WHERE = f"{FAMILY} {TABLE}"
PODS = "masq_pods"
POSTROUTING = "postrouting"

# The kernel keeps at most 128 bytes of comment per element.
COMMENT_MAX = 128

_TAG = re.compile(r"pod=(\S+) net=(\S+)")
_SUBNET_CHAIN = re.compile(r"masq_([0-9a-f]{8})_([0-9]{1,2})")
_POSTROUTING_HOOK = {"type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}


def _daddr_is(subnet: str) -> dict:
    """`ip daddr <subnet>` as `nft -j` lists it: a /32 shows as a bare address."""
    network = IPNetwork(subnet)
    right = (
        str(network.ip)
        if network.prefixlen == 32
        else {"prefix": {"addr": str(network.ip), "len": network.prefixlen}}
    )
    left = {"payload": {"protocol": "ip", "field": "daddr"}}
    return {"match": {"op": "==", "left": left, "right": right}}


# Rules as text that creates them, and as `nft -j` lists them back.
_POSTROUTING_RULES = [
    (f"ip daddr {MULTICAST_V4} return", [_daddr_is(MULTICAST_V4), {"return": None}]),
    (
        f"ip saddr vmap @{PODS}",
        [{"vmap": {"key": {"payload": {"protocol": "ip", "field": "saddr"}}, "data": f"@{PODS}"}}],
    ),
]


def _subnet_rules(subnet: str) -> list[tuple[str, list]]:
    return [
        (f"ip daddr {subnet} return", [_daddr_is(subnet), {"return": None}]),
        ("masquerade", [{"masquerade": None}]),
    ]


def subnet_chain(subnet: str) -> str:
    """The chain of one pod subnet: 10.99.0.0/24 -> masq_0a630000_24."""
    network = IPNetwork(subnet)
    return f"masq_{int(network.ip):08x}_{network.prefixlen}"


def chain_subnet(chain: str) -> str | None:
    """The subnet a chain name stands for, None when it is not a subnet chain."""
    found = _SUBNET_CHAIN.fullmatch(chain)
    if not found or int(found.group(2)) > 32:
        return None
    network = IPNetwork(f"{IPAddress(int(found.group(1), 16))}/{found.group(2)}")
    return str(network) if network.ip == network.network else None


def tag(pod: str, network: str) -> str:
    """The comment that marks a pod's element on one network."""
    check_tag_name("pod", pod)
    check_tag_name("network", network)
    comment = f"pod={pod} net={network}"
    if len(comment) > COMMENT_MAX:
        raise PodnetError(
            f'masquerade for pod "{pod}" on network "{network}": the tag "{comment}" is longer '
            f"than the {COMMENT_MAX} characters nftables keeps in an element comment"
        )
    return comment


def parse_tag(comment: str | None) -> tuple[str, str] | None:
    """(pod, network) from an element comment, None when it is not one of our tags."""
    found = _TAG.fullmatch(comment or "")
    return (found.group(1), found.group(2)) if found else None


@dataclass
class TableState:
    """The podnet table as listed: tagged pods, subnet chains, and what is not as rendered."""

    pods: dict[str, tuple[str, str]] = field(default_factory=dict)  # address: (subnet, tag)
    chains: set[str] = field(default_factory=set)
    targets: Counter = field(default_factory=Counter)  # chain: elements jumping there
    elements: int = 0
    drift: list[str] = field(default_factory=list)

    @property
    def sound(self) -> bool:
        return not self.drift


def parse_table(listing: dict) -> TableState | None:
    """Read `nft -j list table inet podnet` output; None when the listing has no such table."""
    objects = listing.get("nftables", [])
    if not any(_is_our_table(item.get("table")) for item in objects):
        return None

    state = TableState()
    rules: dict[str, list] = {}
    seen_pods = seen_postrouting = False
    for item in objects:
        kind, body = next(iter(item.items()))
        name = body.get("name") if isinstance(body, dict) else None
        if kind in ("metainfo", "table"):
            continue
        if kind == "map" and name == PODS:
            seen_pods = True
            _read_pods(state, body)
        elif kind == "chain" and name == POSTROUTING:
            seen_postrouting = True
            if any(body.get(key) != value for key, value in _POSTROUTING_HOOK.items()):
                state.drift.append(f'chain "{name}" has the wrong hook or policy')
        elif kind == "chain" and chain_subnet(name or "") and "hook" not in body:
            state.chains.add(name)
        elif kind == "rule":
            rules.setdefault(body.get("chain"), []).append(body.get("expr"))
        else:
            state.drift.append(f'{kind} "{name}" does not belong in the table')
            state.elements += len(body.get("elem", [])) if isinstance(body, dict) else 0

    if not seen_pods:
        state.drift.append(f'map "{PODS}" is missing')
    if not seen_postrouting:
        state.drift.append(f'chain "{POSTROUTING}" is missing')
    wanted = {POSTROUTING: _POSTROUTING_RULES}
    wanted.update({chain: _subnet_rules(chain_subnet(chain)) for chain in state.chains})
    for chain in sorted(set(rules) | set(wanted), key=str):
        if rules.get(chain, []) != [expr for _text, expr in wanted.get(chain, [])]:
            state.drift.append(f'chain "{chain}" does not hold the expected rules')
    for chain in sorted(state.chains - set(state.targets)):
        state.drift.append(f'chain "{chain}" is left over: no pod jumps there')
    return state


def _is_our_table(body: dict | None) -> bool:
    return bool(body) and body.get("family") == FAMILY and body.get("name") == TABLE


def _read_pods(state: TableState, body: dict) -> None:
    if body.get("type") != "ipv4_addr" or body.get("map") != "verdict" or body.get("flags"):
        state.drift.append(f'map "{PODS}" has the wrong type or flags')

    for element in body.get("elem", []):
        state.elements += 1
        key, verdict = element if isinstance(element, list) and len(element) == 2 else (None, None)
        if isinstance(key, dict) and "elem" in key:
            address, comment = key["elem"].get("val"), key["elem"].get("comment")
        else:
            address, comment = key, None
        target = verdict.get("jump", {}).get("target") if isinstance(verdict, dict) else None
        if target:
            state.targets[target] += 1
        subnet = chain_subnet(target or "")
        if not isinstance(address, str) or subnet is None or parse_tag(comment) is None:
            state.drift.append(f'map "{PODS}" holds an element that is not a tagged pod: {element}')
            continue
        state.pods[address] = (subnet, comment)


def render_table(pods: dict[str, tuple[str, str]]) -> list[str]:
    """Commands that build the whole table holding these pods (the table must not exist)."""
    lines = [
        f"add table {WHERE}",
        f"add map {WHERE} {PODS} {{ type ipv4_addr : verdict; }}",
        f"add chain {WHERE} {POSTROUTING} "
        "{ type nat hook postrouting priority srcnat; policy accept; }",
    ]
    for subnet in sorted({subnet for subnet, _comment in pods.values()}, key=IPNetwork):
        lines += render_subnet_chain(subnet)
    lines += [f"add rule {WHERE} {POSTROUTING} {text}" for text, _expr in _POSTROUTING_RULES]
    if pods:
        lines.append(render_add(pods))
    return lines


def render_subnet_chain(subnet: str) -> list[str]:
    chain = subnet_chain(subnet)
    return [f"add chain {WHERE} {chain}"] + [
        f"add rule {WHERE} {chain} {text}" for text, _expr in _subnet_rules(subnet)
    ]


def render_add(pods: dict[str, tuple[str, str]]) -> str:
    items = [
        f'{address} comment "{comment}" : jump {subnet_chain(subnet)}'
        for address, (subnet, comment) in sorted(pods.items(), key=lambda item: IPAddress(item[0]))
    ]
    return f"add element {WHERE} {PODS} {{ {', '.join(items)} }}"


def render_delete(addresses: list[str]) -> str:
    return f"delete element {WHERE} {PODS} {{ {', '.join(addresses)} }}"


def _unused_chains(state: TableState, leaving: list[str], arriving: str | None) -> list[str]:
    """Subnet chains nothing jumps to once the leaving elements are gone."""
    targets = state.targets.copy()
    targets.subtract(subnet_chain(state.pods[address][0]) for address in leaving)
    if arriving:
        targets[arriving] += 1
    return sorted(chain for chain in state.chains if targets[chain] <= 0)


def plan_ensure(state: TableState | None, address: str, subnet: str, comment: str) -> list[str]:
    """Commands that make (address, subnet) masqueraded under this tag; [] when it already is.

    An address belongs to one pod: an element for it under another tag is stale (a pod whose
    state was lost) and is replaced, or it would keep deciding that address's fate.
    """
    if state is None or not state.sound:
        pods = {a: entry for a, entry in (state.pods if state else {}).items() if a != address}
        pods[address] = (subnet, comment)
        return [f"add table {WHERE}", f"delete table {WHERE}"] + render_table(pods)

    current = state.pods.get(address)
    if current == (subnet, comment):
        return []

    chain = subnet_chain(subnet)
    lines = [] if chain in state.chains else render_subnet_chain(subnet)
    if current is not None:
        lines.append(render_delete([address]))
    lines.append(render_add({address: (subnet, comment)}))
    leaving = [address] if current is not None else []
    lines += [f"delete chain {WHERE} {c}" for c in _unused_chains(state, leaving, chain)]
    return lines


def plan_remove(state: TableState | None, pod: str, network: str | None) -> list[str]:
    """Commands that drop a pod's elements by tag; the whole table when nothing else is left."""
    if state is None:
        return []

    def ours(comment: str) -> bool:
        owner = parse_tag(comment)
        return owner is not None and owner[0] == pod and network in (None, owner[1])

    leaving = [address for address, (_subnet, comment) in state.pods.items() if ours(comment)]
    if state.elements - len(leaving) <= 0:
        return [f"delete table {WHERE}"]
    if not leaving:
        return []
    lines = [render_delete(leaving)]
    return lines + [f"delete chain {WHERE} {c}" for c in _unused_chains(state, leaving, None)]


def records(state: TableState | None) -> list[Masquerade]:
    if state is None:
        return []
    found = [
        Masquerade(*parse_tag(comment), address, subnet)
        for address, (subnet, comment) in state.pods.items()
    ]
    return sorted(found, key=lambda m: (m.pod, m.network, IPAddress(m.address)))


class NftNat:
    """The nftables backend; every method acts on the calling thread's network namespace."""

    name = "nftables"

    def __init__(self, nft: str = "nft") -> None:
        self.nft = nft

    def ensure_masquerade(self, pod: str, network: str, address: str, subnet: str) -> bool:
        comment = tag(pod, network)
        address, subnet = masquerade_target(address, subnet)
        with nat_lock():
            script = plan_ensure(self._read(), address, subnet, comment)
            if not script:
                return False
            self._apply(script, f'masquerade {address} for pod "{pod}" on network "{network}"')
        return True

    def has_masquerade(self, pod: str, network: str, address: str, subnet: str) -> bool:
        comment = tag(pod, network)
        address, subnet = masquerade_target(address, subnet)
        return not plan_ensure(self._read(), address, subnet, comment)

    def remove_masquerade(self, pod: str, network: str | None = None) -> bool:
        with nat_lock():
            script = plan_remove(self._read(), pod, network)
            if not script:
                return False
            on = f' on network "{network}"' if network else ""
            self._apply(script, f'remove the masquerade of pod "{pod}"{on}')
        return True

    def masquerades(self) -> list[Masquerade]:
        return records(self._read())

    def _read(self) -> TableState | None:
        argv = [self.nft, "-j", "list", "table", FAMILY, TABLE]
        rc, out, err = run(argv, check=False)
        if rc != 0:
            if not self._table_exists():
                return None
            raise CommandError(argv, rc, out, err)
        return parse_table(json.loads(out))

    def _table_exists(self) -> bool:
        _rc, out, _err = run([self.nft, "-j", "list", "tables", FAMILY])
        listing = json.loads(out or "{}")
        return any(_is_our_table(item.get("table")) for item in listing.get("nftables", []))

    def _apply(self, script: list[str], what: str) -> None:
        try:
            run([self.nft, "-f", "-"], stdin="\n".join(script) + "\n")
        except CommandError as exc:
            raise PodnetError(f"{what}: nftables refused the change: {exc.stderr.strip()}") from exc
