"""The lean rtnetlink codec against pyroute2, the reference encoder/decoder.

For generated route, address and link values (both families, each optional
attribute present or absent): our bytes decoded by pyroute2's message classes
give the values, pyroute2's bytes decoded by us give the values, and ours
round-trip. The address status agrees with one built from pyroute2's decoding.
"""

from __future__ import annotations

import datetime as dt
import errno
import ipaddress
import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from netd.controllers.address_spec import wanted_lifetimes
from netd.controllers.route_spec import desired_route
from netd.kernel import netlink as nl
from netd.kernel import rtnl_codec as c
from netd.kernel.rtnl import add_address
from netd.netip import format_prefix, parse_addr, parse_prefix
from netd.resources.address import AddressSpec, AddressStatus
from netd.resources.enums import (
    AddressFlags,
    ConfigLayer,
    Family,
    RouteProtocol,
    RouteType,
    RoutingTable,
    Scope,
)
from netd.resources.route import RouteSpec, RouteStatus

U8 = st.integers(0, 255)
U32 = st.integers(0, 0xFFFFFFFF)


def ips(family: int) -> st.SearchStrategy[Any]:
    if family == 2:
        return st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1))
    return st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1))


def opt(s: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | s


@st.composite
def route_records(draw: st.DrawFn) -> c.RouteRecord:
    family = draw(st.sampled_from([2, 10]))
    return c.RouteRecord(
        family=family,
        dst_len=draw(st.integers(0, 32 if family == 2 else 128)),
        src_len=draw(st.integers(0, 32 if family == 2 else 128)),
        tos=draw(U8),
        table=draw(U8),
        protocol=draw(U8),
        scope=draw(U8),
        type=draw(U8),
        flags=draw(U32),
        dst=draw(opt(ips(family))),
        src=draw(opt(ips(family))),
        iif=draw(opt(U32)),
        oif=draw(opt(U32)),
        gateway=draw(opt(ips(family))),
        priority=draw(opt(U32)),
        prefsrc=draw(opt(ips(family))),
        mtu=draw(opt(U32)),
        advmss=draw(opt(U32)),
        hoplimit=draw(opt(U32)),
        table_id=draw(opt(U32)),
        mark=draw(opt(U32)),
        pref=draw(opt(U8)),
    )


@st.composite
def address_records(draw: st.DrawFn) -> c.AddressRecord:
    family = draw(st.sampled_from([2, 10]))
    label = st.text("abcdefghijklmnopqrstuvwxyz0123456789.:-", min_size=1, max_size=15)
    return c.AddressRecord(
        family=family,
        prefixlen=draw(st.integers(0, 32 if family == 2 else 128)),
        flags=draw(U8),
        scope=draw(U8),
        index=draw(U32),
        address=draw(opt(ips(family))),
        local=draw(opt(ips(family))),
        label=draw(opt(label)),
        broadcast=draw(opt(ips(family))),
        anycast=draw(opt(ips(family))),
        cacheinfo=draw(opt(st.builds(c.CacheInfo, U32, U32, U32, U32))),
        multicast=draw(opt(ips(family))),
        ifa_flags=draw(opt(U32)),
        rt_priority=draw(opt(U32)),
        proto=draw(opt(U8)),
    )


MACS = st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02x}" for x in b))
NAMES = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=15)


@st.composite
def link_records(draw: st.DrawFn) -> c.LinkRecord:
    return c.LinkRecord(
        family=0,
        type=draw(st.integers(0, 0xFFFF)),
        index=draw(st.integers(1, 2**31 - 1)),
        flags=draw(U32),
        change=draw(U32),
        address=draw(opt(MACS)),
        broadcast=draw(opt(MACS)),
        ifname=draw(opt(NAMES)),
        mtu=draw(opt(U32)),
        link=draw(opt(U32)),
        qdisc=draw(opt(NAMES)),
        master=draw(opt(U32)),
        kind=draw(opt(st.sampled_from(["veth", "bridge", "vlan", "bond"]))),
        slave_kind=draw(opt(st.sampled_from(["bridge", "bond"]))),
        carrier=draw(opt(st.integers(0, 1))),
    )


# ---- field ↔ pyroute2 attribute maps ---------------------------------------------------------

