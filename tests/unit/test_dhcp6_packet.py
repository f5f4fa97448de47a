"""DHCPv6 codec (operators/dhcp6/packet.py): round trips, scapy as an independent codec, fuzzing."""

from __future__ import annotations

import contextlib
from ipaddress import IPv6Address as A

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.dhcp6 import packet as p

DUID = bytes.fromhex("00030001020000000601")
SID = bytes.fromhex("000100012c4a5b6c0a0b0c0d0e0f")


def reply() -> p.Message:
    return p.Message(
        p.REPLY, 0xABCDEF, client_id=DUID, server_id=SID,
        ia_na=(p.IANA(0x601, 5, 10, (p.IAAddress(A("fd00::100"), 15, 20),)),),
        rapid_commit=True, dns_servers=(A("fd00::53"), A("fd00::54")), domains=("lab.test", "b.test"),
        sntp_servers=(A("fd00::123"),), fqdn=p.ClientFQDN(1, "node-a.lab.test"),
        ntp_servers=(p.NTPServer(((1, A("fd00::124")), (3, "ntp.lab.test"))),), preference=255,
        status=p.StatusCode(0, "all good"), unicast=A("fd00::1"), sol_max_rt=7200,
        other=((16, b"\x00\x00\x00\x09\x00\x03abc"),),
    )  # fmt: skip


def test_round_trip() -> None:
    m = reply()
    assert p.decode(p.encode(m)) == m
    s = p.Message(
        p.SOLICIT, 1, client_id=DUID, ia_na=(p.IANA(1),), oro=(23, 24), elapsed=0, rapid_commit=True
    )
    assert p.decode(p.encode(s)) == s


def test_ours_read_by_scapy() -> None:
    from scapy.layers.dhcp6 import (
        DHCP6_Reply,
        DHCP6OptClientFQDN,
        DHCP6OptClientId,
        DHCP6OptDNSDomains,
        DHCP6OptDNSServers,
        DHCP6OptIA_NA,
        DHCP6OptIAAddress,
        DHCP6OptRapidCommit,
        DHCP6OptServerId,
        DHCP6OptSNTPServers,
    )  # fmt: skip

    s = DHCP6_Reply(p.encode(reply()))
    assert s.msgtype == 7 and s.trid == 0xABCDEF
    assert bytes(s[DHCP6OptClientId].duid) == DUID and bytes(s[DHCP6OptServerId].duid) == SID
    ia = s[DHCP6OptIA_NA]
    assert (ia.iaid, ia.T1, ia.T2) == (0x601, 5, 10)
    addr = ia[DHCP6OptIAAddress]
    assert (addr.addr, addr.preflft, addr.validlft) == ("fd00::100", 15, 20)
    assert s[DHCP6OptDNSServers].dnsservers == ["fd00::53", "fd00::54"]
    assert s[DHCP6OptDNSDomains].dnsdomains == ["lab.test.", "b.test."]
    assert s[DHCP6OptSNTPServers].sntpservers == ["fd00::123"]
    assert s[DHCP6OptClientFQDN].fqdn == b"node-a.lab.test."
    assert DHCP6OptRapidCommit in s


