"""The WireGuard device as both backends read and write it.

Keys are 32-byte ``bytes`` here (base64 in our specs, lowercase hex on the
UAPI socket, raw in genetlink): the conversions live at the edges
(:func:`key_from_b64`, :func:`key_to_b64`). Two shapes:

* :class:`WireguardDevice` / :class:`PeerInfo`: what a ``get`` returns (the
  full state, with handshake time and counters).
* :class:`DeviceConfig` / :class:`PeerConfig`: one write, the same semantics
  as a UAPI ``set=1`` or a genetlink ``WG_CMD_SET_DEVICE`` (``None`` = leave
  unchanged), so the diff is computed once and encoded by either backend.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from netd.netip import Prefix, format_prefix, masked
from netd.resources.link import WireguardPeer, WireguardSpec

KEY_LEN = 32
ZERO_KEY = bytes(KEY_LEN)

Addr = ipaddress.IPv4Address | ipaddress.IPv6Address


class WireguardError(Exception):
    """A WireGuard device operation failed; ``errno`` is the kernel's/wireguard-go's code (0 unknown)."""

    def __init__(self, message: str, errno: int = 0) -> None:
        super().__init__(message)
        self.errno = errno


def key_from_b64(text: str) -> bytes:
    """A base64 WireGuard key (``wg genkey`` format) as 32 bytes; ``""`` is the zero key."""
    if not text:
        return ZERO_KEY
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"invalid WireGuard key {text!r}: not base64") from None
    if len(raw) != KEY_LEN:
        raise ValueError(f"invalid WireGuard key {text!r}: {len(raw)} bytes, want {KEY_LEN}")
    return raw


def key_to_b64(key: bytes) -> str:
    """The base64 form; the zero key (no key) is ``""`` as in our specs."""
    return "" if key == ZERO_KEY else base64.b64encode(key).decode()


def public_key(private: bytes) -> bytes:
    """The X25519 public key of ``private`` (UAPI ``get`` does not report it; genetlink does)."""
    if private == ZERO_KEY:
        return ZERO_KEY
    pub = X25519PrivateKey.from_private_bytes(private).public_key()
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def parse_endpoint(text: str) -> tuple[Addr, int]:
    """``1.2.3.4:51820`` or ``[fd00::1]:51820`` (an IP literal; hostnames are resolved before)."""
    host, sep, port_s = text.rpartition(":")
    if not sep or not port_s.isdigit():
        raise ValueError(f"invalid endpoint {text!r}: want host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    addr = ipaddress.ip_address(host)
    port = int(port_s)
    if not 0 < port < 65536:
        raise ValueError(f"invalid endpoint {text!r}: port out of range")
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # the kernel and wireguard-go report v4-mapped endpoints as v4
    return addr, port


def format_endpoint(addr: Addr, port: int) -> str:
    """Go's ``netip.AddrPort.String``: ``1.2.3.4:51820``, ``[fd00::1]:51820``."""
    if isinstance(addr, ipaddress.IPv6Address):
        return f"[{addr}]:{port}"
    return f"{addr}:{port}"


def normalize_endpoint(text: str) -> str:
    """The canonical text of an IP endpoint (``""`` stays ``""``)."""
    return format_endpoint(*parse_endpoint(text)) if text else ""


def is_ip_endpoint(text: str) -> bool:
    try:
        parse_endpoint(text)
    except ValueError:
        return False
    return True


def canonical_allowed_ips(prefixes: list[Prefix]) -> list[Prefix]:
    """Masked (the kernel stores ``10.0.0.5/24`` as ``10.0.0.0/24``), deduplicated, sorted by
    family, address, prefix length (netd.md §5.1)."""
    uniq = {masked(p) for p in prefixes}
    return sorted(uniq, key=lambda x: (x.version, int(x.ip), x.network.prefixlen))


