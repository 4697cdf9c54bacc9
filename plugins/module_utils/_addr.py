# Copyright: podnet.cni contributors
# Apache License 2.0 (see LICENSE)
"""Address normalisation with netaddr, so equal addresses never compare as different."""

from __future__ import annotations

try:
    from netaddr import AddrFormatError, IPAddress, IPNetwork
except ImportError:  # the module reports it through missing_required_lib
    AddrFormatError = None
    IPAddress = None
    IPNetwork = None


def parse_ip(text: str) -> IPAddress:
    """Parse one address (v4 or v6); raise ValueError with the text on failure."""
    try:
        return IPAddress(str(text).strip())
    except (AddrFormatError, ValueError, TypeError) as exc:
        raise ValueError(f"{text!r} is not an IP address") from exc


def parse_cidr(text: str) -> IPNetwork:
    """Parse address/prefix; a bare address or bad prefix raises ValueError."""
    if "/" not in str(text):
        raise ValueError(f"{text!r} is not in address/prefix form")
    try:
        return IPNetwork(str(text).strip())
    except (AddrFormatError, ValueError, TypeError) as exc:
        raise ValueError(f"{text!r} is not a CIDR") from exc


def norm_ip(text: str) -> str:
    """Canonical text of an address: compressed IPv6, no leading zeros."""
    return str(parse_ip(text))


def norm_cidr(text: str) -> str:
    """Canonical address/prefix text keeping host bits (an interface address)."""
    net = parse_cidr(text)
    return f"{net.ip}/{net.prefixlen}"


def norm_subnet(text: str) -> str:
    """Canonical network/prefix text with host bits cleared."""
    return str(parse_cidr(text).cidr)


def norm_mac(text: str) -> str:
    """Lower-case colon form of a MAC address."""
    return str(text).strip().lower().replace("-", ":")
