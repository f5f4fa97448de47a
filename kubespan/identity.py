"""The KubeSpan identity (kubespan.md §3): WireGuard keys, the cluster ULA /64 and the node's address.

Keys are generated once and persisted in ``kubespan-identity.yaml`` (state
dir, 0600); the address and subnet are pure functions of ``cluster.id`` and a
MAC address and are recomputed, never read back (§3.1), so a new cluster ID or
a new NIC moves the address but keeps the keys.

Which MAC (§3.3, §11): the reference takes the first *physical* link (type
ether, no kind, links sorted by name). A node in a network namespace has no
physical link (veth is not one), so there are two more sources, in order:

1. the tunable ``KUBESPAN_MAC_LINK`` (a link name, tests use ``eth0``; §12
   lists the MAC source link among the test tunables);
2. the first physical link;
3. a MAC derived from the node ID: ``SHA-256("kubespan-mac:" + node ID)``,
   first 6 bytes, made locally administered unicast (byte 0: set bit 1,
   clear bit 0). The node ID is persisted in the same state dir as the keys,
   so this is as stable as the identity itself, needs no config key, and does
   not change when links come and go (taking "the first veth" would move the
   KubeSpan address whenever a link named lower appears).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from netd.kernel.files import yaml_map

KUBESPAN_IDENTITY_FILE = "kubespan-identity.yaml"
PURPOSE_BOOTSTRAP = 0x01
PURPOSE_KUBESPAN = 0x02
PURPOSE_SIDEROLINK = 0x03
KEY_LEN = 32


class KubeSpanIdentityError(Exception):
    """A KubeSpan identity file or input that cannot be used (the message names the field)."""


# ---- keys (§3.1) ----------------------------------------------------------------------------


def clamp(key: bytes) -> bytes:
    k = bytearray(key)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    return bytes(k)


def public_key(private_b64: str) -> str:
    """X25519(private, 9) as WireGuard's base64 text; KubeSpanIdentityError on a bad key."""
    try:
        raw = base64.b64decode(private_b64, validate=True)
    except ValueError:
        raise KubeSpanIdentityError(f"privateKey: not base64: {private_b64[:8]}...") from None
    if len(raw) != KEY_LEN:
        raise KubeSpanIdentityError(f"privateKey: want {KEY_LEN} bytes, got {len(raw)}")
    pub = X25519PrivateKey.from_private_bytes(raw).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(pub).decode()


def generate_private_key() -> str:
    raw = X25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return base64.b64encode(clamp(raw)).decode()


# ---- addresses (§3.2, §3.3) ---------------------------------------------------------------


def ula_prefix(cluster_id: str, purpose: int = PURPOSE_KUBESPAN) -> ipaddress.IPv6Network:
    """§3.2: ``fd`` ‖ SHA-256(cluster.id)[17:23] ‖ purpose, /64 (cluster.id used verbatim as UTF-8)."""
    h = hashlib.sha256(cluster_id.encode()).digest()
    p = bytearray(h[16:32])
    p[0] = 0xFD
    p[7] = purpose
    return ipaddress.IPv6Network((bytes(p[:8]) + bytes(8), 64))


def is_ula(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, purpose: int) -> bool:
    packed = ip.packed
    return ip.version == 6 and packed[0] == 0xFD and packed[7] == purpose


def parse_mac(text: str) -> bytes:
    parts = text.split(":")
    try:
        raw = bytes(int(p, 16) for p in parts if len(p) == 2)
    except ValueError:
        raw = b""
    if len(raw) != len(parts) or not raw:
        raise KubeSpanIdentityError(f"hardware address {text!r}: want hex bytes separated by ':'")
    return raw


def eui64(mac: bytes) -> bytes:
    """§3.3 modified EUI-64 interface ID of a 6- or 8-byte MAC."""
    if len(mac) == 6:
        return bytes([mac[0] ^ 0x02, mac[1], mac[2], 0xFF, 0xFE, mac[3], mac[4], mac[5]])
    if len(mac) == 8:
        return bytes([mac[0] ^ 0x02, *mac[1:]])
    raise KubeSpanIdentityError(f"hardware address of {len(mac)} bytes: want 6 or 8")


