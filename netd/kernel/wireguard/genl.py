"""WireGuard generic-netlink messages, encoded and decoded here (pure).

Why not ``pyroute2.WireGuard`` (0.9.7, checked): its ``set()`` carries one peer
per call and cannot set ``WGDEVICE_F_REPLACE_PEERS``, so a diff would take one
round trip per peer and is not one transaction. (Its peer flags, 1/2/4, are
right in 0.9.7; older versions had bit positions.) The format is a few
TLVs, so we build the messages ourselves, as ``wg(8)`` does (uapi
``linux/wireguard.h``): several peers per message, split over several
messages when large (only the first carries the device attributes).

Layout: a genetlink payload is ``genlmsghdr`` (cmd u8, version u8, reserved
u16) followed by attributes ``nlattr`` (len u16, type u16, value, padding
to 4). Nested arrays (peers, allowed IPs) are attributes of type 0 with
``NLA_F_NESTED``; the kernel ignores the element type.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterator

from netd.kernel.netlink import (
    NLA_F_NESTED,
    NLA_HDR,
    NLA_TYPE_MASK,
    NLMSGHDR,
)
from netd.kernel.wireguard.model import (
    KEY_LEN,
    DeviceConfig,
    PeerConfig,
    PeerInfo,
    WireguardDevice,
    WireguardError,
    format_endpoint,
    parse_endpoint,
)
from netd.netip import Prefix

# netlink (numbers from netd.kernel.netlink)
NLMSG_HDR = NLMSGHDR

# generic netlink controller
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2

# linux/wireguard.h
WG_GENL_NAME = "wireguard"
WG_GENL_VERSION = 1
WG_CMD_GET_DEVICE = 0
WG_CMD_SET_DEVICE = 1
WGDEVICE_F_REPLACE_PEERS = 1 << 0
WGDEVICE_A_IFINDEX = 1
WGDEVICE_A_IFNAME = 2
WGDEVICE_A_PRIVATE_KEY = 3
WGDEVICE_A_PUBLIC_KEY = 4
WGDEVICE_A_FLAGS = 5
WGDEVICE_A_LISTEN_PORT = 6
WGDEVICE_A_FWMARK = 7
WGDEVICE_A_PEERS = 8
WGPEER_F_REMOVE_ME = 1 << 0
WGPEER_F_REPLACE_ALLOWEDIPS = 1 << 1
WGPEER_F_UPDATE_ONLY = 1 << 2
WGPEER_A_PUBLIC_KEY = 1
WGPEER_A_PRESHARED_KEY = 2
WGPEER_A_FLAGS = 3
WGPEER_A_ENDPOINT = 4
WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL = 5
WGPEER_A_LAST_HANDSHAKE_TIME = 6
WGPEER_A_RX_BYTES = 7
WGPEER_A_TX_BYTES = 8
WGPEER_A_ALLOWEDIPS = 9
WGPEER_A_PROTOCOL_VERSION = 10
WGALLOWEDIP_A_FAMILY = 1
WGALLOWEDIP_A_IPADDR = 2
WGALLOWEDIP_A_CIDR_MASK = 3

#: Soft size limit of one SET_DEVICE message (the socket's send buffer is ~200 KiB).
MESSAGE_BUDGET = 32 * 1024


# ---- TLV primitives ---------------------------------------------------------------------------


def nla(atype: int, value: bytes) -> bytes:
    length = NLA_HDR.size + len(value)
    return NLA_HDR.pack(length, atype) + value + bytes(-length % 4)


def nested(atype: int, items: list[bytes]) -> bytes:
    return nla(atype | NLA_F_NESTED, b"".join(items))


def u8(v: int) -> bytes:
    return struct.pack("=B", v)


def u16(v: int) -> bytes:
    return struct.pack("=H", v)


def u32(v: int) -> bytes:
    return struct.pack("=I", v)


def u64(v: int) -> bytes:
    return struct.pack("=Q", v)


def parse_nlas(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type without flags, value) of each attribute in ``data``."""
    off = 0
    while off + NLA_HDR.size <= len(data):
        length, atype = NLA_HDR.unpack_from(data, off)
        if length < NLA_HDR.size or off + length > len(data):
            raise WireguardError("netlink: truncated attribute")
        yield atype & NLA_TYPE_MASK, data[off + NLA_HDR.size : off + length]
        off += (length + 3) & ~3


def nlmsg(mtype: int, flags: int, seq: int, payload: bytes) -> bytes:
    return NLMSG_HDR.pack(NLMSG_HDR.size + len(payload), mtype, flags, seq, 0) + payload


