# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""host-local IPAM leases, stored in the CNI host-local layout so every CNI tool sees them.

`<data_dir>/<network>/` holds one file per leased address, named by the address and holding
`<owner>\\r\\n<ifname>`; creating that file with O_EXCL is the reservation itself.
`last_reserved_ip.<set index>` remembers where the sequential walk of a range set stopped, and
an exclusive flock on the empty `lock` file serialises read -> decide -> write with the
host-local binary and with other processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

try:
    from netaddr import AddrFormatError, IPAddress
except ImportError:  # the module reports it through missing_required_lib
    AddrFormatError = IPAddress = None

from ansible_collections.podnet.cni.plugins.module_utils._errors import IpamError

if TYPE_CHECKING:
    from ansible_collections.podnet.cni.plugins.module_utils._conf import Range

LINE_BREAK = "\r\n"
LOCK_NAME = "lock"
LAST_RESERVED_PREFIX = "last_reserved_ip."


@dataclass(frozen=True)
class Lease:
    """An address leased to one interface of a pod on a network."""

    address: IPAddress
    prefixlen: int
    gateway: IPAddress
    owner: str
    ifname: str
    network: str

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefixlen}"


@dataclass(frozen=True)
class StoredLease:
    """A lease file as found on disk; ifname is "" for a legacy owner-only file."""

    address: IPAddress
    owner: str
    ifname: str


@dataclass(frozen=True)
class _Span:
    """The allocatable part of one range, as integers: never network or v4 broadcast."""

    range: Range
    first: int
    last: int

    def __contains__(self, value: int) -> bool:
        return self.first <= value <= self.last


@dataclass
class _RangeSet:
    index: int
    ranges: list[Range]
    spans: list[_Span]
    gateways: set[int]
    version: int
    requested: IPAddress | None = None

    @property
    def text(self) -> str:
        return ",".join(f"{r.start}-{r.end}" for r in self.ranges)

    def span_for(self, address: IPAddress) -> _Span | None:
        if address.version != self.version:
            return None
        value = int(address)
        return next((span for span in self.spans if value in span), None)

    def walk(self, last_reserved: IPAddress | None) -> Iterator[tuple[int, _Span]]:
        """Candidates in CNI order: after the last reserved one, wrapping, gateways skipped."""
        count = len(self.spans)
        start_index, start_value = 0, self.spans[0].first
        held = self.span_for(last_reserved) if last_reserved is not None else None
        if held is not None:
            start_index = self.spans.index(held)
            start_value = int(last_reserved) + 1
            if start_value > held.last:
                start_index = (start_index + 1) % count
                start_value = self.spans[start_index].first

        # One full cycle: the starting span is visited again at the end, up to where we began,
        # so the last reserved address itself is tried last.
        for step in range(count + 1):
            span = self.spans[(start_index + step) % count]
            low = start_value if step == 0 else span.first
            high = start_value - 1 if step == count else span.last
            for value in range(low, high + 1):
                if value not in self.gateways:
                    yield value, span


def _span(rng: Range) -> _Span | None:
    """Clamp a range to its subnet's host addresses; None when nothing is left."""
    subnet = rng.subnet
    if rng.start.version != subnet.version or rng.end.version != subnet.version:
        return None
    first = int(subnet.network) + 1
    last = int(subnet.last) - 1 if subnet.version == 4 else int(subnet.last)
    first = max(first, int(rng.start))
    last = min(last, int(rng.end))
    if first > last:
        return None
    return _Span(rng, first, last)


def _parse_address(network: str, text: str | IPAddress, what: str = "address") -> IPAddress:
    """An address from a pod's IP= argument or a caller; a /prefix is accepted and ignored."""
    try:
        return IPAddress(str(text).strip().split("/", 1)[0])
    except (AddrFormatError, ValueError, TypeError) as exc:
        raise IpamError(f'network "{network}": {what} "{text}" is not an IP address') from exc


