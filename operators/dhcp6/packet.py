"""DHCPv6 client/server messages and options (RFC 8415 §8, §21; RFC 3646; RFC 5908; RFC 4075; RFC 4704).

One table, :data:`OPTIONS`, maps each option code the client understands to the :class:`Message`
field it fills and the codec of its body; everything else is kept raw, in order, in
``Message.other`` (IA_PD, Vendor Class, ...), so a REQUEST can copy what an ADVERTISE carried.

The decoder is strict and total: any malformed input (short header, an option running past its
parent, a bad fixed length, a duplicated singleton option, a relay message, a name that is not
DNS wire format) raises :class:`DecodeError` and nothing else, so a hostile packet is dropped by
the one ``except DecodeError`` at the socket. Tests check this with hypothesis and check the
codec against scapy's DHCPv6 layers.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Any

# ---- message types (RFC 8415 §7.3) ---------------------------------------------------------------
SOLICIT = 1
ADVERTISE = 2
REQUEST = 3
CONFIRM = 4
RENEW = 5
REBIND = 6
REPLY = 7
RELEASE = 8
DECLINE = 9
RECONFIGURE = 10
INFORMATION_REQUEST = 11
RELAY_FORW = 12
RELAY_REPL = 13

MESSAGE_NAMES = {
    SOLICIT: "SOLICIT", ADVERTISE: "ADVERTISE", REQUEST: "REQUEST", CONFIRM: "CONFIRM",
    RENEW: "RENEW", REBIND: "REBIND", REPLY: "REPLY", RELEASE: "RELEASE", DECLINE: "DECLINE",
    RECONFIGURE: "RECONFIGURE", INFORMATION_REQUEST: "INFORMATION-REQUEST",
    RELAY_FORW: "RELAY-FORW", RELAY_REPL: "RELAY-REPL",
}  # fmt: skip

# ---- option codes (RFC 8415 §21, IANA "DHCPv6 Option Codes") ------------------------------------
OPT_CLIENTID = 1
OPT_SERVERID = 2
OPT_IA_NA = 3
OPT_IAADDR = 5
OPT_ORO = 6
OPT_PREFERENCE = 7
OPT_ELAPSED_TIME = 8
OPT_UNICAST = 12
OPT_STATUS_CODE = 13
OPT_RAPID_COMMIT = 14
OPT_VENDOR_CLASS = 16
OPT_DNS_SERVERS = 23  # RFC 3646
OPT_DOMAIN_LIST = 24  # RFC 3646
OPT_IA_PD = 25
OPT_SNTP_SERVERS = 31  # RFC 4075
OPT_CLIENT_FQDN = 39  # RFC 4704
OPT_NTP_SERVER = 56  # RFC 5908
OPT_SOL_MAX_RT = 82

# NTP server sub-options (RFC 5908 §4)
NTP_SUBOPT_SRV_ADDR = 1
NTP_SUBOPT_MC_ADDR = 2
NTP_SUBOPT_SRV_FQDN = 3

# ---- status codes (RFC 8415 §21.13) --------------------------------------------------------------
STATUS_SUCCESS = 0
STATUS_UNSPEC_FAIL = 1
STATUS_NO_ADDRS_AVAIL = 2
STATUS_NO_BINDING = 3
STATUS_NOT_ON_LINK = 4
STATUS_USE_MULTICAST = 5
STATUS_NO_PREFIX_AVAIL = 6

#: A lifetime or T1/T2 of all ones means infinity (RFC 8415 §7.7).
INFINITY = 0xFFFFFFFF
#: A DUID is a 2-byte type and 1..128 bytes of identifier (RFC 8415 §11.1).
DUID_MAX = 130
DUID_MIN = 3
HEADER = 4
MAX_NAME = 255  # RFC 1035 §2.3.4


class DecodeError(ValueError):
    """The bytes are not a well-formed DHCPv6 client/server message."""


@dataclass(frozen=True)
class StatusCode:
    code: int
    message: str = ""


@dataclass(frozen=True)
class IAAddress:
    """IAADDR (option 5): an address with its lifetimes in seconds."""

    address: IPv6Address
    preferred: int = 0
    valid: int = 0
    status: StatusCode | None = None
    other: tuple[tuple[int, bytes], ...] = ()


@dataclass(frozen=True)
class IANA:
    """IA_NA (option 3): an identity association for non-temporary addresses."""

    iaid: int
    t1: int = 0
    t2: int = 0
    addresses: tuple[IAAddress, ...] = ()
    status: StatusCode | None = None
    other: tuple[tuple[int, bytes], ...] = ()


@dataclass(frozen=True)
class NTPServer:
    """OPTION_NTP_SERVER (56): its sub-options in order, as (code, value); value is an
    IPv6Address for 1/2, a domain name for 3."""

    suboptions: tuple[tuple[int, IPv6Address | str], ...] = ()

    def addresses(self) -> list[IPv6Address]:
        return [v for c, v in self.suboptions if c == NTP_SUBOPT_SRV_ADDR and isinstance(v, IPv6Address)]


@dataclass(frozen=True)
class ClientFQDN:
    """OPTION_CLIENT_FQDN (39): flags (S, O, N bits) and a name, ``partial`` when it had no root label."""

    flags: int = 0
    name: str = ""
    partial: bool = False


@dataclass(frozen=True)
class Message:
    """A client/server message (RFC 8415 §8). Absent options are None (or empty tuples for the
    repeatable IA_NA)."""

    msg_type: int
    xid: int
    client_id: bytes | None = None
    server_id: bytes | None = None
    ia_na: tuple[IANA, ...] = ()
    oro: tuple[int, ...] | None = None
    preference: int | None = None
    elapsed: int | None = None  # hundredths of a second
    unicast: IPv6Address | None = None
    status: StatusCode | None = None
    rapid_commit: bool = False
    dns_servers: tuple[IPv6Address, ...] | None = None
    domains: tuple[str, ...] | None = None
    sntp_servers: tuple[IPv6Address, ...] | None = None
    fqdn: ClientFQDN | None = None
    ntp_servers: tuple[NTPServer, ...] = ()
    sol_max_rt: int | None = None
    other: tuple[tuple[int, bytes], ...] = ()

    @property
    def name(self) -> str:
        return MESSAGE_NAMES.get(self.msg_type, str(self.msg_type))

    def ia(self, iaid: int) -> IANA | None:
        """The IA_NA with this IAID (the first, if a broken server repeats it)."""
        return next((ia for ia in self.ia_na if ia.iaid == iaid), None)


# ---- primitive codecs --------------------------------------------------------------------------------


def _need(data: bytes, n: int, what: str) -> None:
    if len(data) != n:
        raise DecodeError(f"{what}: length {len(data)}, want {n}")


def _iter_options(data: bytes, where: str) -> Iterator[tuple[int, bytes]]:
    """(code, body) of each option in ``data``; an option running past the end is an error."""
    i, n = 0, len(data)
    while i < n:
        if n - i < 4:
            raise DecodeError(f"{where}: {n - i} trailing bytes, not an option header")
        code, length = struct.unpack_from("!HH", data, i)
        i += 4
        if length > n - i:
            raise DecodeError(f"{where}: option {code} length {length} overruns by {length - (n - i)}")
        yield code, data[i : i + length]
        i += length


def _opt(code: int, body: bytes) -> bytes:
    if len(body) > 0xFFFF:
        raise ValueError(f"option {code}: body of {len(body)} bytes")
    return struct.pack("!HH", code, len(body)) + body


def _dec_duid(data: bytes) -> bytes:
    if not DUID_MIN <= len(data) <= DUID_MAX:
        raise DecodeError(f"DUID of {len(data)} bytes (want {DUID_MIN}..{DUID_MAX})")
    return bytes(data)


def _dec_u8(data: bytes) -> int:
    _need(data, 1, "uint8 option")
    return data[0]


def _dec_u16(data: bytes) -> int:
    _need(data, 2, "uint16 option")
    return int(struct.unpack("!H", data)[0])


def _dec_u32(data: bytes) -> int:
    _need(data, 4, "uint32 option")
    return int(struct.unpack("!I", data)[0])


def _dec_empty(data: bytes) -> bool:
    _need(data, 0, "empty option")
    return True


def _dec_addr(data: bytes) -> IPv6Address:
    _need(data, 16, "IPv6 address")
    return IPv6Address(bytes(data))


def _dec_addrs(data: bytes) -> tuple[IPv6Address, ...]:
    if len(data) % 16:
        raise DecodeError(f"address list of {len(data)} bytes, not a multiple of 16")
    return tuple(IPv6Address(bytes(data[i : i + 16])) for i in range(0, len(data), 16))


def _dec_oro(data: bytes) -> tuple[int, ...]:
    if len(data) % 2:
        raise DecodeError(f"ORO of odd length {len(data)}")
    return tuple(struct.unpack(f"!{len(data) // 2}H", data))


def _dec_status(data: bytes) -> StatusCode:
    if len(data) < 2:
        raise DecodeError("status code shorter than 2 bytes")
    try:
        text = bytes(data[2:]).decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("status message is not UTF-8") from None
    return StatusCode(int(struct.unpack_from("!H", data)[0]), text)


def _enc_status(s: StatusCode) -> bytes:
    return struct.pack("!H", s.code) + s.message.encode("utf-8")


def _dec_name(data: bytes, i: int, *, allow_partial: bool) -> tuple[str, int, bool]:
    """One DNS wire-format name (RFC 1035 §3.1, no compression: RFC 8415 §10) at ``data[i:]``:
    (dotted name, next index, partial). Partial (no root label) only when it ends the data."""
    labels: list[str] = []
    start = i
    while True:
        if i == len(data):
            if allow_partial and labels:
                return ".".join(labels), i, True
            raise DecodeError("domain name without its root label")
        n = data[i]
        if n == 0:
            i += 1
            break
        if n > 63:
            raise DecodeError(f"domain label length {n} (compression is not allowed)")
        if i + 1 + n > len(data):
            raise DecodeError("domain label runs past the option")
        raw = bytes(data[i + 1 : i + 1 + n])
        if not raw.isascii() or b"." in raw:
            raise DecodeError("domain label is not a plain ASCII label")
        labels.append(raw.decode("ascii"))
        i += 1 + n
    if i - start > MAX_NAME:
        raise DecodeError(f"domain name of {i - start} bytes")
    return ".".join(labels), i, False


def _enc_name(name: str, *, partial: bool = False) -> bytes:
    out = bytearray()
    for label in name.strip(".").split(".") if name.strip(".") else []:
        raw = label.encode("ascii")
        if not 1 <= len(raw) <= 63:
            raise ValueError(f"bad DNS label {label!r}")
        out += bytes([len(raw)]) + raw
    if not partial:
        out += b"\x00"
    return bytes(out)


def _dec_domains(data: bytes) -> tuple[str, ...]:
    names, i = [], 0
    while i < len(data):
        name, i, _ = _dec_name(data, i, allow_partial=False)
        names.append(name)
    return tuple(names)


def _dec_fqdn(data: bytes) -> ClientFQDN:
    if len(data) < 1:
        raise DecodeError("client FQDN without flags")
    flags = data[0]
    if flags & 0xF8:
        raise DecodeError(f"client FQDN flags {flags:#x}: reserved bits set")
    if len(data) == 1:
        return ClientFQDN(flags, "", False)
    name, i, partial = _dec_name(data, 1, allow_partial=True)
    if i != len(data):
        raise DecodeError("client FQDN: bytes after the name")
    return ClientFQDN(flags, name, partial)


def _enc_fqdn(f: ClientFQDN) -> bytes:
    return bytes([f.flags]) + (_enc_name(f.name, partial=f.partial) if f.name else b"")


def _dec_ntp(data: bytes) -> NTPServer:
    subs: list[tuple[int, IPv6Address | str]] = []
    for code, body in _iter_options(data, "NTP server"):
        if code in (NTP_SUBOPT_SRV_ADDR, NTP_SUBOPT_MC_ADDR):
            subs.append((code, _dec_addr(body)))
        elif code == NTP_SUBOPT_SRV_FQDN:
            name, i, _ = _dec_name(body, 0, allow_partial=False)
            if i != len(body):
                raise DecodeError("NTP server FQDN: bytes after the name")
            subs.append((code, name))
        else:
            raise DecodeError(f"NTP server: unknown sub-option {code}")
    if not subs:
        raise DecodeError("NTP server option without sub-options")
    return NTPServer(tuple(subs))


def _enc_ntp(s: NTPServer) -> bytes:
    out = b""
    for code, v in s.suboptions:
        out += _opt(code, v.packed if isinstance(v, IPv6Address) else _enc_name(v))
    return out


def _dec_iaaddr(data: bytes) -> IAAddress:
    if len(data) < 24:
        raise DecodeError(f"IAADDR of {len(data)} bytes, want at least 24")
    addr = IPv6Address(bytes(data[:16]))
    preferred, valid = struct.unpack_from("!II", data, 16)
    status: StatusCode | None = None
    other: list[tuple[int, bytes]] = []
    for code, body in _iter_options(data[24:], "IAADDR"):
        if code == OPT_STATUS_CODE:
            if status is not None:
                raise DecodeError("IAADDR: two status codes")
            status = _dec_status(body)
        else:
            other.append((code, bytes(body)))
    return IAAddress(addr, preferred, valid, status, tuple(other))


def _enc_iaaddr(a: IAAddress) -> bytes:
    body = a.address.packed + struct.pack("!II", a.preferred, a.valid)
    if a.status is not None:
        body += _opt(OPT_STATUS_CODE, _enc_status(a.status))
    return body + b"".join(_opt(c, b) for c, b in a.other)


def _dec_ia_na(data: bytes) -> IANA:
    if len(data) < 12:
        raise DecodeError(f"IA_NA of {len(data)} bytes, want at least 12")
    iaid, t1, t2 = struct.unpack_from("!III", data)
    addrs: list[IAAddress] = []
    status: StatusCode | None = None
    other: list[tuple[int, bytes]] = []
    for code, body in _iter_options(data[12:], "IA_NA"):
        if code == OPT_IAADDR:
            addrs.append(_dec_iaaddr(body))
        elif code == OPT_STATUS_CODE:
            if status is not None:
                raise DecodeError("IA_NA: two status codes")
            status = _dec_status(body)
        else:
            other.append((code, bytes(body)))
    return IANA(iaid, t1, t2, tuple(addrs), status, tuple(other))


def _enc_ia_na(ia: IANA) -> bytes:
    body = struct.pack("!III", ia.iaid, ia.t1, ia.t2)
    body += b"".join(_opt(OPT_IAADDR, _enc_iaaddr(a)) for a in ia.addresses)
    if ia.status is not None:
        body += _opt(OPT_STATUS_CODE, _enc_status(ia.status))
    return body + b"".join(_opt(c, b) for c, b in ia.other)


# ---- the option table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OptionCodec:
    field: str
    decode: Callable[[bytes], Any]
    encode: Callable[[Any], bytes]
    repeated: bool = False  # several instances, collected into a tuple in order


def _addrs(v: tuple[IPv6Address, ...]) -> bytes:
    return b"".join(a.packed for a in v)


#: code → how the option maps to a :class:`Message` field; encoding follows this order.
OPTIONS: dict[int, OptionCodec] = {
    OPT_CLIENTID: OptionCodec("client_id", _dec_duid, bytes),
    OPT_SERVERID: OptionCodec("server_id", _dec_duid, bytes),
    OPT_IA_NA: OptionCodec("ia_na", _dec_ia_na, _enc_ia_na, repeated=True),
    OPT_ORO: OptionCodec("oro", _dec_oro, lambda v: struct.pack(f"!{len(v)}H", *v)),
    OPT_PREFERENCE: OptionCodec("preference", _dec_u8, lambda v: bytes([v])),
    OPT_ELAPSED_TIME: OptionCodec("elapsed", _dec_u16, lambda v: struct.pack("!H", v)),
    OPT_UNICAST: OptionCodec("unicast", _dec_addr, lambda v: v.packed),
    OPT_STATUS_CODE: OptionCodec("status", _dec_status, _enc_status),
    OPT_RAPID_COMMIT: OptionCodec("rapid_commit", _dec_empty, lambda v: b""),
    OPT_DNS_SERVERS: OptionCodec("dns_servers", _dec_addrs, _addrs),
    OPT_DOMAIN_LIST: OptionCodec("domains", _dec_domains, lambda v: b"".join(_enc_name(n) for n in v)),
    OPT_SNTP_SERVERS: OptionCodec("sntp_servers", _dec_addrs, _addrs),
    OPT_CLIENT_FQDN: OptionCodec("fqdn", _dec_fqdn, _enc_fqdn),
    OPT_NTP_SERVER: OptionCodec("ntp_servers", _dec_ntp, _enc_ntp, repeated=True),
    OPT_SOL_MAX_RT: OptionCodec("sol_max_rt", _dec_u32, lambda v: struct.pack("!I", v)),
}


def decode(data: bytes) -> Message:
    """Parse one client/server message; :class:`DecodeError` for anything malformed."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"not bytes: {type(data).__name__}")
    data = bytes(data)
    if len(data) < HEADER:
        raise DecodeError(f"message of {len(data)} bytes, shorter than the header")
    msg_type = data[0]
    if msg_type == 0 or msg_type in (RELAY_FORW, RELAY_REPL):
        raise DecodeError(f"message type {msg_type} is not a client/server message")
    xid = int.from_bytes(data[1:4], "big")
    values: dict[str, Any] = {}
    repeated: dict[str, list[Any]] = {}
    other: list[tuple[int, bytes]] = []
    for code, body in _iter_options(data[HEADER:], "message"):
        codec = OPTIONS.get(code)
        if codec is None:
            other.append((code, body))
        elif codec.repeated:
            repeated.setdefault(codec.field, []).append(codec.decode(body))
        elif codec.field in values:
            raise DecodeError(f"option {code} repeated")
        else:
            values[codec.field] = codec.decode(body)
    for name, items in repeated.items():
        values[name] = tuple(items)
    try:
        return Message(msg_type, xid, other=tuple(other), **values)
    except (TypeError, ValueError) as e:  # pragma: no cover - the table and the fields agree
        raise DecodeError(str(e)) from None


def encode(msg: Message) -> bytes:
    """The wire form of ``msg`` (ValueError for a value that cannot be encoded)."""
    if not 0 <= msg.xid < 1 << 24:
        raise ValueError(f"transaction id {msg.xid} is not 24 bits")
    out = bytearray(bytes([msg.msg_type]) + msg.xid.to_bytes(3, "big"))
    for code, codec in OPTIONS.items():
        value = getattr(msg, codec.field)
        if value is None or value is False or (codec.repeated and not value):
            continue
        for v in value if codec.repeated else (value,):
            out += _opt(code, codec.encode(v))
    for code, body in msg.other:
        out += _opt(code, body)
    return bytes(out)


def replace(msg: Message, **changes: Any) -> Message:
    return dataclasses.replace(msg, **changes)
