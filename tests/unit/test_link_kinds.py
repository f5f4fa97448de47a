"""Bond and VLAN link kinds: the encoding tables of netd.md §5.1 and the decoders, without a kernel.

Messages are encoded by pyroute2's own request path (what ``AsyncIPRoute.link`` sends) and
checked on the wire (attribute numbers and sizes); kernel answers are built byte by byte as
the kernel's ``bond_fill_info``/``vlan_fill_info`` write them, then decoded as the
controllers do (pyroute2 → KernelLink / LinkStatus).
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from pyroute2.iproute.linux import get_arguments_processor
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from netd.controllers.link_spec import Create, Delete, SetMaster, SetUp, Update, order_specs, plan_link
from netd.kernel import rtnl_codec
from netd.kernel.links import KINDS, GenericKind, KernelLink, NotReady, kernel_link, kind_for
from netd.kernel.links.bond import ATTRS, BondKind, comparable, decode, encode, sent
from netd.kernel.links.vlan import VLANKind
from netd.kernel.rtnl_decode import link_status
from netd.resources.enums import (
    ARPValidate,
    BondMode,
    BondXmitHashPolicy,
    FailOverMAC,
    LACPRate,
    LinkFlags,
    LinkType,
    VLANProtocol,
)
from netd.resources.link import BondMasterSpec, LinkSpec, VLANSpec

# ---- wire helpers ----------------------------------------------------------------------------

IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_LINKINFO = 3, 4, 5, 18
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
BOND = {name: i for i, (name, _) in enumerate(ifinfmsg.ifinfo.data_map["bond"].nla_map)}


def nla(atype: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, atype) + payload + b"\0" * (-length % 4)


def u8(v: int) -> bytes:
    return struct.pack("=B", v)


def u16(v: int) -> bytes:
    return struct.pack("=H", v)


def u32(v: int) -> bytes:
    return struct.pack("=I", v)


def parse(data: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    while pos + 4 <= len(data):
        length, atype = struct.unpack_from("=HH", data, pos)
        out.append((atype & 0x3FFF, data[pos + 4 : pos + length]))
        pos += (length + 3) & ~3
    return out


def newlink(name: str, index: int, kind: str, data: bytes, link: int = 0, flags: int = 0) -> Any:
    """An RTM_NEWLINK as the kernel sends it, decoded by pyroute2."""
    attrs = nla(IFLA_IFNAME, name.encode() + b"\0") + nla(IFLA_MTU, u32(1500))
    if link:
        attrs += nla(IFLA_LINK, u32(link))
    attrs += nla(IFLA_LINKINFO, nla(IFLA_INFO_KIND, kind.encode() + b"\0") + nla(IFLA_INFO_DATA, data))
    body = struct.pack("=BxHiII", 0, 1, index, flags, 0) + attrs
    msg = ifinfmsg(struct.pack("=IHHII", 16 + len(body), 16, 0, 0, 0) + body)
    msg.decode()
    return msg


def record(msg: Any) -> Any:
    """The lean codec's LinkRecord of the same message (what the status controllers decode)."""
    return rtnl_codec.decode(bytes(msg.data))[0].body


def request_info_data(kind: str, **kwargs: Any) -> list[tuple[int, bytes]]:
    """IFLA_INFO_DATA of the RTM_NEWLINK pyroute2 sends for ``link("add", kind=..., **kwargs)``."""
    proc = get_arguments_processor("link", "add", {"ifname": "x", "kind": kind, **kwargs})
    msg = ifinfmsg()
    for key, value in proc.items():
        if key in ("index", "flags", "change", "family", "ifi_type"):
            msg[key] = value
        else:
            msg["attrs"].append([key if key.startswith("IFLA_") else ifinfmsg.name2nla(key), value])
    msg.encode()
    raw = bytes(msg.data)[16 + 16 :]
    linkinfo = dict(parse(raw))[IFLA_LINKINFO]
    return parse(dict(parse(linkinfo))[IFLA_INFO_DATA])


