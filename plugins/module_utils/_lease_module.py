# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""ipam_lease and ipam_lease_info: host-local leases reserved, released and reclaimed by hand.

The flow is plan (read the lease dir, predict) -> check mode stops -> apply under the lease
dir's lock. Leases are the CNI host-local files, so leases of the host-local binary and of
pod_network are seen, kept and reclaimed alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ansible_collections.podnet.cni.plugins.module_utils._addr import parse_ip
from ansible_collections.podnet.cni.plugins.module_utils._conf import available
from ansible_collections.podnet.cni.plugins.module_utils._errors import IpamError, PodnetError
from ansible_collections.podnet.cni.plugins.module_utils._host_local import (
    Lease,
    LeaseStore,
    StoredLease,
)
from ansible_collections.podnet.cni.plugins.module_utils._ipam import HostLocal
from ansible_collections.podnet.cni.plugins.module_utils._pod_state import PodStore

if TYPE_CHECKING:
    from ansible.module_utils.basic import AnsibleModule
    from netaddr import IPAddress

DEFAULT_IFNAME = "eth0"


@dataclass
class LeaseNetwork:
    """One network's lease dir and, when its conf (or ipam) is known, its host-local IPAM."""

    name: str
    store: LeaseStore
    ipam: HostLocal | None = None


@dataclass
class LeaseRequest:
    """The module's options, checked: what to reserve, release or reclaim, and where."""

    state: str = "present"
    network: str | None = None
    ipam: dict | None = None
    owner: str | None = None
    ifname: str | None = None
    address: IPAddress | None = None
    gc: bool = False
    live_owners: list[str] | None = None
    conf_dir: str = "/etc/rkt/net.d"
    data_dir: str = "/var/lib/cni/networks"
    state_dir: str = "/var/lib/podnet"


@dataclass
class LeasePlan:
    """What a run finds and would do; apply() carries it out."""

    request: LeaseRequest
    networks: list[LeaseNetwork]
    before: dict[str, list[StoredLease]]
    reserve: list[Lease] = field(default_factory=list)
    held: list[Lease] = field(default_factory=list)
    release: dict[str, list[StoredLease]] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.reserve) or any(self.release.values())

    def actions(self) -> list[str]:
        reserved = [
            f"reserve {lease.address} for {lease.owner} ({lease.ifname}) on {lease.network}"
            for lease in self.reserve
        ]
        released = [
            f"release {lease.address} of {lease.owner} ({lease.ifname or '-'}) on {network}"
            for network, leases in self.release.items()
            for lease in leases
        ]
        return reserved + released

    def after(self) -> dict[str, list[StoredLease]]:
        """The leases each network would hold once the plan is applied (check mode's view)."""
        after = {}
        for name, leases in self.before.items():
            gone = {lease.address for lease in self.release.get(name, [])}
            kept = [lease for lease in leases if lease.address not in gone]
            kept += [
                StoredLease(lease.address, lease.owner, lease.ifname)
                for lease in self.reserve
                if lease.network == name
            ]
            after[name] = sorted(kept, key=_by_address)
        return after


# --- the request ---------------------------------------------------------------------------


def request_from_params(params: dict) -> LeaseRequest:
    """Check the option combinations and values; every error names the option and the value."""
    where = f'network "{params.get("network")}"' if params.get("network") else "ipam_lease"
    request = LeaseRequest(
        state=params.get("state") or "present",
        network=params.get("network"),
        ipam=params.get("ipam"),
        owner=_one_line(params.get("owner"), "owner", where),
        ifname=_ifname(params.get("ifname"), where),
        gc=bool(params.get("gc")),
        live_owners=params.get("live_owners"),
        conf_dir=params.get("conf_dir") or LeaseRequest.conf_dir,
        data_dir=params.get("data_dir") or LeaseRequest.data_dir,
        state_dir=params.get("state_dir") or LeaseRequest.state_dir,
    )
    if params.get("address") is not None:
        text = params["address"]
        try:
            request.address = parse_ip(text)
        except ValueError:
            raise IpamError(f'{where}: option "address": "{text}" is not an IP address') from None

    if request.ipam is not None and not request.network:
        raise IpamError(
            'option "ipam" needs option "network": the network name is the lease directory'
        )
    if request.live_owners is not None:
        if not request.gc:
            raise IpamError('option "live_owners" is only used with gc=true')
        request.live_owners = [_one_line(o, "live_owners", where) for o in request.live_owners]

    if request.gc:
        for option in ("owner", "address"):
            if params.get(option) is not None:
                raise IpamError(
                    f'option "{option}" ({params[option]}) cannot be combined with gc=true: '
                    "gc releases every lease whose owner is not live"
                )
        return request

    if not request.network:
        raise IpamError('option "network" is required unless gc=true')
    if request.state == "present" and request.owner is None:
        raise IpamError(f'{where}: option "owner" is required to reserve a lease')
    if request.state == "absent" and request.owner is None and request.address is None:
        raise IpamError(f'{where}: option "owner" or "address" is required to release a lease')
    if request.state == "present" and request.ifname is None:
        request.ifname = DEFAULT_IFNAME
    return request