ROUTE_HEADER = {
    "family": "family",
    "dst_len": "dst_len",
    "src_len": "src_len",
    "tos": "tos",
    "table": "table",
    "protocol": "proto",
    "scope": "scope",
    "type": "type",
    "flags": "flags",
}
ROUTE_ATTRS = {
    "dst": "RTA_DST",
    "src": "RTA_SRC",
    "iif": "RTA_IIF",
    "oif": "RTA_OIF",
    "gateway": "RTA_GATEWAY",
    "priority": "RTA_PRIORITY",
    "prefsrc": "RTA_PREFSRC",
    "table_id": "RTA_TABLE",
    "mark": "RTA_MARK",
    "pref": "RTA_PREF",
}
ROUTE_METRICS = {"mtu": "RTAX_MTU", "advmss": "RTAX_ADVMSS", "hoplimit": "RTAX_HOPLIMIT"}
ADDR_HEADER = {
    "family": "family",
    "prefixlen": "prefixlen",
    "flags": "flags",
    "scope": "scope",
    "index": "index",
}
ADDR_ATTRS = {
    "address": "IFA_ADDRESS",
    "local": "IFA_LOCAL",
    "label": "IFA_LABEL",
    "broadcast": "IFA_BROADCAST",
    "anycast": "IFA_ANYCAST",
    "multicast": "IFA_MULTICAST",
    "ifa_flags": "IFA_FLAGS",
    "rt_priority": "IFA_RT_PRIORITY",
    "proto": "IFA_PROTO",
}
LINK_HEADER = {"family": "family", "type": "ifi_type", "index": "index", "flags": "flags", "change": "change"}
LINK_ATTRS = {
    "address": "IFLA_ADDRESS",
    "broadcast": "IFLA_BROADCAST",
    "ifname": "IFLA_IFNAME",
    "mtu": "IFLA_MTU",
    "link": "IFLA_LINK",
    "qdisc": "IFLA_QDISC",
    "master": "IFLA_MASTER",
    "carrier": "IFLA_CARRIER",
}
LINKINFO = {"kind": "IFLA_INFO_KIND", "slave_kind": "IFLA_INFO_SLAVE_KIND"}