def kernel_bond(
    mode: int = 0,
    miimon: int = 0,
    updelay_ticks: int = 0,
    primary: int = 0,
    lacp_rate: int = 0,
    xmit: int = 0,
    use_carrier: int = 1,
    peer_notif_ticks: int = 0,
    arp_validate: int = 0,
    ad_actor_sys_prio: int = 65535,
    tlb: int = 1,
) -> bytes:
    """IFLA_INFO_DATA of a bond as Linux 6.1 ``bond_fill_info`` writes it (kernel defaults)."""
    b = BOND
    out = nla(b["IFLA_BOND_MODE"], u8(mode))
    out += nla(b["IFLA_BOND_ACTIVE_SLAVE"], u32(7))
    out += nla(b["IFLA_BOND_MIIMON"], u32(miimon))
    out += nla(b["IFLA_BOND_UPDELAY"], u32(updelay_ticks * miimon))
    out += nla(b["IFLA_BOND_DOWNDELAY"], u32(0))
    out += nla(b["IFLA_BOND_PEER_NOTIF_DELAY"], u32(peer_notif_ticks * miimon))
    out += nla(b["IFLA_BOND_USE_CARRIER"], u8(use_carrier))
    out += nla(b["IFLA_BOND_ARP_INTERVAL"], u32(0))
    out += nla(b["IFLA_BOND_ARP_VALIDATE"], u32(arp_validate))
    out += nla(b["IFLA_BOND_ARP_ALL_TARGETS"], u32(0))
    if primary:
        out += nla(b["IFLA_BOND_PRIMARY"], u32(primary))
    out += nla(b["IFLA_BOND_PRIMARY_RESELECT"], u8(0))
    out += nla(b["IFLA_BOND_FAIL_OVER_MAC"], u8(0))
    out += nla(b["IFLA_BOND_XMIT_HASH_POLICY"], u8(xmit))
    out += nla(b["IFLA_BOND_RESEND_IGMP"], u32(1))
    out += nla(b["IFLA_BOND_NUM_PEER_NOTIF"], u8(1))
    out += nla(b["IFLA_BOND_ALL_SLAVES_ACTIVE"], u8(0))
    out += nla(b["IFLA_BOND_MIN_LINKS"], u32(0))
    out += nla(b["IFLA_BOND_LP_INTERVAL"], u32(1))
    out += nla(b["IFLA_BOND_PACKETS_PER_SLAVE"], u32(1))
    out += nla(b["IFLA_BOND_AD_LACP_ACTIVE"], u8(1))
    out += nla(b["IFLA_BOND_AD_LACP_RATE"], u8(lacp_rate))
    out += nla(b["IFLA_BOND_AD_SELECT"], u8(0))
    out += nla(b["IFLA_BOND_TLB_DYNAMIC_LB"], u8(tlb))
    out += nla(b["IFLA_BOND_MISSED_MAX"], u8(2))
    if mode == 4:
        out += nla(b["IFLA_BOND_AD_ACTOR_SYS_PRIO"], u16(ad_actor_sys_prio))
        out += nla(b["IFLA_BOND_AD_USER_PORT_KEY"], u16(0))
        out += nla(b["IFLA_BOND_AD_ACTOR_SYSTEM"], b"\0" * 6)
        out += nla(b["IFLA_BOND_AD_INFO"], nla(1, u16(1)) + nla(2, u16(2)))
    return out


def bond_spec(**kw: Any) -> LinkSpec:
    return LinkSpec(
        name="bond0",
        logical=True,
        up=True,
        kind="bond",
        type=LinkType.ETHER,
        bond_master=BondMasterSpec(**kw),
    )


# ---- bond: which attributes are sent per mode ------------------------------------------------

ALWAYS = {
    "mode",
    "xmit_hash_policy",
    "arp_all_targets",
    "primary_reselect",
    "fail_over_mac",
    "ad_select",
    "miimon",
    "resend_igmp",
    "min_links",
    "lp_interval",
    "num_peer_notif",
    "all_slaves_active",
    "use_carrier",
}


@pytest.mark.parametrize(
    ("mode", "extra"),
    [
        (BondMode.BALANCE_RR, {"arp_validate", "arp_interval", "packets_per_slave"}),
        (BondMode.ACTIVE_BACKUP, {"arp_validate", "arp_interval", "primary"}),
        (BondMode.BALANCE_XOR, {"arp_validate", "arp_interval"}),
        (BondMode.BROADCAST, {"arp_validate", "arp_interval"}),
        (BondMode.IEEE8023AD, {"lacp_rate", "ad_actor_sys_prio", "ad_user_port_key"}),
        (BondMode.BALANCE_TLB, {"primary", "tlb_logical_lb"}),
        (BondMode.BALANCE_ALB, {"primary", "tlb_logical_lb"}),
    ],
)
def test_bond_attributes_sent_per_mode(mode: BondMode, extra: set[str]) -> None:
    assert set(sent(BondMasterSpec(mode=mode))) == ALWAYS | extra
    delays = {"updelay", "downdelay", "peer_notify_delay"}
    assert set(sent(BondMasterSpec(mode=mode, miimon=100))) == ALWAYS | extra | delays