def _check_name(network: str, field: str, value: str) -> str:
    """Owner and ifname end up in a two-line file: they must be one non-empty line each."""
    value = str(value).strip()
    if not value or "\r" in value or "\n" in value:
        raise IpamError(f'network "{network}": lease {field} {value!r} must be one non-empty line')
    return value


class LeaseStore:
    """The leases of one network under a host-local data dir."""

    def __init__(self, data_dir: str, network: str) -> None:
        if not network or "/" in network or network in (".", "..") or "\0" in network:
            raise IpamError(f'network "{network}": name cannot be used as a lease directory')
        self.data_dir = data_dir
        self.network = network
        self.directory = os.path.join(data_dir, network)

    # -- reading -------------------------------------------------------------------------

    def leases(self) -> list[StoredLease]:
        """Every lease file of the network, sorted by address."""
        with self._locked(exclusive=False, create=False):
            return self._read_leases()

    def owner_of(self, address: str | IPAddress) -> tuple[str, str] | None:
        """(owner, ifname) holding an address, ifname "" for a legacy file; None when free."""
        with self._locked(exclusive=False, create=False):
            return self._read_owner(_parse_address(self.network, address))

    def find(self, owner: str, ifname: str | None = None) -> list[str]:
        """Addresses (canonical text) leased to owner, on ifname when given; legacy included."""
        with self._locked(exclusive=False, create=False):
            held = self._read_leases()
        return [str(lease.address) for lease in held if _matches(lease, owner, ifname)]

    # -- allocating ----------------------------------------------------------------------

    def allocate(
        self,
        range_sets: list[list[Range]],
        owner: str,
        ifname: str,
        requested: list[str] | None = None,
    ) -> list[Lease]:
        """One address per range set for (owner, ifname); a lease already held is returned."""
        owner, ifname, sets = self._prepare(range_sets, owner, ifname, requested)
        created: list[IPAddress] = []
        with self._locked(exclusive=True, create=True):
            held = self._read_leases()
            try:
                return [
                    self._choose(rset, owner, ifname, held, created, write=True) for rset in sets
                ]
            except BaseException:
                # Addresses taken by earlier sets of this call go back, as CNI ADD does.
                for address in created:
                    with contextlib.suppress(OSError):
                        os.unlink(self._path(address))
                raise

    def predict(
        self,
        range_sets: list[list[Range]],
        owner: str,
        ifname: str,
        requested: list[str] | None = None,
    ) -> list[Lease]:
        """The leases allocate() would return now, writing nothing (check mode)."""
        owner, ifname, sets = self._prepare(range_sets, owner, ifname, requested)
        with self._locked(exclusive=False, create=False):
            held = self._read_leases()
            return [self._choose(rset, owner, ifname, held, [], write=False) for rset in sets]

    # -- releasing -----------------------------------------------------------------------

    def release(self, owner: str, ifname: str | None = None) -> list[str]:
        """Delete every lease of owner (on ifname when given); nothing to delete is success."""
        owner = str(owner).strip()
        if not os.path.isdir(self.directory):
            return []
        with self._locked(exclusive=True, create=True):
            held = self._read_leases()
            if ifname is None:
                doomed = [lease for lease in held if lease.owner == owner]
            else:
                doomed = [lease for lease in held if (lease.owner, lease.ifname) == (owner, ifname)]
                # host-local matches an owner-only legacy file only when no exact lease exists.
                if not doomed:
                    doomed = [lease for lease in held if (lease.owner, lease.ifname) == (owner, "")]

            return [str(lease.address) for lease in doomed if self._unlink(lease.address)]

    def release_address(self, address: str | IPAddress) -> bool:
        """Delete the lease of one address; True if there was one."""
        address = _parse_address(self.network, address)
        if not os.path.isdir(self.directory):
            return False
        with self._locked(exclusive=True, create=True):
            return self._unlink(address)

    # -- the decision --------------------------------------------------------------------

    def _prepare(
        self,
        range_sets: list[list[Range]],
        owner: str,
        ifname: str,
        requested: list[str] | None,
    ) -> tuple[str, str, list[_RangeSet]]:
        """Validate the call and pair each requested address with its range set, no I/O."""
        owner = _check_name(self.network, "owner", owner)
        ifname = _check_name(self.network, "ifname", ifname)
        if not range_sets:
            raise IpamError(f'network "{self.network}": no range sets to allocate from')

        sets = []
        for index, ranges in enumerate(range_sets):
            spans = [span for span in map(_span, ranges) if span is not None]
            version = ranges[0].subnet.version if ranges else 4
            gateways = {int(r.gateway) for r in ranges if r.gateway.version == version}
            sets.append(_RangeSet(index, list(ranges), spans, gateways, version))

        for text in requested or []:
            address = _parse_address(self.network, text, "requested IP address")
            rset = next((s for s in sets if s.span_for(address) is not None), None)
            if rset is None:
                everything = "; ".join(s.text for s in sets)
                raise IpamError(
                    f'network "{self.network}": requested IP address "{address}" '
                    f"is not in any range ({everything})"
                )
            if rset.requested is not None and rset.requested != address:
                raise IpamError(
                    f'network "{self.network}": requested IP addresses "{rset.requested}" and '
                    f'"{address}" are both in range set {rset.text}: one address per range set'
                )
            rset.requested = address
        return owner, ifname, sets

    def _choose(
        self,
        rset: _RangeSet,
        owner: str,
        ifname: str,
        held: list[StoredLease],
        created: list[IPAddress],
        write: bool,
    ) -> Lease:
        """Pick (and when write, reserve) the address of one range set."""
        mine = [
            (lease.address, span)
            for lease in held
            if _matches(lease, owner, ifname) and (span := rset.span_for(lease.address))
        ]
        claim: Callable[[IPAddress], bool] = (
            (lambda address: self._create(address, owner, ifname))
            if write
            else (lambda address: not os.path.lexists(self._path(address)))
        )

        if rset.requested is not None:
            return self._choose_requested(rset, owner, ifname, mine, claim, created, write)

        # A re-run for the same pod interface gets its lease back instead of CNI's error.
        if mine:
            address, span = mine[0]
            return self._lease(address, span, owner, ifname)

        walk = rset.walk(self._last_reserved(rset.index)) if rset.spans else iter(())
        for value, span in walk:
            address = IPAddress(value, rset.version)
            if claim(address):
                if write:
                    created.append(address)
                    self._remember(rset.index, address)
                return self._lease(address, span, owner, ifname)
        raise IpamError(
            f'network "{self.network}": no IP addresses available in range set: {rset.text}'
        )

    def _choose_requested(
        self,
        rset: _RangeSet,
        owner: str,
        ifname: str,
        mine: list[tuple[IPAddress, _Span]],
        claim: Callable[[IPAddress], bool],
        created: list[IPAddress],
        write: bool,
    ) -> Lease:
        address = rset.requested
        span = rset.span_for(address)
        prefix = f'network "{self.network}": requested IP address "{address}"'
        if int(address) in rset.gateways:
            raise IpamError(f"{prefix} is the gateway of range set {rset.text}")
        if mine:
            held_address, held_span = mine[0]
            if held_address == address:
                return self._lease(address, held_span, owner, ifname)
            raise IpamError(
                f"{prefix} is not available: {owner} already holds {held_address} on {ifname}"
            )

        if not claim(address):
            holder = self._read_owner(address)
            raise IpamError(
                f"{prefix} is not available: leased to {holder[0] if holder else 'another owner'}"
            )
        if write:
            created.append(address)
            self._remember(rset.index, address)
        return self._lease(address, span, owner, ifname)

    def _lease(self, address: IPAddress, span: _Span, owner: str, ifname: str) -> Lease:
        return Lease(
            address=address,
            prefixlen=span.range.subnet.prefixlen,
            gateway=span.range.gateway,
            owner=owner,
            ifname=ifname,
            network=self.network,
        )

    # -- the files -----------------------------------------------------------------------

    def _path(self, address: IPAddress) -> str:
        return os.path.join(self.directory, str(address))

    @contextlib.contextmanager
    def _locked(self, exclusive: bool, create: bool) -> Iterator[None]:
        """Hold flock on the lock file; readers go unlocked when there is nothing to lock yet."""
        lock_path = os.path.join(self.directory, LOCK_NAME)
        if create:
            self._make_directory()
            flags = os.O_RDWR | os.O_CREAT
        elif os.path.exists(lock_path):
            flags = os.O_RDONLY
        else:
            yield
            return
        try:
            fd = os.open(lock_path, flags, 0o644)
        except OSError as exc:
            raise IpamError(
                f'network "{self.network}": cannot open lock file "{lock_path}": {exc.strerror}'
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    def _make_directory(self) -> None:
        try:
            os.makedirs(self.data_dir, mode=0o755, exist_ok=True)
            os.mkdir(self.directory, 0o755)
        except FileExistsError:
            return
        except OSError as exc:
            raise IpamError(
                f'network "{self.network}": cannot create lease directory "{self.directory}": '
                f"{exc.strerror}"
            ) from exc
        os.chmod(self.directory, 0o755)  # mkdir's mode is cut by the umask

    def _read_leases(self) -> list[StoredLease]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            try:
                address = IPAddress(name)
            except (AddrFormatError, ValueError):
                continue  # lock, last_reserved_ip.<i> and anything else that is not a lease
            holder = self._read_owner(address, name)
            if holder is not None:
                found.append(StoredLease(address, *holder))
        return sorted(found, key=lambda lease: (lease.address.version, lease.address))

    def _read_owner(self, address: IPAddress, name: str | None = None) -> tuple[str, str] | None:
        path = os.path.join(self.directory, name or str(address))
        try:
            with open(path, encoding="utf-8", errors="replace", newline="") as handle:
                content = handle.read().strip()
        except OSError:
            return None
        owner, _break, ifname = content.partition(LINE_BREAK)
        return owner.strip(), ifname.strip()

    def _create(self, address: IPAddress, owner: str, ifname: str) -> bool:
        """Reserve an address by creating its file; False when the file already exists."""
        path = self._path(address)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as exc:
            raise IpamError(
                f'network "{self.network}": cannot create lease file "{path}": {exc.strerror}'
            ) from exc
        try:
            os.fchmod(fd, 0o644)
            with os.fdopen(fd, "wb", closefd=False) as handle:
                handle.write(f"{owner}{LINE_BREAK}{ifname}".encode())
        except OSError as exc:
            os.close(fd)
            os.unlink(path)
            raise IpamError(
                f'network "{self.network}": cannot write lease file "{path}": {exc.strerror}'
            ) from exc
        os.close(fd)
        return True

    def _unlink(self, address: IPAddress) -> bool:
        """Delete one lease file; False when it was already gone."""
        path = self._path(address)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise IpamError(
                f'network "{self.network}": cannot delete lease file "{path}": {exc.strerror}'
            ) from exc
        return True

    def _last_reserved(self, index: int) -> IPAddress | None:
        path = os.path.join(self.directory, f"{LAST_RESERVED_PREFIX}{index}")
        try:
            with open(path, encoding="utf-8") as handle:
                return IPAddress(handle.read().strip())
        except (OSError, UnicodeDecodeError, AddrFormatError, ValueError):
            return None

    def _remember(self, index: int, address: IPAddress) -> None:
        """Write last_reserved_ip.<index> atomically so a crash never leaves half an address."""
        name = f"{LAST_RESERVED_PREFIX}{index}"
        fd, scratch = tempfile.mkstemp(prefix=f".{name}.", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(str(address))
            os.chmod(scratch, 0o644)
            os.replace(scratch, os.path.join(self.directory, name))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(scratch)
            raise


def _matches(lease: StoredLease, owner: str, ifname: str | None) -> bool:
    """True when a lease file belongs to owner (on ifname); legacy files match any ifname."""
    if lease.owner != str(owner).strip():
        return False
    return ifname is None or lease.ifname in (ifname, "")
