"""DHCPv4 codec: round trips, scapy as an independent encoder/decoder, strictness, fuzzing."""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.dhcp4 import options as o
from operators.dhcp4.packet import (
    BOOTREPLY,
    DecodeError,
    Message,
    MessageType,
    decode,
    encode,
    frame_ip_udp,
    parse_ip_udp,
)

scapy = pytest.importorskip("scapy.all")
BOOTP, DHCP, IP, UDP = scapy.BOOTP, scapy.DHCP, scapy.IP, scapy.UDP

MAC = bytes.fromhex("020000000001")
A = ipaddress.IPv4Address


def discover() -> Message:
    return Message(
        xid=0x12345678,
        chaddr=MAC,
        options={
            o.MESSAGE_TYPE: bytes((MessageType.DISCOVER,)),
            o.PARAMETER_REQUEST_LIST: bytes([1, 3, 15, 6, 121, 119, 42, 26, 12]),
            o.MAX_MESSAGE_SIZE: (1500).to_bytes(2, "big"),
            o.REQUESTED_ADDRESS: A("10.0.0.50").packed,
        },
    )


def test_round_trip_and_wire_format() -> None:
    m = discover()
    wire = encode(m)
    assert len(wire) >= 300
    back = decode(wire)
    assert back == m
    # ascending option codes (operators.md §2.3), END last
    codes = []
    i = 240
    while wire[i] != 255:
        codes.append(wire[i])
        i += 2 + wire[i + 1]
    assert codes == sorted(codes)


def test_scapy_reads_ours() -> None:
    p = BOOTP(encode(discover()))
    assert p.xid == 0x12345678 and p.chaddr[:6] == MAC and p.flags == 0 and p.secs == 0
    opts = dict(x for x in p[DHCP].options if isinstance(x, tuple))
    assert opts["message-type"] == 1
    assert list(opts["param_req_list"]) == [1, 3, 15, 6, 121, 119, 42, 26, 12]
    assert opts["max_dhcp_size"] == 1500
    assert opts["requested_addr"] == "10.0.0.50"
    assert "client_id" not in opts


def test_we_read_scapys() -> None:
    pkt = BOOTP(op=2, xid=7, yiaddr="10.0.0.50", siaddr="0.0.0.0", chaddr=MAC + bytes(10)) / DHCP(
        options=[
            ("message-type", "ack"),
            ("server_id", "10.0.0.1"),
            ("subnet_mask", "255.255.255.0"),
            ("router", "10.0.0.1"),
            ("name_server", "10.0.0.1", "10.0.0.3"),
            ("lease_time", 600),
            ("hostname", b"node-a"),
            ("domain", b"lab.test"),
            (26, (1400).to_bytes(2, "big")),
            "end",
        ]
    )
    m = decode(bytes(pkt))
    assert m.op == BOOTREPLY and m.xid == 7 and m.chaddr == MAC and m.type is MessageType.ACK
    assert m.yiaddr == A("10.0.0.50") and m.server_id == A("10.0.0.1")
    assert o.ip_list(m.options[o.DNS_SERVERS]) == [A("10.0.0.1"), A("10.0.0.3")]
    assert o.u32(m.options[o.LEASE_TIME]) == 600
    assert o.text(m.options[o.HOSTNAME]) == "node-a"
    assert o.u16(m.options[o.INTERFACE_MTU]) == 1400


def test_ip_udp_frame_against_scapy() -> None:
    payload = encode(discover())
    frame = frame_ip_udp(payload)
    p = IP(frame)
    assert p.src == "0.0.0.0" and p.dst == "255.255.255.255" and p.ttl == 64
    assert p[UDP].sport == 68 and p[UDP].dport == 67
    # checksums as scapy computes them
    ref = IP(
        bytes(
            IP(src="0.0.0.0", dst="255.255.255.255", ttl=64, id=0, flags=0)
            / UDP(sport=68, dport=67)
            / payload
        )
    )
    assert p.chksum == ref.chksum and p[UDP].chksum == ref[UDP].chksum
    d = parse_ip_udp(frame)
    assert (d.sport, d.dport, d.payload) == (68, 67, payload)


def test_long_option_split_and_concatenated() -> None:
    m = discover()
    m.options[o.CLASSLESS_ROUTES] = bytes(300)  # RFC 3396: split into 255 + 45, joined back
    assert decode(encode(m)).options[o.CLASSLESS_ROUTES] == bytes(300)