def test_bond_encoding_on_the_wire() -> None:
    """Attribute numbers and sizes of §5.1's table, as pyroute2 sends them (with our table,
    which has PEER_NOTIF_DELAY = 28, missing from pyroute2's)."""
    spec = BondMasterSpec(
        mode=BondMode.IEEE8023AD,
        lacp_rate=LACPRate.FAST,
        xmit_hash_policy=BondXmitHashPolicy.LAYER34,
        miimon=100,
        updelay=200,
        peer_notify_delay=300,
        use_carrier=True,
        ad_user_port_key=5,
    )
    wire = request_info_data("bond", **encode(spec))
    sizes = {t: len(v) for t, v in wire}
    values = dict(wire)
    assert [t for t, _ in wire] == [BOND[ATTRS[f]] for f in sent(spec)]
    assert BOND["IFLA_BOND_PEER_NOTIF_DELAY"] == 28 and values[28] == u32(300)
    assert values[BOND["IFLA_BOND_MODE"]] == u8(4)
    assert values[BOND["IFLA_BOND_AD_LACP_RATE"]] == u8(1)
    assert values[BOND["IFLA_BOND_XMIT_HASH_POLICY"]] == u8(1)
    assert values[BOND["IFLA_BOND_USE_CARRIER"]] == u8(1)
    assert values[BOND["IFLA_BOND_AD_ACTOR_SYS_PRIO"]] == u16(65535)  # the default for 802.3ad
    assert values[BOND["IFLA_BOND_RESEND_IGMP"]] == u32(1)  # 0 → 1
    u8s = {
        "MODE",
        "XMIT_HASH_POLICY",
        "AD_LACP_RATE",
        "PRIMARY_RESELECT",
        "FAIL_OVER_MAC",
        "AD_SELECT",
        "NUM_PEER_NOTIF",
        "ALL_SLAVES_ACTIVE",
        "USE_CARRIER",
    }
    for t, size in sizes.items():
        name = next(n for n, i in BOND.items() if i == t).removeprefix("IFLA_BOND_")
        assert size == (1 if name in u8s else 2 if name.startswith("AD_") else 4), name


def test_bond_encoding_active_backup_primary() -> None:
    spec = BondMasterSpec(mode=BondMode.ACTIVE_BACKUP, primary=7, arp_validate=ARPValidate.ALL)
    enc = encode(spec)
    assert enc["IFLA_BOND_PRIMARY"] == 7
    assert enc["IFLA_BOND_ARP_VALIDATE"] == 3
    assert "IFLA_BOND_UPDELAY" not in enc and "IFLA_BOND_PEER_NOTIF_DELAY" not in enc  # miimon 0
    assert "IFLA_BOND_TLB_DYNAMIC_LB" not in enc  # only in balance-tlb/alb
    assert "IFLA_BOND_AD_LACP_RATE" not in enc and "IFLA_BOND_PACKETS_PER_SLAVE" not in enc


# ---- bond: decoding and comparing ------------------------------------------------------------


def test_bond_decode_from_kernel_message() -> None:
    msg = newlink(
        "bond0",
        5,
        "bond",
        kernel_bond(mode=1, miimon=100, updelay_ticks=3, primary=7, xmit=2, peer_notif_ticks=2),
    )
    link = kernel_link(msg)
    got = decode(link.info_data)
    assert got.mode == BondMode.ACTIVE_BACKUP
    assert (got.miimon, got.updelay, got.peer_notify_delay, got.primary) == (100, 300, 200, 7)
    assert got.xmit_hash_policy == BondXmitHashPolicy.LAYER23 and got.use_carrier
    assert (got.resend_igmp, got.lp_interval, got.packets_per_slave, got.tlb_logical_lb) == (1, 1, 1, 1)
    # LinkStatus shows the same
    name, status = link_status(record(msg), with_sysfs=False)
    assert name == "bond0" and status.kind == "bond" and status.bond_master == got


