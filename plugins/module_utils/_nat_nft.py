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
comment is the tag that finds a pod without its address. The table is deleted when no element
is left.

Port forwards live in a table of their own, so that each half checks, repairs and deletes its
table without knowing the other's objects:

    table inet podnet_forward
      map fwd_addr { ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service }
          203.0.113.1 . tcp . 8080 comment "pod=P" : 172.16.28.2 . 80     (host_ip given)
      map fwd_any { inet_proto . inet_service : ipv4_addr . inet_service }
          tcp . 8080 comment "pod=P" : 172.16.28.2 . 80                  (any local address)
      map fwd_snat { ipv4_addr . inet_proto . inet_service : verdict }
          172.16.28.2 . tcp . 80 comment "pod=P" : jump fsnat_ac101c00_24
      chain prerouting (nat, dstnat) / chain output (nat, -100)
          fib daddr type local jump forward_dnat
      chain forward_dnat
          dnat ip to ip daddr . meta l4proto . th dport map @fwd_addr
          dnat ip to meta l4proto . th dport map @fwd_any
      chain postrouting (nat, srcnat)
          ct status dnat ip daddr . meta l4proto . th dport vmap @fwd_snat
      chain fsnat_ac101c00_24           (one per pod subnet)
          ip saddr 127.0.0.1 masquerade          (the host via 127.0.0.1: replies need a route)
          ip saddr 172.16.28.0/24 masquerade     (hairpin: the pod or a neighbour)

Every lookup is one hash probe whatever the number of forwards. A host_ip forward has no
fwd_any element, so 127.0.0.1 and the host's other addresses do not answer for it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field

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


