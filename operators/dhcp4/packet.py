"""The DHCPv4 message codec (RFC 2131 §2, RFC 2132, RFC 3396), and the IPv4/UDP framing the raw
socket needs before the link has an address (operators.md §2.2).

Strict: :func:`decode` and :func:`parse_ip_udp` raise :class:`DecodeError` and nothing else on
any malformed input (the operator counts and drops it). Options are kept as raw bytes by code;
:mod:`.options` decodes the payloads it uses.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass, field

from . import options as o

MAGIC_COOKIE = b"\x63\x82\x53\x63"
FIXED_LEN = 236  # op .. file, RFC 2131 figure 1
MIN_BOOTP_LEN = 300  # operators.md §2.3: pad to the BOOTP minimum
CLIENT_PORT = 68
SERVER_PORT = 67
BOOTREQUEST = 1
BOOTREPLY = 2
FLAG_BROADCAST = 0x8000
IP_TTL = 64

_ZERO = ipaddress.IPv4Address(0)
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
_FIXED = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")


class DecodeError(ValueError):
    """A malformed packet (the reason is the message)."""


class MessageType(enum.IntEnum):
    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8


@dataclass
class Message:
    op: int = BOOTREQUEST
    xid: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: ipaddress.IPv4Address = _ZERO
    yiaddr: ipaddress.IPv4Address = _ZERO
    siaddr: ipaddress.IPv4Address = _ZERO
    giaddr: ipaddress.IPv4Address = _ZERO
    chaddr: bytes = b""  # hlen bytes (the MAC)
    htype: int = 1
    hops: int = 0
    sname: bytes = b""
    file: bytes = b""
    options: dict[int, bytes] = field(default_factory=dict)

    @property
    def type(self) -> MessageType | None:
        v = o.u8(self.options.get(o.MESSAGE_TYPE))
        try:
            return MessageType(v) if v is not None else None
        except ValueError:
            return None

    @property
    def server_id(self) -> ipaddress.IPv4Address | None:
        return o.ip(self.options.get(o.SERVER_ID))


def _parse_options(buf: bytes, out: dict[int, bytes], where: str) -> bool:
    """TLV options into ``out`` (repeated codes concatenated, RFC 3396); True when END was seen."""
    i = 0
    n = len(buf)
    while i < n:
        code = buf[i]
        if code == o.PAD:
            i += 1
            continue
        if code == o.END:
            return True
        if i + 1 >= n:
            raise DecodeError(f"{where}: option {code} has no length")
        length = buf[i + 1]
        if i + 2 + length > n:
            raise DecodeError(f"{where}: option {code} overflows ({length} bytes, {n - i - 2} left)")
        out[code] = out.get(code, b"") + buf[i + 2 : i + 2 + length]
        i += 2 + length
    return False


def decode(data: bytes) -> Message:
    """A DHCP message (BOOTP with the magic cookie and a valid message type option)."""
    if len(data) < FIXED_LEN + len(MAGIC_COOKIE):
        raise DecodeError(f"too short: {len(data)} bytes")
    (op, htype, hlen, hops, xid, secs, flags, ci, yi, si, gi, chaddr, sname, file) = _FIXED.unpack_from(data)
    if op not in (BOOTREQUEST, BOOTREPLY):
        raise DecodeError(f"bad op {op}")
    if hlen > 16:
        raise DecodeError(f"bad hlen {hlen}")
    if data[FIXED_LEN : FIXED_LEN + 4] != MAGIC_COOKIE:
        raise DecodeError("no DHCP magic cookie")
    opts: dict[int, bytes] = {}
    _parse_options(data[FIXED_LEN + 4 :], opts, "options")
    overload = o.u8(opts.pop(o.OVERLOAD, None)) if o.OVERLOAD in opts else 0
    if overload is None or overload > 3:
        raise DecodeError("bad option overload (52)")
    # RFC 2131 §4.1: with overload, options continue in file (1), then sname (2).
    if overload & 1:
        _parse_options(file, opts, "file")
        file = b""
    if overload & 2:
        _parse_options(sname, opts, "sname")
        sname = b""
    msg = Message(
        op=op, xid=xid, secs=secs, flags=flags,
        ciaddr=ipaddress.IPv4Address(ci), yiaddr=ipaddress.IPv4Address(yi),
        siaddr=ipaddress.IPv4Address(si), giaddr=ipaddress.IPv4Address(gi),
        chaddr=chaddr[:hlen], htype=htype, hops=hops,
        sname=sname.rstrip(b"\x00"), file=file.rstrip(b"\x00"), options=opts,
    )  # fmt: skip
    if msg.type is None:
        raise DecodeError("no valid message type (53)")
    return msg


def encode(msg: Message) -> bytes:
    """The wire form: options in ascending code order (operators.md §2.3), a payload longer than
    255 bytes split over several instances (RFC 3396), END, zero padding to 300 bytes."""
    if len(msg.chaddr) > 16 or len(msg.sname) > 64 or len(msg.file) > 128:
        raise ValueError("chaddr/sname/file too long")
    out = bytearray(
        _FIXED.pack(
            msg.op,
            msg.htype,
            len(msg.chaddr),
            msg.hops,
            msg.xid,
            msg.secs,
            msg.flags,
            msg.ciaddr.packed,
            msg.yiaddr.packed,
            msg.siaddr.packed,
            msg.giaddr.packed,
            msg.chaddr.ljust(16, b"\x00"),
            msg.sname.ljust(64, b"\x00"),
            msg.file.ljust(128, b"\x00"),
        )
    )
    out += MAGIC_COOKIE
    for code in sorted(msg.options):
        value = msg.options[code]
        if code in (o.PAD, o.END):
            continue
        for i in range(0, max(len(value), 1), 255):
            chunk = value[i : i + 255]
            out += bytes((code, len(chunk))) + chunk
    out.append(o.END)
    if len(out) < MIN_BOOTP_LEN:
        out += bytes(MIN_BOOTP_LEN - len(out))
    return bytes(out)


# ---- IPv4/UDP framing for the packet socket (operators.md §2.2) ---------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def frame_ip_udp(
    payload: bytes,
    src: ipaddress.IPv4Address = _ZERO,
    dst: ipaddress.IPv4Address = _BROADCAST,
    sport: int = CLIENT_PORT,
    dport: int = SERVER_PORT,
) -> bytes:
    """An IPv4 packet (TTL 64, valid checksums) carrying ``payload`` over UDP."""
    ulen = 8 + len(payload)
    pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, 17, ulen)
    udp = struct.pack("!HHHH", sport, dport, ulen, 0) + payload
    csum = _checksum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", csum) + udp[8:]
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, 0, 0, IP_TTL, 17, 0, src.packed, dst.packed)
    hdr = hdr[:10] + struct.pack("!H", _checksum(hdr)) + hdr[12:]
    return hdr + udp


@dataclass(frozen=True)
class Datagram:
    src: ipaddress.IPv4Address
    dst: ipaddress.IPv4Address
    sport: int
    dport: int
    payload: bytes


def parse_ip_udp(packet: bytes) -> Datagram:
    """The UDP datagram in an IPv4 packet as the packet socket gives it (no link header).

    The UDP checksum is not verified: on veth and with checksum offload the kernel hands
    packet sockets frames whose checksum is still partial (CHECKSUM_PARTIAL)."""
    if len(packet) < 20:
        raise DecodeError("short IPv4 header")
    vihl, _, total, _, frag, _, proto, _, src, dst = struct.unpack_from("!BBHHHBBH4s4s", packet)
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or ihl < 20 or total < ihl + 8 or total > len(packet):
        raise DecodeError("bad IPv4 header")
    if proto != 17:
        raise DecodeError("not UDP")
    if frag & 0x3FFF:
        raise DecodeError("IPv4 fragment")
    sport, dport, ulen = struct.unpack_from("!HHH", packet, ihl)
    if ulen < 8 or ihl + ulen > total:
        raise DecodeError("bad UDP length")
    return Datagram(
        ipaddress.IPv4Address(src), ipaddress.IPv4Address(dst), sport, dport, packet[ihl + 8 : ihl + ulen]
    )