def test_overload_options_in_file_and_sname() -> None:
    pkt = BOOTP(
        op=2, xid=1, chaddr=MAC, file=bytes([12, 3]) + b"abc" + b"\xff", sname=bytes([15, 2]) + b"xy\xff"
    ) / DHCP(options=[("message-type", "offer"), (52, b"\x03"), "end"])
    m = decode(bytes(pkt))
    assert m.options[o.HOSTNAME] == b"abc" and m.options[o.DOMAIN_NAME] == b"xy"


@pytest.mark.parametrize(
    "mutate,reason",
    [
        (lambda b: b[:200], "too short"),
        (lambda b: b[:236] + b"\x00\x00\x00\x00" + b[240:], "cookie"),
        (lambda b: b[:240] + bytes([53, 1, 2, 12, 200]) + b"ab", "overflows"),
        (lambda b: b[:240] + bytes([12, 1, 0x41, 255]), "message type"),
        (lambda b: bytes([9]) + b[1:], "op"),
        (lambda b: b[:240] + bytes([53, 1, 99, 255]), "message type"),
        (lambda b: b[:240] + bytes([53, 1, 2, 52, 1, 9, 255]), "overload"),
    ],
)
def test_strict(mutate: object, reason: str) -> None:
    wire = encode(discover())
    with pytest.raises(DecodeError, match=reason):
        decode(mutate(wire))  # type: ignore[operator]


def test_bad_ip_udp() -> None:
    frame = frame_ip_udp(b"x" * 10)
    for bad in (frame[:10], b"\x65" + frame[1:], frame[:9] + b"\x06" + frame[10:], frame[:-5]):
        with pytest.raises(DecodeError):
            parse_ip_udp(bad)


def test_option_payloads() -> None:
    assert o.prefix_len(A("255.255.255.0")) == 24 and o.prefix_len(A("255.0.255.0")) is None
    assert o.ip_list(b"\x01\x02\x03") is None and o.u16(b"\x01") is None and o.text(b"\x00\x00") is None
    routes = [
        o.ClasslessRoute(ipaddress.IPv4Network("0.0.0.0/0"), A("10.0.0.1")),
        o.ClasslessRoute(ipaddress.IPv4Network("192.168.100.0/24"), A("10.0.0.254")),
        o.ClasslessRoute(ipaddress.IPv4Network("10.9.9.1/32"), A("0.0.0.0")),
    ]
    raw = o.encode_classless_routes(routes)
    assert raw.hex().startswith("000a000001" + "18c0a8640a0000fe")
    assert o.classless_routes(raw) == routes
    assert o.classless_routes(bytes([33]) + bytes(8)) is None  # mask > 32
    assert o.classless_routes(raw[:-1]) is None  # truncated
    assert o.classless_routes(b"") is None


# ---- fuzzing: decode raises DecodeError or nothing ------------------------------------------------


def _decode_never_raises_else(data: bytes) -> None:
    try:
        m = decode(data)
    except DecodeError:
        return
    for code, payload in m.options.items():  # option decoders never raise either
        o.ip_list(payload), o.ip(payload), o.u32(payload), o.u16(payload), o.text(payload)
        if code == o.CLASSLESS_ROUTES:
            o.classless_routes(payload)


@settings(max_examples=600, deadline=None)
@given(st.binary(max_size=700))
def test_fuzz_random(data: bytes) -> None:
    _decode_never_raises_else(data)
    with contextlib.suppress(DecodeError):
        parse_ip_udp(data)


@settings(max_examples=600, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 699), st.integers(0, 255)), max_size=12), st.integers(0, 700))
def test_fuzz_mutated(edits: list[tuple[int, int]], cut: int) -> None:
    base = bytearray(encode(discover()))
    base[0] = 2
    for pos, val in edits:
        if pos < len(base):
            base[pos] = val
    _decode_never_raises_else(bytes(base[: max(cut, 0)] if cut < len(base) else base))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.integers(1, 254), st.binary(max_size=300), max_size=8), st.integers(0, 2**32 - 1))
def test_fuzz_round_trip(opts: dict[int, bytes], xid: int) -> None:
    opts = {k: v for k, v in opts.items() if k != o.OVERLOAD}
    opts[o.MESSAGE_TYPE] = b"\x02"
    m = Message(op=2, xid=xid, chaddr=MAC, options=opts)
    back = decode(encode(m))
    assert back.xid == xid
    assert {k: v for k, v in back.options.items() if v} == {k: v for k, v in opts.items() if v}