def py_value(v: Any) -> Any:
    """A record value as pyroute2 gives and takes it (addresses as text)."""
    if isinstance(v, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(v)
    return v


def norm(v: Any) -> Any:
    """A pyroute2 value made comparable (its IPv6 text may differ in form)."""
    if isinstance(v, str):
        try:
            return ipaddress.ip_address(v)
        except ValueError:
            return v
    return v


def _nested(msg: Any, attr: str, names: dict[str, str], r: Any) -> None:
    inner = msg.get_attr(attr)
    for field, name in names.items():
        got = inner.get_attr(name) if inner is not None else None
        assert got == getattr(r, field), (field, got)


def check_route_pyroute2(msg: Any, r: c.RouteRecord) -> None:
    for field, name in ROUTE_HEADER.items():
        assert msg[name] == getattr(r, field), field
    for field, name in ROUTE_ATTRS.items():
        assert norm(msg.get_attr(name)) == getattr(r, field), field
    _nested(msg, "RTA_METRICS", ROUTE_METRICS, r)


def check_addr_pyroute2(msg: Any, a: c.AddressRecord) -> None:
    for field, name in ADDR_HEADER.items():
        assert msg[name] == getattr(a, field), field
    for field, name in ADDR_ATTRS.items():
        got = msg.get_attr(name)
        want = getattr(a, field)
        assert (norm(got) if field != "label" else got) == want, field
    ci = msg.get_attr("IFA_CACHEINFO")
    if a.cacheinfo is None:
        assert ci is None
    else:
        assert (ci["ifa_preferred"], ci["ifa_valid"], ci["cstamp"], ci["tstamp"]) == tuple(a.cacheinfo)


def check_link_pyroute2(msg: Any, lk: c.LinkRecord) -> None:
    for field, name in LINK_HEADER.items():
        assert msg[name] == getattr(lk, field), field
    for field, name in LINK_ATTRS.items():
        assert msg.get_attr(name) == getattr(lk, field), field
    _nested(msg, "IFLA_LINKINFO", LINKINFO, lk)


def pyroute2_route(r: c.RouteRecord, msg_type: int = nl.RTM_NEWROUTE) -> bytes:
    m = rtmsg()
    m["header"]["type"] = msg_type
    m["header"]["flags"] = nl.CREATE_EXCL
    for field, name in ROUTE_HEADER.items():
        m[name] = getattr(r, field)
    attrs = [(name, py_value(getattr(r, f))) for f, name in ROUTE_ATTRS.items() if getattr(r, f) is not None]
    metrics = [(name, getattr(r, f)) for f, name in ROUTE_METRICS.items() if getattr(r, f) is not None]
    if metrics:
        attrs.append(("RTA_METRICS", {"attrs": metrics}))
    m["attrs"] = attrs
    m.encode()
    return bytes(m.data)


def pyroute2_addr(a: c.AddressRecord, msg_type: int = nl.RTM_NEWADDR) -> bytes:
    m = ifaddrmsg()
    m["header"]["type"] = msg_type
    for field, name in ADDR_HEADER.items():
        m[name] = getattr(a, field)
    attrs: list[tuple[str, Any]] = [
        (name, py_value(getattr(a, f))) for f, name in ADDR_ATTRS.items() if getattr(a, f) is not None
    ]
    if a.cacheinfo is not None:
        p, v, cs, ts = a.cacheinfo
        attrs.append(("IFA_CACHEINFO", {"ifa_preferred": p, "ifa_valid": v, "cstamp": cs, "tstamp": ts}))
    m["attrs"] = attrs
    m.encode()
    return bytes(m.data)


def pyroute2_link(lk: c.LinkRecord, msg_type: int = nl.RTM_NEWLINK) -> bytes:
    m = ifinfmsg()
    m["header"]["type"] = msg_type
    for field, name in LINK_HEADER.items():
        m[name] = getattr(lk, field)
    attrs: list[tuple[str, Any]] = [
        (name, getattr(lk, f)) for f, name in LINK_ATTRS.items() if getattr(lk, f) is not None
    ]
    info = [(name, getattr(lk, f)) for f, name in LINKINFO.items() if getattr(lk, f) is not None]
    if info:
        attrs.append(("IFLA_LINKINFO", {"attrs": info}))
    m["attrs"] = attrs
    m.encode()
    return bytes(m.data)


def only(data: bytes) -> c.Message:
    msgs = c.decode(data)
    assert len(msgs) == 1
    return msgs[0]


# ---- the properties -----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(route_records(), st.sampled_from([nl.RTM_NEWROUTE, nl.RTM_DELROUTE]))
def test_route_ours_decoded_by_pyroute2(r: c.RouteRecord, msg_type: int) -> None:
    data = c.encode(msg_type, r, nl.CREATE_EXCL, seq=42)
    msg = rtmsg(data)
    msg.decode()
    assert msg["header"]["type"] == msg_type
    assert msg["header"]["sequence_number"] == 42
    assert msg["header"]["length"] == len(data)
    check_route_pyroute2(msg, r)


@settings(max_examples=300, deadline=None)
@given(route_records(), st.sampled_from([nl.RTM_NEWROUTE, nl.RTM_DELROUTE]))
def test_route_pyroute2_decoded_by_ours(r: c.RouteRecord, msg_type: int) -> None:
    m = only(pyroute2_route(r, msg_type))
    assert m.type == msg_type
    assert m.body == r


@settings(max_examples=300, deadline=None)
@given(address_records(), st.sampled_from([nl.RTM_NEWADDR, nl.RTM_DELADDR]))
def test_address_ours_decoded_by_pyroute2(a: c.AddressRecord, msg_type: int) -> None:
    data = c.encode(msg_type, a, nl.CREATE_EXCL, seq=7)
    msg = ifaddrmsg(data)
    msg.decode()
    assert msg["header"]["type"] == msg_type
    check_addr_pyroute2(msg, a)


@settings(max_examples=300, deadline=None)
@given(address_records(), st.sampled_from([nl.RTM_NEWADDR, nl.RTM_DELADDR]))
def test_address_pyroute2_decoded_by_ours(a: c.AddressRecord, msg_type: int) -> None:
    m = only(pyroute2_addr(a, msg_type))
    assert m.type == msg_type
    assert m.body == a


@settings(max_examples=200, deadline=None)
@given(link_records())
def test_link_both_ways(lk: c.LinkRecord) -> None:
    msg = ifinfmsg(c.encode(nl.RTM_NEWLINK, lk))
    msg.decode()
    check_link_pyroute2(msg, lk)
    assert only(pyroute2_link(lk, nl.RTM_DELLINK)).body == lk


@settings(max_examples=200, deadline=None)
@given(st.lists(route_records() | address_records() | link_records(), max_size=8))
def test_event_datagram_round_trip(records: list[Any]) -> None:
    """A datagram of mixed events (as a multicast socket reads them) decodes in order."""
    types = {c.RouteRecord: nl.RTM_NEWROUTE, c.AddressRecord: nl.RTM_DELADDR, c.LinkRecord: nl.RTM_NEWLINK}
    data = b"".join(c.encode(types[type(r)], r, 0, seq=i) for i, r in enumerate(records))
    msgs = c.decode(data)
    assert [m.body for m in msgs] == records
    assert [m.seq for m in msgs] == list(range(len(records)))


# ---- statuses agree with the pyroute2-based decoders ------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(route_records())
def test_route_status_matches_the_record(r: c.RouteRecord) -> None:
    """The status built by the fast path equals one validated field by field."""
    if r.dst is not None:
        r.dst = ipaddress.ip_interface((r.dst, r.dst_len)).network.network_address
    data = c.encode(nl.RTM_NEWROUTE, r)
    names = {r.oif: "eth0"} if r.oif else {}
    rec = only(data).body
    ours = c.route_status(rec, names)
    assert RouteStatus.model_validate(ours.model_dump()) == ours
    assert ours.family == rec.family and ours.priority == (rec.priority or 0)
    assert ours.dst == (None if rec.dst is None else ipaddress.ip_interface((rec.dst, rec.dst_len)))
    assert ours.gateway == rec.gateway and ours.src == rec.prefsrc
    assert ours.out_link_name == names.get(rec.oif or 0, "") and ours.table == rec.table


def pyroute2_address_status(msg: Any, link_name: str) -> AddressStatus:
    """The AddressStatus of a pyroute2-decoded RTM_NEWADDR: the independent oracle."""
    addr_text = msg.get_attr("IFA_ADDRESS") or msg.get_attr("IFA_LOCAL")
    local = msg.get_attr("IFA_LOCAL")
    flags = msg.get_attr("IFA_FLAGS")
    if flags is None:
        flags = msg["flags"]
    return AddressStatus(
        address=ipaddress.ip_interface(f"{local or addr_text}/{msg['prefixlen']}"),
        local=ipaddress.ip_address(local) if local and local != addr_text else None,
        broadcast=msg.get_attr("IFA_BROADCAST") or None,
        link_index=msg["index"],
        link_name=link_name,
        family=Family(msg["family"]),
        scope=Scope(msg["scope"]),
        flags=AddressFlags(flags),
    )


@settings(max_examples=200, deadline=None)
@given(address_records())
def test_address_status_matches_rtnl_decode(a: c.AddressRecord) -> None:
    if a.address is None and a.local is None:
        a.local = ipaddress.ip_address("10.0.0.1" if a.family == 2 else "fd00::1")
    data = c.encode(nl.RTM_NEWADDR, a)
    msg = ifaddrmsg(data)
    msg.decode()
    ours = c.address_status(only(data).body, "eth0")
    theirs = pyroute2_address_status(msg, "eth0")
    assert ours.model_dump() == theirs.model_dump()


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([2, 10]).flatmap(lambda f: st.tuples(ips(f), st.integers(0, 32 if f == 2 else 128))))
def test_fast_interface_is_ip_interface(ip_plen: tuple[Any, int]) -> None:
    ip, plen = ip_plen
    want = ipaddress.ip_interface((ip, plen))
    got = c._interface_fast(ip, plen)
    assert c._interface is c._interface_fast  # the import-time check kept the fast one
    assert c._same_interface(got, want)
    assert (got.ip, got.network, got.with_prefixlen, got.is_private) == (
        want.ip,
        want.network,
        want.with_prefixlen,
        want.is_private,
    )
    assert format_prefix(got) == format_prefix(want)