def node_address(subnet: ipaddress.IPv6Network, mac: bytes) -> ipaddress.IPv6Interface:
    """The node's KubeSpan IP as /128: the subnet's 8 bytes ‖ EUI-64(mac)."""
    return ipaddress.IPv6Interface((subnet.network_address.packed[:8] + eui64(mac), 128))


def mac_from_node_id(node_id: str) -> bytes:
    """The fallback MAC of the module docstring (locally administered, unicast)."""
    h = bytearray(hashlib.sha256(b"kubespan-mac:" + node_id.encode()).digest()[:6])
    h[0] = (h[0] | 0x02) & 0xFE
    return bytes(h)


@dataclass(frozen=True)
class LinkHW:
    """What the MAC choice needs of a link (a LinkStatus, reduced)."""

    name: str
    hardware_addr: str
    physical: bool


def choose_mac(links: Iterable[LinkHW], override_link: str, node_id: str) -> tuple[bytes, str] | None:
    """(MAC, where it came from) in the order of the module docstring; None while the override
    link is not there yet (its MAC is what the operator asked for: do not fall through)."""
    by_name = sorted(links, key=lambda link: link.name)
    if override_link:
        for link in by_name:
            if link.name == override_link and link.hardware_addr:
                return parse_mac(link.hardware_addr), f"link {link.name}"
        return None
    for link in by_name:
        if link.physical and link.hardware_addr:
            try:
                return parse_mac(link.hardware_addr), f"link {link.name}"
            except KubeSpanIdentityError:
                continue
    if node_id:
        return mac_from_node_id(node_id), "node ID"
    return None


# ---- persistence (§3.1) -------------------------------------------------------------------


@dataclass(frozen=True)
class KubeSpanKeys:
    private_key: str
    public_key: str


def render_identity_file(keys: KubeSpanKeys) -> bytes:
    """The reference's file: address and subnet written empty (recomputed, never read)."""
    return (
        f'address: ""\nsubnet: ""\nprivateKey: {keys.private_key}\npublicKey: {keys.public_key}\n'
    ).encode()


def parse_identity_file(text: str, path: str) -> KubeSpanKeys:
    """Keys from ``kubespan-identity.yaml``; address/subnet accepted in any form and ignored.
    The public key is recomputed from the private one (a mismatch is an error)."""
    data = yaml_map(text, path, KubeSpanIdentityError)
    priv = data.get("privateKey")
    if not isinstance(priv, str) or not priv:
        raise KubeSpanIdentityError(f"{path}: privateKey: empty")
    try:
        pub = public_key(priv)
    except KubeSpanIdentityError as e:
        raise KubeSpanIdentityError(f"{path}: {e}") from None
    stored = data.get("publicKey")
    if stored not in (None, "", pub):
        raise KubeSpanIdentityError(f"{path}: publicKey: does not match privateKey")
    return KubeSpanKeys(priv, pub)


def load_or_create_keys(state_dir: str) -> tuple[KubeSpanKeys, bool]:
    """The persisted keys, or new ones written 0600 with exclusive create; True when created."""
    from cluster.identity import create_exclusive

    path = os.path.join(state_dir, KUBESPAN_IDENTITY_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            return parse_identity_file(f.read(), path), False
    except FileNotFoundError:
        pass
    except OSError as e:
        raise KubeSpanIdentityError(f"{path}: cannot read: {e.strerror or e}") from None
    priv = generate_private_key()
    keys = KubeSpanKeys(priv, public_key(priv))
    try:
        create_exclusive(path, render_identity_file(keys))
    except Exception as e:
        raise KubeSpanIdentityError(f"{path}: cannot write: {e}") from None
    return keys, True