@dataclass
class PeerInfo:
    """One peer as the device reports it."""

    public_key: bytes
    preshared_key: bytes = ZERO_KEY
    endpoint: str = ""  # canonical "ip:port" / "[ip6]:port", "" = none yet
    persistent_keepalive: int = 0  # seconds, 0 = off
    allowed_ips: list[Prefix] = field(default_factory=list)
    last_handshake: float = 0.0  # unix time (seconds, fractional); 0 = never
    rx_bytes: int = 0
    tx_bytes: int = 0
    protocol_version: int = 0

    @property
    def last_handshake_time(self) -> dt.datetime | None:
        if not self.last_handshake:
            return None
        return dt.datetime.fromtimestamp(self.last_handshake, dt.UTC)

    def to_spec(self) -> WireguardPeer:
        return WireguardPeer(
            public_key=key_to_b64(self.public_key),
            preshared_key=key_to_b64(self.preshared_key),
            endpoint=self.endpoint,
            persistent_keepalive_interval=dt.timedelta(seconds=self.persistent_keepalive),
            allowed_ips=list(self.allowed_ips),
        )

    def to_json(self) -> dict[str, object]:
        return {
            "publicKey": key_to_b64(self.public_key),
            "presharedKey": key_to_b64(self.preshared_key),
            "endpoint": self.endpoint,
            "persistentKeepalive": self.persistent_keepalive,
            "allowedIPs": [format_prefix(p) for p in self.allowed_ips],
            "lastHandshake": self.last_handshake,
            "rxBytes": self.rx_bytes,
            "txBytes": self.tx_bytes,
        }


@dataclass
class WireguardDevice:
    """A WireGuard device as ``get`` returns it (kernel or wireguard-go)."""

    private_key: bytes = ZERO_KEY
    public_key: bytes = ZERO_KEY
    listen_port: int = 0
    fwmark: int = 0
    peers: list[PeerInfo] = field(default_factory=list)

    def peer(self, public_key: bytes | str) -> PeerInfo | None:
        key = key_from_b64(public_key) if isinstance(public_key, str) else public_key
        return next((p for p in self.peers if p.public_key == key), None)

    def to_spec(self, *, private: bool = False) -> WireguardSpec:
        """As a WireguardSpec: with ``private`` the LinkSpec form (private key, for the diff),
        else the LinkStatus form (public key only), peers sorted (netd.md §2.4/§2.5)."""
        return WireguardSpec(
            private_key=key_to_b64(self.private_key) if private else "",
            public_key="" if private else key_to_b64(self.public_key),
            listen_port=self.listen_port,
            firewall_mark=self.fwmark,
            peers=[p.to_spec() for p in self.peers],
        ).sorted()

    def to_json(self) -> dict[str, object]:
        """For logs and the CLI (no private key)."""
        return {
            "publicKey": key_to_b64(self.public_key),
            "listenPort": self.listen_port,
            "fwmark": self.fwmark,
            "peers": [p.to_json() for p in self.peers],
        }


@dataclass
class PeerConfig:
    """One peer in a write. ``None`` = leave unchanged; ``remove`` drops the peer."""

    public_key: bytes
    remove: bool = False
    update_only: bool = False
    preshared_key: bytes | None = None  # ZERO_KEY clears it
    endpoint: str | None = None  # an IP endpoint
    persistent_keepalive: int | None = None
    replace_allowed_ips: bool = False
    allowed_ips: list[Prefix] = field(default_factory=list)


@dataclass
class DeviceConfig:
    """One write to a device (UAPI ``set=1`` / genetlink ``WG_CMD_SET_DEVICE``)."""

    private_key: bytes | None = None  # ZERO_KEY clears it
    listen_port: int | None = None
    fwmark: int | None = None
    replace_peers: bool = False
    peers: list[PeerConfig] = field(default_factory=list)

    def is_empty(self) -> bool:
        return (
            self.private_key is None
            and self.listen_port is None
            and self.fwmark is None
            and not self.replace_peers
            and not self.peers
        )