def _one_line(value: object, option: str, where: str) -> str | None:
    """Owners and ifnames are lines of a lease file: one non-empty line each."""
    if value is None:
        return None
    text = str(value).strip()
    if not text or "\n" in text or "\r" in text:
        raise IpamError(f'{where}: option "{option}": {value!r} must be one non-empty line')
    return text


def _ifname(value: object, where: str) -> str | None:
    text = _one_line(value, "ifname", where)
    if text is not None and (len(text) > 15 or "/" in text or any(c.isspace() for c in text)):
        raise IpamError(
            f'{where}: option "ifname": "{text}" is not an interface name '
            "(at most 15 characters, no '/' or spaces)"
        )
    return text


# --- finding the networks ------------------------------------------------------------------


def resolve_network(request: LeaseRequest, need_ipam: bool) -> LeaseNetwork:
    """The named network: from the ipam option, its conf, or (to release only) its lease dir."""
    name = request.network
    if request.ipam is not None:
        return _from_ipam(name, request.ipam, request.data_dir)

    networks, _warnings = available(request.conf_dir)
    netconf = networks.get(name)
    if netconf is not None:
        return _from_ipam(name, netconf.ipam, request.data_dir, f"type {netconf.type}")

    store = LeaseStore(request.data_dir, name)
    if not need_ipam and os.path.isdir(store.directory):
        return LeaseNetwork(name, store)
    known = ", ".join(sorted(networks))
    raise IpamError(
        f'network "{name}": unknown network: no conf of that name in "{request.conf_dir}" '
        f"(known: {known})" + ("" if need_ipam else f' and no lease directory "{store.directory}"')
    )


def _from_ipam(name: str, ipam: dict, data_dir: str, kind: str = "") -> LeaseNetwork:
    what = f" ({kind})" if kind else ""
    if not ipam:
        raise IpamError(f'network "{name}"{what}: has no ipam: it leases no addresses')
    ipam_type = ipam.get("type", "host-local")
    if ipam_type != "host-local":
        raise IpamError(
            f'network "{name}"{what}: field "ipam.type": {ipam_type!r} is not host-local; '
            "ipam_lease manages host-local leases only"
        )
    host_local = HostLocal(name, ipam, data_dir)
    host_local.validate()
    return LeaseNetwork(name, host_local.store, host_local)


def lease_networks(data_dir: str) -> list[str]:
    """Names of the networks that have a lease directory under data_dir."""
    try:
        entries = list(os.scandir(data_dir))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise IpamError(f'data dir "{data_dir}" cannot be read: {exc.strerror}') from None
    return sorted(entry.name for entry in entries if entry.is_dir())


def gc_networks(request: LeaseRequest) -> list[LeaseNetwork]:
    if request.network:
        return [resolve_network(request, need_ipam=False)]
    # Only networks this host's confs define: data_dir may be shared with other CNI runtimes
    # (podman, a kubelet), whose leases are not podnet's to judge.
    known, _warnings = available(request.conf_dir)
    return [
        LeaseNetwork(name, LeaseStore(request.data_dir, name))
        for name in lease_networks(request.data_dir)
        if name in known
    ]