# ---- specs → messages ---------------------------------------------------------------------------


def test_route_from_spec_is_the_rtnl_message() -> None:
    spec = RouteSpec(
        family=Family.INET4,
        dst=parse_prefix("10.10.0.0/16"),
        gateway=parse_addr("192.168.1.1"),
        src=parse_addr("192.168.1.2"),
        out_link_name="eth0",
        table=RoutingTable(1000),
        priority=1024,
        scope=Scope.GLOBAL,
        type=RouteType.UNICAST,
        protocol=RouteProtocol.STATIC,
        mtu=1400,
        layer=ConfigLayer.CONFIGURATION,
    )
    msg = rtmsg(c.encode(nl.RTM_NEWROUTE, desired_route(spec, oif=3), nl.CREATE_EXCL))
    msg.decode()
    assert msg["header"]["flags"] == nl.CREATE_EXCL
    assert (msg["family"], msg["dst_len"], msg["table"], msg["proto"], msg["type"]) == (2, 16, 252, 4, 1)
    assert msg.get_attr("RTA_DST") == "10.10.0.0"
    assert msg.get_attr("RTA_GATEWAY") == "192.168.1.1"
    assert msg.get_attr("RTA_PREFSRC") == "192.168.1.2"
    assert msg.get_attr("RTA_OIF") == 3
    assert msg.get_attr("RTA_PRIORITY") == 1024
    assert msg.get_attr("RTA_TABLE") == 1000
    assert msg.get_attr("RTA_METRICS").get_attr("RTAX_MTU") == 1400


