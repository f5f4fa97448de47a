"""DHCPv4 option codes (RFC 2132, RFC 3442) and the decoders of the option payloads we read.

Every decoder returns None for a malformed payload instead of raising: operators.md §2.9 treats
a malformed option as absent.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

PAD = 0
SUBNET_MASK = 1
ROUTER = 3
DNS_SERVERS = 6
HOSTNAME = 12
DOMAIN_NAME = 15
INTERFACE_MTU = 26
NTP_SERVERS = 42
REQUESTED_ADDRESS = 50
LEASE_TIME = 51
OVERLOAD = 52
MESSAGE_TYPE = 53
SERVER_ID = 54
PARAMETER_REQUEST_LIST = 55
MESSAGE = 56
MAX_MESSAGE_SIZE = 57
RENEWAL_TIME = 58  # T1
REBINDING_TIME = 59  # T2
CLIENT_ID = 61
DOMAIN_SEARCH = 119
CLASSLESS_ROUTES = 121
END = 255

#: operators.md §2.3: the Parameter Request List, in this order (12 only in request mode).
PRL_BASE = (SUBNET_MASK, ROUTER, DOMAIN_NAME, DNS_SERVERS, CLASSLESS_ROUTES, DOMAIN_SEARCH, NTP_SERVERS)
#: operators.md §2.3: option 57, the largest message we accept.
OUR_MAX_MESSAGE_SIZE = 1500


def ip_list(raw: bytes | None) -> list[ipaddress.IPv4Address] | None:
    """A list of IPv4 addresses (options 3, 6, 42): a non-empty multiple of 4 bytes."""
    if not raw or len(raw) % 4:
        return None
    return [ipaddress.IPv4Address(raw[i : i + 4]) for i in range(0, len(raw), 4)]


def ip(raw: bytes | None) -> ipaddress.IPv4Address | None:
    """One IPv4 address (options 1, 50, 54)."""
    if raw is None or len(raw) != 4:
        return None
    return ipaddress.IPv4Address(raw)


def u32(raw: bytes | None) -> int | None:
    if raw is None or len(raw) != 4:
        return None
    return int.from_bytes(raw, "big")


def u16(raw: bytes | None) -> int | None:
    if raw is None or len(raw) != 2:
        return None
    return int.from_bytes(raw, "big")


def u8(raw: bytes | None) -> int | None:
    if raw is None or len(raw) != 1:
        return None
    return raw[0]


def text(raw: bytes | None) -> str | None:
    """An NVT ASCII string (options 12, 15), trailing NULs stripped (operators.md §2.9);
    None when empty or not printable ASCII."""
    if raw is None:
        return None
    raw = raw.rstrip(b"\x00")
    if not raw or any(b < 0x20 or b > 0x7E for b in raw):
        return None
    return raw.decode("ascii")


def prefix_len(mask: ipaddress.IPv4Address | None) -> int | None:
    """The prefix length of a contiguous netmask (None when the mask has holes)."""
    if mask is None:
        return None
    m = int(mask)
    inv = (~m) & 0xFFFFFFFF
    if inv & (inv + 1):
        return None
    return 32 - inv.bit_length()


@dataclass(frozen=True)
class ClasslessRoute:
    destination: ipaddress.IPv4Network
    router: ipaddress.IPv4Address


def classless_routes(raw: bytes | None) -> list[ClasslessRoute] | None:
    """RFC 3442 option 121: (width, significant octets of the destination, router)*.
    None when absent, empty, truncated or with a width > 32 (operators.md §2.9)."""
    if not raw:
        return None
    out: list[ClasslessRoute] = []
    i = 0
    while i < len(raw):
        width = raw[i]
        if width > 32:
            return None
        n = (width + 7) // 8
        if i + 1 + n + 4 > len(raw):
            return None
        dst = raw[i + 1 : i + 1 + n] + bytes(4 - n)
        router = raw[i + 1 + n : i + 5 + n]
        i += 5 + n
        try:
            net = ipaddress.IPv4Network((bytes(dst), width), strict=False)
        except ValueError:
            return None
        out.append(ClasslessRoute(net, ipaddress.IPv4Address(router)))
    return out


def encode_classless_routes(routes: list[ClasslessRoute]) -> bytes:
    """RFC 3442 encoding (tests and the bench's servers)."""
    out = bytearray()
    for r in routes:
        width = r.destination.prefixlen
        out.append(width)
        out += r.destination.network_address.packed[: (width + 7) // 8]
        out += r.router.packed
    return bytes(out)