@pytest.mark.parametrize(
    "spec",
    [
        BondMasterSpec(
            mode=BondMode.IEEE8023AD,
            lacp_rate=LACPRate.FAST,
            miimon=100,
            updelay=300,
            use_carrier=True,
            arp_validate=ARPValidate.ALL,
        ),  # arp_validate not sent in 802.3ad
        BondMasterSpec(
            mode=BondMode.ACTIVE_BACKUP,
            primary=7,
            miimon=100,
            updelay=350,
            use_carrier=True,
            peer_notify_delay=250,
            lacp_rate=LACPRate.FAST,
        ),  # rounded to ticks; lacp not sent
        BondMasterSpec(mode=BondMode.BALANCE_RR, updelay=500, use_carrier=True),  # no miimon: no delays
    ],
)
def test_applied_bond_compares_equal(spec: BondMasterSpec) -> None:
    """What the kernel reports after applying ``encode(spec)`` is in sync with the spec."""
    d = spec.with_defaults()
    ticks = d.updelay // d.miimon if d.miimon else 0
    pticks = d.peer_notify_delay // d.miimon if d.miimon else 0
    data = kernel_bond(
        mode=int(d.mode),
        miimon=d.miimon,
        updelay_ticks=ticks,
        primary=d.primary,
        lacp_rate=int(d.lacp_rate) if d.mode == BondMode.IEEE8023AD else 0,
        use_carrier=int(d.use_carrier),
        peer_notif_ticks=pticks,
    )
    link = kernel_link(newlink("bond0", 5, "bond", data))
    lspec = bond_spec(**spec.model_dump())
    assert BondKind().in_sync(lspec, link)
    assert plan_link(lspec, {"bond0": link}, owned=True)[0] == [SetUp("bond0", True)]


def test_bond_differences_are_seen() -> None:
    link = kernel_link(newlink("bond0", 5, "bond", kernel_bond(mode=4, miimon=100, use_carrier=1)))
    base = {"mode": BondMode.IEEE8023AD, "miimon": 100, "use_carrier": True}
    kind = BondKind()
    assert kind.in_sync(bond_spec(**base), link)
    for change in (
        {"lacp_rate": LACPRate.FAST},
        {"miimon": 200},
        {"use_carrier": False},
        {"mode": BondMode.BALANCE_XOR},
        {"updelay": 100},
        {"fail_over_mac": FailOverMAC.ACTIVE},
    ):
        assert not kind.in_sync(bond_spec(**(base | change)), link), change


def test_bond_primary() -> None:
    """The kernel reports a primary only while it is enslaved: none reported is taken as
    matching (else a bond with a missing primary would be rebuilt on every pass); another
    reported primary is a difference."""
    kind = BondKind()
    spec = bond_spec(mode=BondMode.ACTIVE_BACKUP, primary=7, use_carrier=True)
    none = kernel_link(newlink("bond0", 5, "bond", kernel_bond(mode=1)))
    other = kernel_link(newlink("bond0", 5, "bond", kernel_bond(mode=1, primary=8)))
    same = kernel_link(newlink("bond0", 5, "bond", kernel_bond(mode=1, primary=7)))
    assert kind.in_sync(spec, none) and kind.in_sync(spec, same)
    assert not kind.in_sync(spec, other)
    assert kind.in_sync(
        bond_spec(mode=BondMode.IEEE8023AD, primary=7, use_carrier=True),
        kernel_link(newlink("bond0", 5, "bond", kernel_bond(mode=4, primary=8))),
    )


def test_comparable_rounds_delays_like_the_kernel() -> None:
    c = comparable(BondMasterSpec(miimon=100, updelay=250, downdelay=99, peer_notify_delay=100))
    assert (c.updelay, c.downdelay, c.peer_notify_delay) == (200, 0, 100)
    assert comparable(BondMasterSpec(updelay=250)).updelay == 0