def test_default_route_from_spec_has_no_dst_and_main_table() -> None:
    spec = RouteSpec(family=Family.INET6, gateway=parse_addr("fe80::1"), table=RoutingTable.MAIN, priority=0)
    r = desired_route(spec, oif=2)
    # IPv6 metric 0 is the kernel's 1024 (the normalisation the old second path lacked)
    assert (r.dst, r.dst_len, r.table, r.table_id, r.priority, r.mtu, r.type) == (
        None,
        0,
        254,
        254,
        1024,
        None,
        1,
    )
    delete = c.del_route(r)
    msg = rtmsg(c.encode(nl.RTM_DELROUTE, delete, nl.DELETE))
    msg.decode()
    assert msg.get_attr("RTA_GATEWAY") == "fe80::1"
    assert msg.get_attr("RTA_PREFSRC") is None and msg.get_attr("RTA_METRICS") is None


def _address_record(spec: AddressSpec, index: int, now: dt.datetime) -> c.AddressRecord:
    """The body the address spec controller sends for ``spec`` (its one spec→message path)."""
    assert spec.address is not None
    valid, preferred = wanted_lifetimes(spec, now)
    rec: c.AddressRecord = add_address(
        index, spec.address, int(spec.scope), int(spec.flags), valid=valid, preferred=preferred, replace=True
    ).record
    return rec


def test_address_from_spec() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    spec = AddressSpec(
        address=parse_prefix("172.20.0.2/24"),
        link_name="eth0",
        family=Family.INET4,
        flags=AddressFlags.PERMANENT | AddressFlags.NOPREFIXROUTE,
        valid_until=now + dt.timedelta(seconds=300),
        preferred_until=now + dt.timedelta(seconds=600),
    )
    msg = ifaddrmsg(c.encode(nl.RTM_NEWADDR, _address_record(spec, 5, now), nl.CREATE_REPLACE))
    msg.decode()
    assert (msg["family"], msg["prefixlen"], msg["flags"], msg["index"]) == (2, 24, 0x80, 5)
    assert msg.get_attr("IFA_LOCAL") == msg.get_attr("IFA_ADDRESS") == "172.20.0.2"
    assert msg.get_attr("IFA_BROADCAST") == "172.20.0.255"
    assert msg.get_attr("IFA_FLAGS") == 0x280
    ci = msg.get_attr("IFA_CACHEINFO")
    assert (ci["ifa_valid"], ci["ifa_preferred"]) == (300, 300)  # preferred never beyond valid


def test_address_point_to_point_and_forever() -> None:
    a = c.new_address(1, parse_prefix("10.0.0.1/32"))
    assert a.broadcast is None and a.cacheinfo is None
    v6 = c.new_address(1, parse_prefix("2001:db8::1/64"), flags=0x80)
    assert v6.broadcast is None and v6.family == 10
    gone = c.del_address(1, parse_prefix("2001:db8::1/64"))
    assert (gone.local, gone.prefixlen, gone.ifa_flags) == (parse_addr("2001:db8::1"), 64, None)


# ---- acks ---------------------------------------------------------------------------------------------


def _ack(seq: int, code: int, text: str = "") -> bytes:
    flags = nl.NLM_F_CAPPED
    orig = nl.NLMSGHDR.pack(16, nl.RTM_NEWROUTE, 0, seq, 0)
    tlv = b""
    if text:
        raw = text.encode() + b"\0"
        tlv = struct.pack("=HH", 4 + len(raw), nl.NLMSGERR_ATTR_MSG) + raw + b"\0" * (-len(raw) % 4)
        flags |= nl.NLM_F_ACK_TLVS
    body = struct.pack("=i", -code) + orig + tlv
    return nl.NLMSGHDR.pack(16 + len(body), nl.NLMSG_ERROR, flags, seq, 0) + body


def test_error_acks_decode_errno_and_reason() -> None:
    msgs = c.decode(_ack(1, 0) + _ack(2, errno.EEXIST, "Route exists") + _ack(3, errno.ENODEV))
    assert [(m.seq, m.body) for m in msgs] == [
        (1, c.NlError(0)),
        (2, c.NlError(errno.EEXIST, "Route exists")),
        (3, c.NlError(errno.ENODEV)),
    ]


def test_truncated_input_stops_cleanly() -> None:
    data = c.encode(nl.RTM_NEWROUTE, c.new_route(2, parse_prefix("10.0.0.0/8")))
    assert c.decode(data[:-3]) == []
    assert len(c.decode(data + data[:10])) == 1