def _postrouting_rules() -> list[tuple[str, list]]:
    """Rules as text that creates them, and as `nft -j` lists them back.

    Built on call, not at import, so that importing without netaddr still reaches
    missing_required_lib.
    """
    return [
        (f"ip daddr {MULTICAST_V4} return", [_daddr_is(MULTICAST_V4), {"return": None}]),
        (
            f"ip saddr vmap @{PODS}",
            [
                {
                    "vmap": {
                        "key": {"payload": {"protocol": "ip", "field": "saddr"}},
                        "data": f"@{PODS}",
                    }
                }
            ],
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
    return masquerade_tag(pod, network, f"pod={pod} net={network}", COMMENT_MAX, "nftables")


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
    wanted = {POSTROUTING: _postrouting_rules()}
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
    lines += [f"add rule {WHERE} {POSTROUTING} {text}" for text, _expr in _postrouting_rules()]
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


# Port forwarding: table inet podnet_forward (see the module docstring).

FORWARD_TABLE = "podnet_forward"
FORWARD_WHERE = f"{FAMILY} {FORWARD_TABLE}"
FWD_ADDR = "fwd_addr"
FWD_ANY = "fwd_any"
FWD_SNAT = "fwd_snat"
FORWARD_DNAT = "forward_dnat"

_FORWARD_TAG = re.compile(r"pod=(\S+)")
_SNAT_CHAIN = re.compile(r"fsnat_([0-9a-f]{8})_([0-9]{1,2})")
_FORWARD_HOOKS = {
    "prerouting": (
        {"type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"},
        "type nat hook prerouting priority dstnat; policy accept;",
    ),
    "output": (
        {"type": "nat", "hook": "output", "prio": -100, "policy": "accept"},
        "type nat hook output priority -100; policy accept;",
    ),
    "postrouting": (
        {"type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"},
        "type nat hook postrouting priority srcnat; policy accept;",
    ),
}
_FORWARD_MAPS = {
    FWD_ADDR: (["ipv4_addr", "inet_proto", "inet_service"], "ipv4_addr . inet_service"),
    FWD_ANY: (["inet_proto", "inet_service"], "ipv4_addr . inet_service"),
    FWD_SNAT: (["ipv4_addr", "inet_proto", "inet_service"], "verdict"),
}

_DADDR = {"payload": {"protocol": "ip", "field": "daddr"}}
_L4PROTO = {"meta": {"key": "l4proto"}}
_DPORT = {"payload": {"protocol": "th", "field": "dport"}}
_LOCAL_JUMP = (
    f"fib daddr type local jump {FORWARD_DNAT}",
    [
        {
            "match": {
                "op": "==",
                "left": {"fib": {"result": "type", "flags": ["daddr"]}},
                "right": "local",
            }
        },
        {"jump": {"target": FORWARD_DNAT}},
    ],
)
_FORWARD_RULES = {
    "prerouting": [_LOCAL_JUMP],
    "output": [_LOCAL_JUMP],
    FORWARD_DNAT: [
        (
            f"dnat ip to ip daddr . meta l4proto . th dport map @{FWD_ADDR}",
            [
                {
                    "dnat": {
                        "family": "ip",
                        "addr": {
                            "map": {
                                "key": {"concat": [_DADDR, _L4PROTO, _DPORT]},
                                "data": f"@{FWD_ADDR}",
                            }
                        },
                    }
                }
            ],
        ),
        (
            f"dnat ip to meta l4proto . th dport map @{FWD_ANY}",
            [
                {
                    "dnat": {
                        "family": "ip",
                        "addr": {
                            "map": {"key": {"concat": [_L4PROTO, _DPORT]}, "data": f"@{FWD_ANY}"}
                        },
                    }
                }
            ],
        ),
    ],
    "postrouting": [
        (
            f"ct status dnat ip daddr . meta l4proto . th dport vmap @{FWD_SNAT}",
            [
                {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}},
                {"vmap": {"key": {"concat": [_DADDR, _L4PROTO, _DPORT]}, "data": f"@{FWD_SNAT}"}},
            ],
        ),
    ],
}


def _saddr_masquerade(subnet: str) -> tuple[str, list]:
    network = IPNetwork(subnet)
    right = (
        str(network.ip)
        if network.prefixlen == 32
        else {"prefix": {"addr": str(network.ip), "len": network.prefixlen}}
    )
    left = {"payload": {"protocol": "ip", "field": "saddr"}}
    return (
        f"ip saddr {subnet} masquerade",
        [{"match": {"op": "==", "left": left, "right": right}}, {"masquerade": None}],
    )


def _snat_rules(subnet: str) -> list[tuple[str, list]]:
    return [_saddr_masquerade("127.0.0.1/32"), _saddr_masquerade(subnet)]


def snat_chain(subnet: str) -> str:
    """The hairpin chain of one pod subnet: 172.16.28.0/24 -> fsnat_ac101c00_24."""
    network = IPNetwork(subnet)
    return f"fsnat_{int(network.ip):08x}_{network.prefixlen}"


def snat_chain_subnet(chain: str) -> str | None:
    found = _SNAT_CHAIN.fullmatch(chain)
    if not found or int(found.group(2)) > 32:
        return None
    network = IPNetwork(f"{IPAddress(int(found.group(1), 16))}/{found.group(2)}")
    return str(network) if network.ip == network.network else None


def forward_tag(pod: str) -> str:
    """The comment that marks every element of one pod's forwards."""
    comment = f"pod={check_tag_name('pod', pod)}"
    if len(comment) > COMMENT_MAX:
        raise PodnetError(
            f'port forward of pod "{pod}": the tag "{comment}" is longer than the '
            f"{COMMENT_MAX} characters nftables keeps in an element comment"
        )
    return comment


def parse_forward_tag(comment: str | None) -> str | None:
    found = _FORWARD_TAG.fullmatch(comment or "")
    return found.group(1) if found else None


@dataclass
class ForwardTable:
    """The forward table as listed: tagged forwards, hairpin chains, and what is not as rendered.

    dnat and snat hold the elements by key: dnat (host_ip, protocol, host_port) ->
    (address, port, pod); snat (address, protocol, port) -> (subnet, pod).
    """

    dnat: dict = field(default_factory=dict)
    snat: dict = field(default_factory=dict)
    chains: set[str] = field(default_factory=set)
    drift: list[str] = field(default_factory=list)

    @property
    def sound(self) -> bool:
        return not self.drift

    def forwards(self) -> list[PortForward]:
        found = []
        for (host_ip, protocol, host_port), (address, port, pod) in self.dnat.items():
            subnet = self.snat.get((address, protocol, port), (None, None))[0]
            found.append(
                PortForward(pod, protocol, host_ip, host_port, address, port, subnet or "")
            )
        return sorted(found, key=_forward_order)


def _forward_order(forward: PortForward) -> tuple:
    return (forward.pod, forward.protocol, forward.host_port, forward.host_ip or "")


def parse_forward_table(listing: dict) -> ForwardTable | None:
    """Read `nft -j list table inet podnet_forward`; None when there is no such table."""
    objects = listing.get("nftables", [])
    if not any(_is_forward_table(item.get("table")) for item in objects):
        return None

    state = ForwardTable()
    rules: dict[str, list] = {}
    seen = set()
    for item in objects:
        kind, body = next(iter(item.items()))
        name = body.get("name") if isinstance(body, dict) else None
        if kind in ("metainfo", "table"):
            continue
        if kind == "map" and name in _FORWARD_MAPS:
            seen.add(name)
            _read_forward_map(state, name, body)
        elif kind == "chain" and name in _FORWARD_HOOKS:
            seen.add(name)
            if any(body.get(key) != value for key, value in _FORWARD_HOOKS[name][0].items()):
                state.drift.append(f'chain "{name}" has the wrong hook or policy')
        elif kind == "chain" and name == FORWARD_DNAT and "hook" not in body:
            seen.add(name)
        elif kind == "chain" and snat_chain_subnet(name or "") and "hook" not in body:
            state.chains.add(name)
        elif kind == "rule":
            rules.setdefault(body.get("chain"), []).append(body.get("expr"))
        else:
            state.drift.append(f'{kind} "{name}" does not belong in the table')

    for name in [*_FORWARD_MAPS, *_FORWARD_HOOKS, FORWARD_DNAT]:
        if name not in seen:
            state.drift.append(f'"{name}" is missing')
    wanted = dict(_FORWARD_RULES)
    wanted.update({chain: _snat_rules(snat_chain_subnet(chain)) for chain in state.chains})
    for chain in sorted(set(rules) | set(wanted), key=str):
        if rules.get(chain, []) != [expr for _text, expr in wanted.get(chain, [])]:
            state.drift.append(f'chain "{chain}" does not hold the expected rules')
    used = {snat_chain(subnet) for subnet, _pod in state.snat.values()}
    for chain in sorted(state.chains - used):
        state.drift.append(f'chain "{chain}" is left over: no forward jumps there')
    for (address, protocol, port), (_subnet, pod) in state.snat.items():
        if not any(
            value == (address, port, pod) and key[1] == protocol
            for key, value in state.dnat.items()
        ):
            state.drift.append(f"hairpin element {address} . {protocol} . {port} has no forward")
    return state


def _is_forward_table(body: dict | None) -> bool:
    return bool(body) and body.get("family") == FAMILY and body.get("name") == FORWARD_TABLE


def _read_forward_map(state: ForwardTable, name: str, body: dict) -> None:
    key_type, value_type = _FORWARD_MAPS[name]
    if body.get("type") != key_type or body.get("map") != value_type or body.get("flags"):
        state.drift.append(f'map "{name}" has the wrong type or flags')
        return

    for element in body.get("elem", []):
        key, value = element if isinstance(element, list) and len(element) == 2 else (None, None)
        comment = None
        if isinstance(key, dict) and "elem" in key:
            key, comment = key["elem"].get("val"), key["elem"].get("comment")
        pod = parse_forward_tag(comment)
        parts = key.get("concat") if isinstance(key, dict) else None
        if name == FWD_ANY and parts:
            parts = [None, *parts]
        try:
            host_ip, protocol, port = parts
            if name == FWD_SNAT:
                target = value["jump"]["target"]
                subnet = snat_chain_subnet(target)
                if pod is None or subnet is None:
                    raise ValueError(target)
                state.snat[(host_ip, protocol, port)] = (subnet, pod)
            else:
                address, pod_port = value["concat"]
                if pod is None:
                    raise ValueError(comment)
                state.dnat[(host_ip, protocol, port)] = (address, pod_port, pod)
        except (TypeError, ValueError, KeyError):
            state.drift.append(f'map "{name}" holds an element that is not a tagged forward')


def _dnat_element(key: tuple, address: str, port: int, pod: str, with_value: bool = True) -> str:
    host_ip, protocol, host_port = key
    text = (
        f"{protocol} . {host_port}" if host_ip is None else f"{host_ip} . {protocol} . {host_port}"
    )
    if not with_value:
        return text
    return f'{text} comment "{forward_tag(pod)}" : {address} . {port}'


def _snat_element(key: tuple, subnet: str, pod: str, with_value: bool = True) -> str:
    address, protocol, port = key
    text = f"{address} . {protocol} . {port}"
    if not with_value:
        return text
    return f'{text} comment "{forward_tag(pod)}" : jump {snat_chain(subnet)}'


def _dnat_map(key: tuple) -> str:
    return FWD_ANY if key[0] is None else FWD_ADDR


def _wanted_elements(forwards: list[PortForward]) -> tuple[dict, dict]:
    dnat = {f.key: (f.address, f.port, f.pod) for f in forwards}
    snat = {(f.address, f.protocol, f.port): (f.subnet, f.pod) for f in forwards}
    return dnat, snat


def render_forward_table(forwards: list[PortForward]) -> list[str]:
    """Commands that build the whole forward table holding these forwards."""
    lines = [f"add table {FORWARD_WHERE}"]
    for name, (key_type, value_type) in _FORWARD_MAPS.items():
        lines.append(
            f"add map {FORWARD_WHERE} {name} {{ type {' . '.join(key_type)} : {value_type}; }}"
        )
    for name, (_listed, spec) in _FORWARD_HOOKS.items():
        lines.append(f"add chain {FORWARD_WHERE} {name} {{ {spec} }}")
    lines.append(f"add chain {FORWARD_WHERE} {FORWARD_DNAT}")
    dnat, snat = _wanted_elements(forwards)
    for subnet in sorted({subnet for subnet, _pod in snat.values()}, key=IPNetwork):
        lines += _render_snat_chain(subnet)
    for chain, chain_rules in _FORWARD_RULES.items():
        lines += [f"add rule {FORWARD_WHERE} {chain} {text}" for text, _expr in chain_rules]
    lines += _render_elements(dnat, snat)
    return lines


def _render_snat_chain(subnet: str) -> list[str]:
    chain = snat_chain(subnet)
    return [f"add chain {FORWARD_WHERE} {chain}"] + [
        f"add rule {FORWARD_WHERE} {chain} {text}" for text, _expr in _snat_rules(subnet)
    ]


def _render_elements(dnat: dict, snat: dict, command: str = "add") -> list[str]:
    with_value = command == "add"
    groups: dict[str, list[str]] = {}
    for key, (address, port, pod) in sorted(dnat.items(), key=_key_order):
        groups.setdefault(_dnat_map(key), []).append(
            _dnat_element(key, address, port, pod, with_value)
        )
    for key, (subnet, pod) in sorted(snat.items(), key=_key_order):
        groups.setdefault(FWD_SNAT, []).append(_snat_element(key, subnet, pod, with_value))
    return [
        f"{command} element {FORWARD_WHERE} {name} {{ {', '.join(items)} }}"
        for name, items in groups.items()
    ]


def _key_order(item: tuple) -> tuple:
    first, protocol, port = item[0]
    return (int(IPAddress(first)) if first else -1, protocol, port)


def plan_forwards(state: ForwardTable | None, pod: str, forwards: list[PortForward]) -> list[str]:
    """Commands that leave exactly these forwards for pod; [] when the table already says so.

    An element of another pod on a wanted key is stale (the caller has refused forwards that
    clash with a pod it knows): it goes, or it would keep taking that port (C06).
    """
    dnat, snat = _wanted_elements(forwards)
    current_dnat = state.dnat if state else {}
    current_snat = state.snat if state else {}

    def staying(owned_by_other: bool, key: tuple, wanted: dict) -> bool:
        return owned_by_other and key not in wanted

    keep_dnat = {k: v for k, v in current_dnat.items() if staying(v[2] != pod, k, dnat)}
    keep_snat = {k: v for k, v in current_snat.items() if staying(v[1] != pod, k, snat)}
    after_dnat, after_snat = {**keep_dnat, **dnat}, {**keep_snat, **snat}

    if state is None or not state.sound:
        if not after_dnat:
            return [f"delete table {FORWARD_WHERE}"] if state is not None else []
        reset = [f"add table {FORWARD_WHERE}", f"delete table {FORWARD_WHERE}"]
        return reset + render_forward_table(_as_forwards(after_dnat, after_snat))

    if after_dnat == current_dnat and after_snat == current_snat:
        return []
    if not after_dnat:
        return [f"delete table {FORWARD_WHERE}"]

    gone_dnat = {k: v for k, v in current_dnat.items() if after_dnat.get(k) != v}
    gone_snat = {k: v for k, v in current_snat.items() if after_snat.get(k) != v}
    new_dnat = {k: v for k, v in after_dnat.items() if current_dnat.get(k) != v}
    new_snat = {k: v for k, v in after_snat.items() if current_snat.get(k) != v}
    needed = {snat_chain(subnet) for subnet, _pod in after_snat.values()}

    lines = _render_elements(gone_dnat, gone_snat, "delete")
    for subnet in sorted({s for s, _pod in new_snat.values()}, key=IPNetwork):
        if snat_chain(subnet) not in state.chains:
            lines += _render_snat_chain(subnet)
    lines += _render_elements(new_dnat, new_snat)
    lines += [f"delete chain {FORWARD_WHERE} {c}" for c in sorted(state.chains - needed)]
    return lines


def _as_forwards(dnat: dict, snat: dict) -> list[PortForward]:
    found = []
    for (host_ip, protocol, host_port), (address, port, pod) in dnat.items():
        subnet = snat.get((address, protocol, port), (f"{address}/32", None))[0]
        found.append(PortForward(pod, protocol, host_ip, host_port, address, port, subnet))
    return found


class NftNat(NatBackend):
    """The nftables backend: plans against `nft -j` listings, applies with one `nft -f`."""

    name = "nftables"

    def __init__(self, nft: str = "nft") -> None:
        self.nft = nft

    def masquerades(self) -> list[Masquerade]:
        return records(self._read())

    def forwards(self) -> list[PortForward]:
        state = self._read_forwards()
        return state.forwards() if state else []

    def _plan_masquerade(self, pod: str, network: str, address: str, subnet: str) -> list[str]:
        return plan_ensure(self._read(), address, subnet, tag(pod, network))

    def _plan_unmasquerade(self, pod: str, network: str | None) -> list[str]:
        return plan_remove(self._read(), pod, network)

    def _plan_forwards(self, pod: str, forwards: list[PortForward]) -> list[str]:
        forward_tag(pod)
        return plan_forwards(self._read_forwards(), pod, forwards)

    def _read_forwards(self) -> ForwardTable | None:
        argv = [self.nft, "-j", "list", "table", FAMILY, FORWARD_TABLE]
        rc, out, err = run(argv, check=False)
        if rc != 0:
            _rc, tables, _err = run([self.nft, "-j", "list", "tables", FAMILY])
            listing = json.loads(tables or "{}")
            if not any(_is_forward_table(i.get("table")) for i in listing.get("nftables", [])):
                return None
            raise CommandError(argv, rc, out, err)
        return parse_forward_table(_listing(argv, out))

    def _read(self) -> TableState | None:
        argv = [self.nft, "-j", "list", "table", FAMILY, TABLE]
        rc, out, err = run(argv, check=False)
        if rc != 0:
            if not self._table_exists():
                return None
            raise CommandError(argv, rc, out, err)
        return parse_table(_listing(argv, out))

    def _table_exists(self) -> bool:
        _rc, out, _err = run([self.nft, "-j", "list", "tables", FAMILY])
        listing = json.loads(out or "{}")
        return any(_is_our_table(item.get("table")) for item in listing.get("nftables", []))

    def _apply(self, lines: list[str], what: str) -> None:
        try:
            run([self.nft, "-f", "-"], stdin="\n".join(lines) + "\n")
        except CommandError as exc:
            raise PodnetError(f"{what}: nftables refused the change: {exc.stderr.strip()}") from exc


def _listing(argv: list[str], out: str) -> dict:
    """nft's JSON; some nft releases print broken JSON for tables they cannot fully show (a
    table with `flags owner` in nft 1.0.6), which is an error to report, not a traceback."""
    try:
        return json.loads(out)
    except ValueError as exc:
        raise PodnetError(
            f"nftables: `{' '.join(argv)}` printed a listing that is not valid JSON ({exc}); "
            "the table holds something this nft cannot show"
        ) from exc