def test_bond_update_disrupts_plan() -> None:
    """Changed options: bond down, slaves detached, update, bond up again (the slaves'
    own specs re-attach them in the same pass)."""
    links = {
        "bond0": KernelLink(
            "bond0",
            5,
            kind="bond",
            flags=LinkFlags.UP,
            info_data=dict(
                newlink("b", 5, "bond", kernel_bond(mode=1))
                .get_attr("IFLA_LINKINFO")
                .get_attr("IFLA_INFO_DATA")["attrs"]
            ),
        ),
        "eth1": KernelLink("eth1", 2, kind="veth", master_index=5, flags=LinkFlags.UP),
        "eth2": KernelLink("eth2", 3, kind="veth", master_index=5, flags=LinkFlags.UP),
        "eth0.5": KernelLink("eth0.5", 9, kind="vlan", link_index=5),
    }
    actions, problem = plan_link(bond_spec(mode=BondMode.ACTIVE_BACKUP, miimon=100), links, owned=True)
    assert problem is None
    assert actions == [
        SetUp("bond0", False),
        SetMaster("eth1", 0),
        SetMaster("eth2", 0),
        Update("bond0"),
        SetUp("bond0", True),
    ]


def test_bond_ordering_masters_before_slaves() -> None:
    specs = [
        LinkSpec(name="a1", master_name="zbond", slave_index=1),
        LinkSpec(name="z0", master_name="zbond", slave_index=0),
        LinkSpec(name="vlan5", logical=True, kind="vlan", parent_name="zbond"),
        bond_spec().model_copy(update={"name": "zbond"}),
        LinkSpec(name="eth9"),
    ]
    order = [s.name for s in order_specs(specs)]
    assert order.index("zbond") < order.index("z0") < order.index("a1")
    assert order.index("zbond") < order.index("vlan5")


# IFLA_LINKINFO of RTM_NEWLINK answers captured on the UML kernel (tools/uml-run, Linux 6.1):
#   ip link add bond0 type bond mode active-backup miimon 100 updelay 300 downdelay 100 \
#       peer_notify_delay 200 primary eth9 xmit_hash_policy layer2+3   (eth9, ifindex 3, enslaved)
#   ip link add bond1 type bond mode 802.3ad lacp_rate fast miimon 100 xmit_hash_policy layer3+4 \
#       ad_user_port_key 5
#   ip link add link eth8p name vl5 type vlan id 5 protocol 802.1ad
CAPTURED = {
    "bond0": "09000100626f6e6400000000cc00020005000100010000000800030064000000080004002c010000080005006400"
    "000008001c00c800000005000600010000000800070000000000080009000000000008000a000000000008000b00030000"
    "0005000c000000000005000d000000000005000e000200000008000f0001000000050010000100000005001100000000000800"
    "1200000000000800130001000000080014000100000005001d00010000000500150000000000050016000000000005001b00"
    "0100000005001e00020000000500200001000000",
    "bond1": "09000100626f6e6400000000e0000200050001000400000008000300640000000800040000000000080005000000"
    "000008001c000000000005000600010000000800070000000000080009000000000008000a000000000005000c0000000000"
    "05000d000000000005000e000100000008000f00010000000500100001000000050011000000000008001200000000000800"
    "130001000000080014000100000005001d00010000000500150001000000050016000000000005001b000100000005001e00"
    "02000000050020000100000006001800ffff000006001900050000000a001a000000000000000000",
    "vl5": "09000100766c616e00000000200002000600050088a8000006000100050000000c00020001000000ffffffff",
}


def captured(name: str, index: int, link: int = 0) -> Any:
    linkinfo = parse(bytes.fromhex(CAPTURED[name]))
    kind = dict(linkinfo)[IFLA_INFO_KIND].rstrip(b"\0").decode()
    return newlink(name, index, kind, dict(linkinfo)[IFLA_INFO_DATA], link=link)


def test_captured_kernel_bonds_decode_and_compare_equal() -> None:
    msg = captured("bond0", 6)
    want = BondMasterSpec(
        mode=BondMode.ACTIVE_BACKUP,
        miimon=100,
        updelay=300,
        downdelay=100,
        peer_notify_delay=200,
        primary=3,
        xmit_hash_policy=BondXmitHashPolicy.LAYER23,
        use_carrier=True,
    )
    got = link_status(record(msg), with_sysfs=False)[1].bond_master
    assert got == want.with_defaults().model_copy(update={"packets_per_slave": 1})  # reported in every mode
    assert BondKind().in_sync(bond_spec(**want.model_dump()), kernel_link(msg))
    assert not BondKind().in_sync(bond_spec(**(want.model_dump() | {"primary": 4})), kernel_link(msg))

    msg = captured("bond1", 7)
    want = BondMasterSpec(
        mode=BondMode.IEEE8023AD,
        lacp_rate=LACPRate.FAST,
        miimon=100,
        xmit_hash_policy=BondXmitHashPolicy.LAYER34,
        ad_user_port_key=5,
        use_carrier=True,
    )
    got = decode(kernel_link(msg).info_data)
    assert (got.ad_actor_sys_prio, got.ad_user_port_key, got.lacp_rate, got.tlb_logical_lb) == (
        65535,
        5,
        1,
        1,
    )
    assert BondKind().in_sync(bond_spec(**want.model_dump()), kernel_link(msg))
    assert not BondKind().in_sync(
        bond_spec(**(want.model_dump() | {"lacp_rate": LACPRate.SLOW})), kernel_link(msg)
    )