def live_pods(state_dir: str) -> set[str]:
    """Pods with a saved record: pod_network's owners that still exist."""
    return set(PodStore(state_dir).names())


# --- planning ------------------------------------------------------------------------------


def plan(request: LeaseRequest) -> LeasePlan:
    """Everything a run would do, found without writing anything."""
    if request.gc:
        return _plan_gc(request)
    network = resolve_network(request, need_ipam=request.state == "present")
    before = {network.name: network.store.leases()}
    if request.state == "present":
        return _plan_reserve(request, network, before)
    return _plan_release(request, network, before)


def _plan_reserve(
    request: LeaseRequest, network: LeaseNetwork, before: dict[str, list[StoredLease]]
) -> LeasePlan:
    wanted = [str(request.address)] if request.address is not None else None
    predicted = network.store.predict(network.ipam.ranges(), request.owner, request.ifname, wanted)
    held = set(network.store.find(request.owner, request.ifname))
    return LeasePlan(
        request,
        [network],
        before,
        reserve=[lease for lease in predicted if str(lease.address) not in held],
        held=predicted,
    )


def _plan_release(
    request: LeaseRequest, network: LeaseNetwork, before: dict[str, list[StoredLease]]
) -> LeasePlan:
    leases = before[network.name]
    if request.address is not None:
        doomed = [lease for lease in leases if lease.address == request.address]
        for lease in doomed:
            _check_holder(network.name, lease, request.owner, request.ifname)
    else:
        doomed = releasable(leases, request.owner, request.ifname)
    return LeasePlan(request, [network], before, release={network.name: doomed})


def _check_holder(network: str, lease: StoredLease, owner: str | None, ifname: str | None):
    """Releasing an address named with its owner must not take another owner's lease."""
    holder = f"{lease.owner} ({lease.ifname or '-'})"
    if owner is not None and lease.owner != owner:
        raise IpamError(
            f'network "{network}": address "{lease.address}" is leased to {holder}, '
            f'not to owner "{owner}": nothing released'
        )
    if ifname is not None and lease.ifname not in (ifname, ""):
        raise IpamError(
            f'network "{network}": address "{lease.address}" is leased to {holder}, '
            f'not on ifname "{ifname}": nothing released'
        )


def releasable(leases: list[StoredLease], owner: str, ifname: str | None) -> list[StoredLease]:
    """The leases LeaseStore.release(owner, ifname) deletes: legacy files only as a fallback."""
    if ifname is None:
        return [lease for lease in leases if lease.owner == owner]
    exact = [lease for lease in leases if (lease.owner, lease.ifname) == (owner, ifname)]
    return exact or [lease for lease in leases if (lease.owner, lease.ifname) == (owner, "")]


def _plan_gc(request: LeaseRequest) -> LeasePlan:
    pods_dir = PodStore(request.state_dir).pods_dir
    if request.live_owners is None and not os.path.isdir(pods_dir):
        raise IpamError(
            f'gc: state_dir "{request.state_dir}" has no pod records ("{pods_dir}" is missing) '
            "and live_owners is not given: refusing to release every lease; "
            "pass live_owners (an empty list means no owner is live)"
        )
    live = set(request.live_owners or []) | live_pods(request.state_dir)
    networks = gc_networks(request)
    before = {network.name: network.store.leases() for network in networks}
    release = {
        name: [lease for lease in leases if lease.owner not in live]
        for name, leases in before.items()
    }
    return LeasePlan(request, networks, before, release=release)


# --- applying ------------------------------------------------------------------------------


def apply(lease_plan: LeasePlan) -> tuple[list[Lease], dict[str, list[StoredLease]]]:
    """Carry the plan out under each lease dir's lock; returns (reserved, released)."""
    request = lease_plan.request
    released: dict[str, list[StoredLease]] = {}
    reserved = lease_plan.held

    for network in lease_plan.networks:
        doomed = lease_plan.release.get(network.name, [])
        if request.gc:
            gone: set[str] = set()
            for owner in sorted({lease.owner for lease in doomed}):
                gone.update(network.store.release(owner))
        elif request.address is not None:
            gone = {str(lease.address) for lease in doomed}
            gone = {address for address in gone if network.store.release_address(address)}
        elif doomed:
            gone = set(network.store.release(request.owner, request.ifname))
        else:
            gone = set()
        released[network.name] = [lease for lease in doomed if str(lease.address) in gone]

    if lease_plan.reserve:
        (network,) = lease_plan.networks
        wanted = [str(request.address)] if request.address is not None else None
        reserved = network.store.allocate(
            network.ipam.ranges(), request.owner, request.ifname, wanted
        )
    return reserved, released