def test_scapy_read_by_ours() -> None:
    from scapy.layers.dhcp6 import (
        DHCP6_Advertise,
        DHCP6NTPSubOptSrvAddr,
        DHCP6OptClientId,
        DHCP6OptDNSServers,
        DHCP6OptIA_NA,
        DHCP6OptIAAddress,
        DHCP6OptNTPServer,
        DHCP6OptPref,
        DHCP6OptServerId,
        DHCP6OptStatusCode,
    )  # fmt: skip

    pkt = (
        DHCP6_Advertise(trid=0x123456)
        / DHCP6OptClientId(duid=DUID)
        / DHCP6OptServerId(duid=SID)
        / DHCP6OptIA_NA(iaid=7, T1=100, T2=160, ianaopts=[
            DHCP6OptIAAddress(addr="fd00::7", preflft=200, validlft=300),
            DHCP6OptStatusCode(statuscode=0, statusmsg="ok"),
        ])
        / DHCP6OptPref(prefval=9)
        / DHCP6OptDNSServers(dnsservers=["fd00::53"])
        / DHCP6OptNTPServer(ntpserver=[DHCP6NTPSubOptSrvAddr(addr="fd00::123")])
    )  # fmt: skip
    m = p.decode(bytes(pkt))
    assert (m.msg_type, m.xid, m.client_id, m.server_id, m.preference) == (
        p.ADVERTISE,
        0x123456,
        DUID,
        SID,
        9,
    )
    ia = m.ia(7)
    assert ia is not None and (ia.t1, ia.t2, ia.status) == (100, 160, p.StatusCode(0, "ok"))
    assert ia.addresses == (p.IAAddress(A("fd00::7"), 200, 300),)
    assert m.dns_servers == (A("fd00::53"),)
    assert [a for s in m.ntp_servers for a in s.addresses()] == [A("fd00::123")]


@pytest.mark.parametrize(
    "raw, why",
    [
        (b"", "short"),
        (b"\x07\x00\x00", "short header"),
        (b"\x00\x00\x00\x01", "type 0"),
        (b"\x0c" + bytes(40), "relay"),
        (b"\x07\x00\x00\x01\x00\x01\x00\x10abc", "overrun"),
        (b"\x07\x00\x00\x01\x00\x01", "truncated header"),
        (b"\x07\x00\x00\x01\x00\x01\x00\x01a", "short DUID"),
        (b"\x07\x00\x00\x01\x00\x0e\x00\x01a", "rapid commit with a body"),
        (b"\x07\x00\x00\x01\x00\x17\x00\x05abcde", "dns not /16"),
        (b"\x07\x00\x00\x01\x00\x03\x00\x04abcd", "short IA_NA"),
        (b"\x07\x00\x00\x01\x00\x18\x00\x03\x02ab", "name without root"),
        (b"\x07\x00\x00\x01\x00\x18\x00\x03\xc0\x0c\x00", "compression"),
        (b"\x07\x00\x00\x01\x00\x07\x00\x01\x01\x00\x07\x00\x01\x02", "duplicate preference"),
        (b"\x07\x00\x00\x01\x00\x0d\x00\x03\x00\x00\xff", "status not utf-8"),
    ],
)
def test_malformed(raw: bytes, why: str) -> None:
    with pytest.raises(p.DecodeError):
        p.decode(raw)


def test_ia_na_option_overflow() -> None:
    """An IAADDR that claims more than its IA_NA holds."""
    ia = b"\x00\x00\x00\x01" + bytes(8) + b"\x00\x05\x00\x40" + bytes(24)
    with pytest.raises(p.DecodeError):
        p.decode(b"\x07\x00\x00\x01" + b"\x00\x03" + len(ia).to_bytes(2, "big") + ia)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random(data: bytes) -> None:
    with contextlib.suppress(p.DecodeError):
        p.decode(data)


@settings(max_examples=3000, deadline=None)
@given(st.data())
def test_fuzz_mutated(data: st.DataObject) -> None:
    """Valid messages with bytes flipped, cut, inserted: decode or DecodeError, and a decoded
    message encodes back to bytes that decode to the same message."""
    raw = bytearray(p.encode(reply()))
    for _ in range(data.draw(st.integers(1, 6))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        i = data.draw(st.integers(0, len(raw)))
        if op == "flip" and i < len(raw):
            raw[i] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del raw[i : i + data.draw(st.integers(1, 8))]
        else:
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=8))
    try:
        m = p.decode(bytes(raw))
    except p.DecodeError:
        return
    try:
        again = p.encode(m)
    except ValueError:
        return  # e.g. a label with a dot cannot be re-encoded; decoding never made it raise
    assert p.decode(again) == m