def parse_nlmsgs(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, flags, seq, payload) of each netlink message in one datagram."""
    off = 0
    while off + NLMSG_HDR.size <= len(data):
        length, mtype, flags, seq, _pid = NLMSG_HDR.unpack_from(data, off)
        if length < NLMSG_HDR.size or off + length > len(data):
            raise WireguardError("netlink: truncated message")
        yield mtype, flags, seq, data[off + NLMSG_HDR.size : off + length]
        off += (length + 3) & ~3


def genl_header(cmd: int, version: int) -> bytes:
    return struct.pack("=BBH", cmd, version, 0)


def getfamily_request(name: str) -> bytes:
    """Payload of CTRL_CMD_GETFAMILY (to GENL_ID_CTRL)."""
    return genl_header(CTRL_CMD_GETFAMILY, 1) + nla(CTRL_ATTR_FAMILY_NAME, name.encode() + b"\0")


def parse_family_id(payload: bytes) -> int | None:
    for atype, value in parse_nlas(payload[4:]):
        if atype == CTRL_ATTR_FAMILY_ID:
            return int(struct.unpack("=H", value[:2])[0])
    return None


# ---- values -------------------------------------------------------------------------------


def encode_sockaddr(endpoint: str) -> bytes:
    addr, port = parse_endpoint(endpoint)
    if isinstance(addr, ipaddress.IPv4Address):
        return struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + addr.packed + bytes(8)
    # sockaddr_in6: family, port (BE), flowinfo (BE), addr, scope_id (host order)
    return struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", port, 0) + addr.packed + u32(0)


def decode_sockaddr(value: bytes) -> str:
    (family,) = struct.unpack_from("=H", value)
    (port,) = struct.unpack_from("!H", value, 2)
    if family == socket.AF_INET and len(value) >= 8:
        return format_endpoint(ipaddress.IPv4Address(value[4:8]), port)
    if family == socket.AF_INET6 and len(value) >= 24:
        addr = ipaddress.IPv6Address(value[8:24])
        if addr.ipv4_mapped is not None:
            return format_endpoint(addr.ipv4_mapped, port)
        return format_endpoint(addr, port)
    return ""


def encode_allowed_ip(p: Prefix) -> bytes:
    family = socket.AF_INET if p.version == 4 else socket.AF_INET6
    return nested(
        0,
        [
            nla(WGALLOWEDIP_A_FAMILY, u16(family)),
            nla(WGALLOWEDIP_A_IPADDR, p.ip.packed),
            nla(WGALLOWEDIP_A_CIDR_MASK, u8(p.network.prefixlen)),
        ],
    )


def decode_allowed_ip(data: bytes) -> Prefix | None:
    family = mask = None
    raw = b""
    for atype, value in parse_nlas(data):
        if atype == WGALLOWEDIP_A_FAMILY:
            (family,) = struct.unpack("=H", value[:2])
        elif atype == WGALLOWEDIP_A_IPADDR:
            raw = value
        elif atype == WGALLOWEDIP_A_CIDR_MASK:
            mask = value[0]
    if family == socket.AF_INET and len(raw) == 4 and mask is not None:
        return ipaddress.IPv4Interface((ipaddress.IPv4Address(raw), mask))
    if family == socket.AF_INET6 and len(raw) == 16 and mask is not None:
        return ipaddress.IPv6Interface((ipaddress.IPv6Address(raw), mask))
    return None


def _key(value: bytes) -> bytes:
    if len(value) != KEY_LEN:
        raise WireguardError(f"genetlink: key of {len(value)} bytes")
    return value


# ---- SET_DEVICE ---------------------------------------------------------------------------


def encode_peer(p: PeerConfig) -> bytes:
    attrs = [nla(WGPEER_A_PUBLIC_KEY, p.public_key)]
    flags = (
        (WGPEER_F_REMOVE_ME if p.remove else 0)
        | (WGPEER_F_UPDATE_ONLY if p.update_only else 0)
        | (WGPEER_F_REPLACE_ALLOWEDIPS if p.replace_allowed_ips and not p.remove else 0)
    )
    if flags:
        attrs.append(nla(WGPEER_A_FLAGS, u32(flags)))
    if not p.remove:
        if p.preshared_key is not None:
            attrs.append(nla(WGPEER_A_PRESHARED_KEY, p.preshared_key))
        if p.endpoint is not None:
            attrs.append(nla(WGPEER_A_ENDPOINT, encode_sockaddr(p.endpoint)))
        if p.persistent_keepalive is not None:
            attrs.append(nla(WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, u16(p.persistent_keepalive)))
        if p.allowed_ips:
            attrs.append(nested(WGPEER_A_ALLOWEDIPS, [encode_allowed_ip(a) for a in p.allowed_ips]))
    return nested(0, attrs)


def encode_set_device(ifname: str, cfg: DeviceConfig, budget: int = MESSAGE_BUDGET) -> list[bytes]:
    """The genetlink payloads (header + attributes) of WG_CMD_SET_DEVICE for ``cfg``: one,
    or several when the peers exceed ``budget`` bytes (device attributes in the first only;
    a peer is never split)."""
    head = genl_header(WG_CMD_SET_DEVICE, WG_GENL_VERSION) + nla(WGDEVICE_A_IFNAME, ifname.encode() + b"\0")
    dev = b""
    if cfg.private_key is not None:
        dev += nla(WGDEVICE_A_PRIVATE_KEY, cfg.private_key)
    if cfg.listen_port is not None:
        dev += nla(WGDEVICE_A_LISTEN_PORT, u16(cfg.listen_port))
    if cfg.fwmark is not None:
        dev += nla(WGDEVICE_A_FWMARK, u32(cfg.fwmark))
    if cfg.replace_peers:
        dev += nla(WGDEVICE_A_FLAGS, u32(WGDEVICE_F_REPLACE_PEERS))
    chunks: list[list[bytes]] = [[]]
    size = len(dev)
    for p in cfg.peers:
        enc = encode_peer(p)
        if chunks[-1] and size + len(enc) > budget:
            chunks.append([])
            size = 0
        chunks[-1].append(enc)
        size += len(enc)
    out = []
    for i, peers in enumerate(chunks):
        body = head + (dev if i == 0 else b"")
        if peers:
            body += nested(WGDEVICE_A_PEERS, peers)
        out.append(body)
    return out


def decode_set_device(payloads: list[bytes]) -> tuple[str, DeviceConfig]:
    """Inverse of :func:`encode_set_device` (tests)."""
    cfg = DeviceConfig()
    ifname = ""
    for payload in payloads:
        for atype, value in parse_nlas(payload[4:]):
            if atype == WGDEVICE_A_IFNAME:
                ifname = value.rstrip(b"\0").decode()
            elif atype == WGDEVICE_A_PRIVATE_KEY:
                cfg.private_key = _key(value)
            elif atype == WGDEVICE_A_LISTEN_PORT:
                (cfg.listen_port,) = struct.unpack("=H", value)
            elif atype == WGDEVICE_A_FWMARK:
                (cfg.fwmark,) = struct.unpack("=I", value)
            elif atype == WGDEVICE_A_FLAGS:
                cfg.replace_peers = bool(struct.unpack("=I", value)[0] & WGDEVICE_F_REPLACE_PEERS)
            elif atype == WGDEVICE_A_PEERS:
                for _, pdata in parse_nlas(value):
                    cfg.peers.append(_decode_peer_config(pdata))
    return ifname, cfg


def _decode_peer_config(data: bytes) -> PeerConfig:
    p = PeerConfig(public_key=ZERO)
    for atype, value in parse_nlas(data):
        if atype == WGPEER_A_PUBLIC_KEY:
            p.public_key = _key(value)
        elif atype == WGPEER_A_FLAGS:
            (flags,) = struct.unpack("=I", value)
            p.remove = bool(flags & WGPEER_F_REMOVE_ME)
            p.update_only = bool(flags & WGPEER_F_UPDATE_ONLY)
            p.replace_allowed_ips = bool(flags & WGPEER_F_REPLACE_ALLOWEDIPS)
        elif atype == WGPEER_A_PRESHARED_KEY:
            p.preshared_key = _key(value)
        elif atype == WGPEER_A_ENDPOINT:
            p.endpoint = decode_sockaddr(value)
        elif atype == WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL:
            (p.persistent_keepalive,) = struct.unpack("=H", value)
        elif atype == WGPEER_A_ALLOWEDIPS:
            p.allowed_ips.extend(a for _, d in parse_nlas(value) if (a := decode_allowed_ip(d)) is not None)
    return p


ZERO = bytes(KEY_LEN)


# ---- GET_DEVICE ---------------------------------------------------------------------------


def get_device_request(ifname: str) -> bytes:
    """Payload of the WG_CMD_GET_DEVICE dump request."""
    return genl_header(WG_CMD_GET_DEVICE, WG_GENL_VERSION) + nla(WGDEVICE_A_IFNAME, ifname.encode() + b"\0")


def decode_device(payloads: list[bytes]) -> WireguardDevice:
    """The device from the GET_DEVICE dump messages. The kernel splits a large device over
    several messages, continuing the last peer (same public key) with more allowed IPs."""
    dev = WireguardDevice()
    for payload in payloads:
        for atype, value in parse_nlas(payload[4:]):
            if atype == WGDEVICE_A_PRIVATE_KEY:
                dev.private_key = _key(value)
            elif atype == WGDEVICE_A_PUBLIC_KEY:
                dev.public_key = _key(value)
            elif atype == WGDEVICE_A_LISTEN_PORT:
                (dev.listen_port,) = struct.unpack("=H", value)
            elif atype == WGDEVICE_A_FWMARK:
                (dev.fwmark,) = struct.unpack("=I", value)
            elif atype == WGDEVICE_A_PEERS:
                for _, pdata in parse_nlas(value):
                    peer = _decode_peer_info(pdata)
                    if dev.peers and dev.peers[-1].public_key == peer.public_key:
                        dev.peers[-1].allowed_ips.extend(peer.allowed_ips)
                    else:
                        dev.peers.append(peer)
    return dev


def _decode_peer_info(data: bytes) -> PeerInfo:
    p = PeerInfo(public_key=ZERO)
    for atype, value in parse_nlas(data):
        if atype == WGPEER_A_PUBLIC_KEY:
            p.public_key = _key(value)
        elif atype == WGPEER_A_PRESHARED_KEY:
            p.preshared_key = _key(value)
        elif atype == WGPEER_A_ENDPOINT:
            p.endpoint = decode_sockaddr(value)
        elif atype == WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL:
            (p.persistent_keepalive,) = struct.unpack("=H", value)
        elif atype == WGPEER_A_LAST_HANDSHAKE_TIME:
            sec, nsec = struct.unpack("=qq", value[:16])
            p.last_handshake = sec + nsec / 1e9
        elif atype == WGPEER_A_RX_BYTES:
            (p.rx_bytes,) = struct.unpack("=Q", value)
        elif atype == WGPEER_A_TX_BYTES:
            (p.tx_bytes,) = struct.unpack("=Q", value)
        elif atype == WGPEER_A_PROTOCOL_VERSION:
            (p.protocol_version,) = struct.unpack("=I", value)
        elif atype == WGPEER_A_ALLOWEDIPS:
            p.allowed_ips.extend(a for _, d in parse_nlas(value) if (a := decode_allowed_ip(d)) is not None)
    return p


def encode_device(ifname: str, dev: WireguardDevice) -> bytes:
    """A GET_DEVICE answer as the kernel would send it, in one message (tests)."""
    attrs = [
        nla(WGDEVICE_A_IFNAME, ifname.encode() + b"\0"),
        nla(WGDEVICE_A_PRIVATE_KEY, dev.private_key),
        nla(WGDEVICE_A_PUBLIC_KEY, dev.public_key),
        nla(WGDEVICE_A_LISTEN_PORT, u16(dev.listen_port)),
        nla(WGDEVICE_A_FWMARK, u32(dev.fwmark)),
    ]
    peers = []
    for p in dev.peers:
        sec = int(p.last_handshake)
        pattrs = [
            nla(WGPEER_A_PUBLIC_KEY, p.public_key),
            nla(WGPEER_A_PRESHARED_KEY, p.preshared_key),
            nla(WGPEER_A_LAST_HANDSHAKE_TIME, struct.pack("=qq", sec, round((p.last_handshake - sec) * 1e9))),
            nla(WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, u16(p.persistent_keepalive)),
            nla(WGPEER_A_TX_BYTES, u64(p.tx_bytes)),
            nla(WGPEER_A_RX_BYTES, u64(p.rx_bytes)),
            nla(WGPEER_A_PROTOCOL_VERSION, u32(p.protocol_version)),
        ]
        if p.endpoint:
            pattrs.append(nla(WGPEER_A_ENDPOINT, encode_sockaddr(p.endpoint)))
        pattrs.append(nested(WGPEER_A_ALLOWEDIPS, [encode_allowed_ip(a) for a in p.allowed_ips]))
        peers.append(nested(0, pattrs))
    attrs.append(nested(WGDEVICE_A_PEERS, peers))
    return genl_header(WG_CMD_GET_DEVICE, WG_GENL_VERSION) + b"".join(attrs)