# --- reporting -----------------------------------------------------------------------------


def lease_dict(lease: Lease | StoredLease, network: str, live: bool | None = None) -> dict:
    shown = {
        "address": str(lease.address),
        "owner": lease.owner,
        "ifname": lease.ifname,
        "network": network,
    }
    if live is not None:
        shown["live"] = live
    return shown


def render(leases: list[StoredLease]) -> str:
    """A lease dir as text, one lease a line, for a readable diff."""
    return "".join(f"{lease.address} {lease.owner} {lease.ifname or '-'}\n" for lease in leases)


def run_ipam_lease(module: AnsibleModule) -> dict:
    """The ipam_lease module: plan, stop there in check mode, apply, and report."""
    request = request_from_params(module.params)
    lease_plan = plan(request)

    if module.check_mode or not lease_plan.changed:
        reserved, released = lease_plan.held, lease_plan.release
        after = lease_plan.after()
    else:
        reserved, released = apply(lease_plan)
        after = {n.name: n.store.leases() for n in lease_plan.networks}

    result: dict = {
        "changed": lease_plan.changed,
        "actions": lease_plan.actions(),
        "released": [
            lease_dict(lease, name) for name, leases in released.items() for lease in leases
        ],
    }
    if request.gc:
        result["leases"] = [
            lease_dict(lease, name) for name, leases in after.items() for lease in leases
        ]
    elif request.state == "present":
        result["leases"] = [lease_dict(lease, lease.network) for lease in reserved]
    else:
        result["leases"] = _left_to_owner(request, lease_plan, after)

    if module._diff:
        diffs = [
            {
                "before": render(lease_plan.before[n.name]),
                "after": render(after[n.name]),
                "before_header": n.store.directory,
                "after_header": n.store.directory,
            }
            for n in lease_plan.networks
        ]
        result["diff"] = diffs[0] if len(diffs) == 1 else diffs
    return result


def _left_to_owner(
    request: LeaseRequest, lease_plan: LeasePlan, after: dict[str, list[StoredLease]]
) -> list[dict]:
    """After a release: what the owner (or the released address's holder) still holds."""
    (network,) = lease_plan.networks
    owners = {request.owner} if request.owner else set()
    owners |= {lease.owner for lease in lease_plan.release.get(network.name, [])}
    return [
        lease_dict(lease, network.name) for lease in after[network.name] if lease.owner in owners
    ]


def describe_leases(
    data_dir: str, state_dir: str, conf_dir: str, network: str | None = None
) -> tuple[list[str], list[dict]]:
    """(networks, leases): every lease of one network or of all under data_dir, owner live?"""
    live = live_pods(state_dir)
    if network:
        request = LeaseRequest(network=network, conf_dir=conf_dir, data_dir=data_dir)
        try:
            stores = [resolve_network(request, need_ipam=False).store]
        except PodnetError:
            # An unknown or unreadable conf does not hide leases: read <data_dir>/<network>.
            stores = [LeaseStore(data_dir, network)]
    else:
        stores = [LeaseStore(data_dir, name) for name in lease_networks(data_dir)]
    leases = [
        lease_dict(lease, store.network, lease.owner in live)
        for store in stores
        for lease in store.leases()
    ]
    return [store.network for store in stores], leases


def run_ipam_lease_info(module: AnsibleModule) -> dict:
    """The ipam_lease_info module: read only, so check mode changes nothing either."""
    params = module.params
    networks, leases = describe_leases(
        params["data_dir"], params["state_dir"], params["conf_dir"], params["network"]
    )
    return {"changed": False, "networks": networks, "leases": leases}


def _by_address(lease: StoredLease) -> tuple:
    return (lease.address.version, lease.address)
