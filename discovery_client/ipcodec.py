"""Binary IP encoding of the discovery payloads (spec §4.4, Go netip MarshalBinary).

Python's ``ipaddress`` has no binary form with zones and never unmaps IPv4-mapped
IPv6 on its own, which is exactly what the wire needs: 4 bytes for IPv4, 16 for
IPv6 (mapped addresses stay 16), 16 + zone name for a zoned IPv6 address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from .constants import IPV4_LEN, IPV6_LEN

Addr = ipaddress.IPv4Address | ipaddress.IPv6Address


class IPDecodeError(ValueError):
    """A binary IP whose length or zone cannot be a netip.Addr."""


def marshal_ip(addr: Addr | None) -> bytes:
    """None stands for Go's zero Addr, which marshals to nothing."""
    if addr is None:
        return b""
    if isinstance(addr, ipaddress.IPv4Address):
        return addr.packed
    zone = addr.scope_id
    return addr.packed + (zone.encode() if zone else b"")


def unmarshal_ip(data: bytes) -> Addr | None:
    """None for the zero address (length 0); IPDecodeError for impossible lengths.

    The reference silently drops bad elements; callers decide whether to skip or fail.
    """
    n = len(data)
    if n == 0:
        return None
    if n == IPV4_LEN:
        return ipaddress.IPv4Address(data)
    if n == IPV6_LEN:
        return ipaddress.IPv6Address(data)
    if n > IPV6_LEN:
        try:
            zone = data[IPV6_LEN:].decode()
            return ipaddress.IPv6Address(f"{ipaddress.IPv6Address(data[:IPV6_LEN])}%{zone}")
        except (UnicodeDecodeError, ValueError) as e:
            raise IPDecodeError(f"invalid IPv6 zone {data[IPV6_LEN:]!r}") from e
    raise IPDecodeError(f"unexpected IP length {n}")


def unmarshal_ips(items: Iterable[bytes]) -> list[Addr]:
    """Keep only real addresses: zero-length entries and bad lengths are dropped (§11)."""
    out: list[Addr] = []
    for raw in items:
        try:
            addr = unmarshal_ip(raw)
        except IPDecodeError:
            continue
        if addr is not None:
            out.append(addr)
    return out
