# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""Which networks a pod joins, in which order and as which ifname (rkt's --net rules)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ansible_collections.podnet.cni.plugins.module_utils._conf import NetConf
from ansible_collections.podnet.cni.plugins.module_utils._errors import PodnetError

SPECIAL_NAMES = ("all", "host", "none")
DEFAULT = "default"
DEFAULT_RESTRICTED = "default-restricted"


@dataclass
class Selected:
    """One network a pod joins: its conf, the CNI_ARGS for it and the pod-side ifname."""

    conf: NetConf
    args: str
    ifname: str


@dataclass
class Selection:
    """The pod's networking: host (no netns), none (loopback only) or contained networks."""

    mode: str
    networks: list[Selected]


def parse_networks(value: object) -> list[tuple[str, str]]:
    """Parse the networks option into (name, args) pairs with rkt's --net grammar and errors.

    Accepts None, rkt's comma string, or a list whose items are such strings or
    {name, args} dicts (args a 'K=V;K=V' string or a dict).
    """
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]

    requested: list[tuple[str, str]] = []
    for item in items:
        if isinstance(item, str):
            requested.extend(_parse_flag(item))
        elif isinstance(item, dict):
            requested.append(_parse_item_dict(item))
        else:
            raise PodnetError(f"networks: {item!r} must be a string NAME[:ARGS] or a dict")

    seen: set[str] = set()
    for name, args in requested:
        if name in seen:
            raise PodnetError(f'found duplicate netname "{name}"')
        seen.add(name)
        if args and name in ("all", "host"):
            raise PodnetError(f'arguments are not supported by special netname "{name}"')
    return requested


def _parse_flag(text: str) -> list[tuple[str, str]]:
    """One --net value: comma-separated NAME or NAME:ARGS items."""
    requested = []
    for item in text.split(","):
        parts = item.split(":")
        name = parts[0]
        if not name:
            raise PodnetError("netname must not be empty")
        if len(parts) > 2:
            shown = " ".join(parts[1:])
            raise PodnetError(f'network "{name}" provided with invalid arguments: [{shown}]')
        requested.append((name, parts[1] if len(parts) == 2 else ""))
    return requested


def _parse_item_dict(item: dict) -> tuple[str, str]:
    unknown = sorted(set(item) - {"name", "args"})
    if unknown:
        raise PodnetError(f"networks: unknown keys {', '.join(map(str, unknown))} in {item!r}")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise PodnetError("netname must not be empty")
    args = item.get("args")
    if args is None:
        return name, ""
    if isinstance(args, str):
        return name, args
    if isinstance(args, dict):
        return name, _render_args(name, args)
    raise PodnetError(f'network "{name}": args {args!r} must be a "K=V;K=V" string or a dict')


def _render_args(name: str, args: dict) -> str:
    pairs = []
    for key, value in args.items():
        key, value = str(key), str(value)
        if not key or any(ch in key for ch in ";=") or ";" in value or "=" in value:
            raise PodnetError(
                f'network "{name}": args pair {key!r}: {value!r} must not contain ";" or "="'
                " and needs a key"
            )
        pairs.append(f"{key}={value}")
    return ";".join(pairs)


def parse_cni_args(args: str) -> dict[str, str]:
    """Split CNI_ARGS 'K=V;K=V' as the CNI library does: every pair exactly one '='."""
    if not args:
        return {}
    parsed: dict[str, str] = {}
    for pair in args.split(";"):
        parts = pair.split("=")
        if len(parts) != 2:
            raise PodnetError(f'ARGS: invalid pair "{pair}"')
        parsed[parts[0]] = parts[1]
    return parsed


def select(
    requested: list[tuple[str, str]],
    available: dict[str, NetConf],
    add_restricted: bool = True,
) -> Selection:
    """Pick the networks for a pod, sorted by conf file name, eth0 first.

    As rkt's documentation says (podnet follows it, not rkt 1.28's code), default-restricted
    joins whenever default is not selected, so a pod can still reach the host's services.
    """
    if not requested:
        requested = [(DEFAULT, "")]
    names = [name for name, _ifname in requested]
    if "host" in names:
        return Selection(mode="host", networks=[])
    if "none" in names:
        return Selection(mode="none", networks=[])

    args = dict(requested)
    missing = [name for name in names if name != "all" and name not in available]
    if "all" in names:
        chosen = list(available)
    else:
        chosen = list(names)
        if add_restricted and DEFAULT not in chosen and DEFAULT_RESTRICTED not in chosen:
            chosen.append(DEFAULT_RESTRICTED)
            if DEFAULT_RESTRICTED not in available:
                missing.append(DEFAULT_RESTRICTED)
    if missing:
        raise PodnetError(f"networks not found: {', '.join(missing)}")

    confs = sorted(
        (available[name] for name in chosen),
        key=lambda conf: (os.fsencode(conf.sort_key), os.fsencode(conf.name)),
    )
    return Selection(
        mode="contained",
        networks=[
            Selected(conf=conf, args=args.get(conf.name, ""), ifname=f"eth{index}")
            for index, conf in enumerate(confs)
        ],
    )
