"""IP address and prefix text, parsed and formatted the way Go's net/netip does.

Resource IDs contain addresses (``eth0/::ffff:1.2.3.4/128``), so the text must
match the reference byte for byte. Python's ``ipaddress`` differs in two places
that matter: it writes IPv4-mapped IPv6 addresses in hex (Go keeps them dotted)
and it accepts a netmask or leading zeros after the slash (Go does not).
"""

from __future__ import annotations

import ipaddress
import re

Addr = ipaddress.IPv4Address | ipaddress.IPv6Address
Prefix = ipaddress.IPv4Interface | ipaddress.IPv6Interface

_BITS = re.compile(r"0|[1-9][0-9]{0,2}")
_V4 = re.compile(r"(0|[1-9][0-9]{0,2})(\.(0|[1-9][0-9]{0,2})){3}")


def parse_addr(text: str) -> Addr:
    """An IPv4 or IPv6 address (an IPv6 zone is not accepted here)."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"ParseAddr({text!r}): unable to parse IP")
    if ":" not in text:
        if not _V4.fullmatch(text):
            raise ValueError(f"ParseAddr({text!r}): unable to parse IP")
        try:
            return ipaddress.IPv4Address(text)
        except ValueError:
            raise ValueError(f"ParseAddr({text!r}): IPv4 field has value >255") from None
    if "%" in text:
        raise ValueError(f"ParseAddr({text!r}): zone not allowed")
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        raise ValueError(f"ParseAddr({text!r}): unable to parse IP") from None


def parse_prefix(text: str) -> Prefix:
    """``addr/bits``; the address keeps its host bits (``10.0.0.5/24`` stays so)."""
    if not isinstance(text, str):
        raise ValueError(f"netip.ParsePrefix({text!r}): not a string")
    addr_s, sep, bits_s = text.rpartition("/")
    if not sep:
        raise ValueError(f'netip.ParsePrefix("{text}"): no \'/\'')
    if "%" in addr_s:
        raise ValueError(f'netip.ParsePrefix("{text}"): IPv6 zones cannot be present in a prefix')
    try:
        addr = parse_addr(addr_s)
    except ValueError as e:
        raise ValueError(f'netip.ParsePrefix("{text}"): {e}') from None
    if not _BITS.fullmatch(bits_s):
        raise ValueError(f'netip.ParsePrefix("{text}"): bad bits after slash: "{bits_s}"')
    bits = int(bits_s)
    if bits > addr.max_prefixlen:
        raise ValueError(f'netip.ParsePrefix("{text}"): prefix length out of range')
    if isinstance(addr, ipaddress.IPv4Address):
        return ipaddress.IPv4Interface((addr, bits))
    return ipaddress.IPv6Interface((addr, bits))


def format_addr(addr: Addr) -> str:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return f"::ffff:{addr.ipv4_mapped}"
    return str(addr)


def format_prefix(prefix: Prefix) -> str:
    return f"{format_addr(prefix.ip)}/{prefix.network.prefixlen}"


def masked(prefix: Prefix) -> Prefix:
    """The prefix with host bits cleared (Go's ``Prefix.Masked``)."""
    net = prefix.network
    if isinstance(net, ipaddress.IPv4Network):
        return ipaddress.IPv4Interface((net.network_address, net.prefixlen))
    return ipaddress.IPv6Interface((net.network_address, net.prefixlen))


def is_v4(x: Addr | Prefix) -> bool:
    return x.version == 4