# ---- VLAN ------------------------------------------------------------------------------------


def vlan_spec(vid: int, proto: int = 0, parent: str = "eth0") -> LinkSpec:
    return LinkSpec(
        name="eth0.5",
        logical=True,
        up=True,
        kind="vlan",
        type=LinkType.ETHER,
        parent_name=parent,
        vlan=VLANSpec(vlan_id=vid, vlan_protocol=VLANProtocol(proto) if proto else VLANProtocol(0)),
    )


def kernel_vlan(vid: int, proto: int, parent: int = 2) -> KernelLink:
    data = nla(1, u16(vid)) + nla(2, u32(0) + u32(0xFFFFFFFF)) + nla(5, struct.pack(">H", proto))
    return kernel_link(newlink("eth0.5", 9, "vlan", data, link=parent))


def test_vlan_create_args_and_wire() -> None:
    eth0 = KernelLink("eth0", 2, kind="veth")
    bond = KernelLink("bond0", 4, kind="bond")
    args = VLANKind().create_args(vlan_spec(5, 0x88A8), {"eth0": eth0})
    assert args == {"link": 2, "vlan_id": 5, "vlan_protocol": 0x88A8}
    on_bond = VLANKind().create_args(vlan_spec(5, parent="bond0"), {"bond0": bond})
    assert on_bond == {"link": 4, "vlan_id": 5, "vlan_protocol": 0x8100}  # parent, never master
    wire = dict(request_info_data("vlan", vlan_id=5, vlan_protocol=0x88A8))
    assert wire[1] == u16(5) and wire[5] == b"\x88\xa8"  # IFLA_VLAN_PROTOCOL big-endian
    with pytest.raises(NotReady):
        VLANKind().create_args(vlan_spec(5), {})


def test_vlan_recreated_on_id_or_protocol_change() -> None:
    kind = VLANKind()
    link = kernel_vlan(5, 0x8100)
    assert link.link_index == 2
    assert not kind.must_recreate(vlan_spec(5), link)  # protocol 0 is 802.1Q
    assert not kind.must_recreate(vlan_spec(5, 0x8100), link)
    assert kind.must_recreate(vlan_spec(6), link)
    assert kind.must_recreate(vlan_spec(5, 0x88A8), link)
    links = {"eth0.5": link, "eth0": KernelLink("eth0", 2, kind="veth")}
    assert plan_link(vlan_spec(6), links, owned=True)[0] == [Delete("eth0.5"), Create("eth0.5")]
    actions, problem = plan_link(vlan_spec(6), links, owned=False)
    assert actions == [] and problem is not None  # not ours: left alone
    assert plan_link(vlan_spec(5), links, owned=True)[0] == [SetUp("eth0.5", True)]


def test_captured_vlan() -> None:
    link = kernel_link(captured("vl5", 8, link=4))
    assert not VLANKind().must_recreate(vlan_spec(5, 0x88A8), link)
    assert VLANKind().must_recreate(vlan_spec(5), link)


def test_vlan_status_decoded() -> None:
    _, status = link_status(
        record(newlink("eth0.5", 9, "vlan", nla(1, u16(7)) + nla(5, b"\x88\xa8"), link=2)), with_sysfs=False
    )
    assert (
        status.vlan == VLANSpec(vlan_id=7, vlan_protocol=VLANProtocol.IEEE8021AD) and status.link_index == 2
    )


def test_kinds_registered() -> None:
    assert isinstance(KINDS["bond"], BondKind) and isinstance(KINDS["vlan"], VLANKind)
    dummy = kind_for("dummy")
    assert isinstance(dummy, GenericKind) and dummy.kind == "dummy"
    assert dummy.create_args(LinkSpec(name="d0", logical=True, kind="dummy"), {}) == {}
