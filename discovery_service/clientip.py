"""The client address as the service sees it (§4.8 Hello), also the key of the rate limiter."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import unquote

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_peer(peer: str) -> Address | None:
    """gRPC peer strings: `ipv4:1.2.3.4:5`, `ipv6:[::1]:5` (recent gRPC percent-encodes the
    brackets: `ipv6:%5B::1%5D:5`); anything else, e.g. unix:, gives None."""
    kind, _, rest = unquote(peer).partition(":")
    try:
        if kind == "ipv4":
            return ipaddress.IPv4Address(rest.rpartition(":")[0])
        if kind == "ipv6":
            host = rest.rpartition(":")[0].strip("[]")
            return ipaddress.IPv6Address(host.split("%")[0])
    except ValueError:
        return None
    return None


def _parse(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def client_address(
    metadata: Iterable[tuple[str, str | bytes]], peer: str, trust_headers: bool
) -> Address | None:
    """X-Real-IP, else the first X-Forwarded-For entry, when the proxy headers are trusted
    (reference HEAD default); otherwise, or when they do not parse, the TCP peer."""
    if trust_headers:
        md = {k.lower(): (v.decode("latin-1") if isinstance(v, bytes) else v) for k, v in metadata}
        real = md.get("x-real-ip")
        if real:
            addr = _parse(real)
            if addr is not None:
                return addr
        fwd = md.get("x-forwarded-for")
        if fwd:
            addr = _parse(fwd.split(",")[0])
            if addr is not None:
                return addr
    return parse_peer(peer)


def binary(addr: Address | None) -> bytes:
    """§4.4 binary form: 4 or 16 bytes, empty for no address (IPv4-mapped IPv6 stays 16 bytes)."""
    return b"" if addr is None else addr.packed
