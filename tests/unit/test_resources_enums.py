"""netd.resources.enums: string forms, kernel numbers, fallbacks, flags (netd.md §3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from netd.resources.enums import (
    ALL_ENUMS,
    ALL_FLAGS,
    AddressFlags,
    ADSelect,
    ARPAllTargets,
    ARPValidate,
    BondMode,
    BondXmitHashPolicy,
    ConfigLayer,
    ConntrackState,
    DefaultAction,
    Duplex,
    FailOverMAC,
    Family,
    LACPRate,
    LinkFlags,
    LinkType,
    MatchOperator,
    NetEnum,
    NfTablesChainHook,
    NfTablesChainPriority,
    NfTablesVerdict,
    OperationalState,
    Operator,
    Port,
    PrimaryReselect,
    Protocol,
    RouteFlags,
    RouteProtocol,
    RouteType,
    RoutingTable,
    Scope,
    VLANProtocol,
)

DOCUMENTED: dict[type[NetEnum], dict[int, str]] = {
    ConfigLayer: {0: "default", 1: "cmdline", 2: "platform", 3: "operator", 4: "configuration"},
    Operator: {0: "dhcp4", 1: "dhcp6", 2: "vip"},
    Family: {2: "inet4", 10: "inet6"},
    Scope: {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"},
    RoutingTable: {0: "unspec", 253: "default", 254: "main", 255: "local"},
    RouteType: dict(
        enumerate(
            [
                "unspec",
                "unicast",
                "local",
                "broadcast",
                "anycast",
                "multicast",
                "blackhole",
                "unreachable",
                "prohibit",
                "throw",
                "nat",
                "xresolve",
            ]
        )
    ),
    RouteProtocol: {
        0: "unspec",
        1: "redirect",
        2: "kernel",
        3: "boot",
        4: "static",
        9: "ra",
        10: "mrt",
        11: "zebra",
        12: "bird",
        13: "dnrouted",
        14: "xorp",
        15: "ntk",
        16: "dhcp",
        17: "mrtd",
        18: "keepalived",
        42: "babel",
        99: "openr",
        186: "bgp",
        187: "isis",
        188: "ospf",
        189: "rip",
        192: "eigrp",
    },
    OperationalState: dict(
        enumerate(["unknown", "notPresent", "down", "lowerLayerDown", "testing", "dormant", "up"])
    ),
    Port: {
        0: "TwistedPair",
        1: "AUI",
        2: "MII",
        3: "Fibre",
        4: "BNC",
        5: "DirectAttach",
        0xEF: "None",
        0xFF: "Other",
    },
    Duplex: {0: "Half", 1: "Full", 255: "Unknown"},
    BondMode: dict(
        enumerate(
            [
                "balance-rr",
                "active-backup",
                "balance-xor",
                "broadcast",
                "802.3ad",
                "balance-tlb",
                "balance-alb",
            ]
        )
    ),
    BondXmitHashPolicy: dict(enumerate(["layer2", "layer3+4", "layer2+3", "encap2+3", "encap3+4"])),
    LACPRate: {0: "slow", 1: "fast"},
    ARPValidate: dict(enumerate(["none", "active", "backup", "all"])),
    ARPAllTargets: {0: "any", 1: "all"},
    PrimaryReselect: dict(enumerate(["always", "better", "failure"])),
    ADSelect: dict(enumerate(["stable", "bandwidth", "count"])),
    VLANProtocol: {33024: "802.1q", 34984: "802.1ad"},
    NfTablesChainHook: dict(enumerate(["prerouting", "input", "forward", "output", "postrouting"])),
    NfTablesChainPriority: {
        -(2**31): "first",
        -400: "conntrack-defrag",
        -300: "raw",
        -225: "selinux-first",
        -200: "conntrack",
        -150: "mangle",
        -100: "nat-dest",
        0: "filter",
        50: "security",
        100: "nat-source",
        225: "selinux-last",
        300: "conntrack-helper",
        2**31 - 1: "last",
    },
    NfTablesVerdict: {0: "drop", 1: "accept"},
    MatchOperator: {0: "==", 1: "!="},
    ConntrackState: {8: "new", 4: "related", 2: "established", 1: "invalid"},
    Protocol: {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"},
    DefaultAction: {0: "accept", 1: "block"},
}

LINK_TYPES = {
    0: "netrom",
    1: "ether",
    2: "eether",
    3: "ax25",
    4: "pronet",
    5: "chaos",
    6: "ieee802",
    7: "arcnet",
    8: "atalk",
    15: "dlci",
    19: "atm",
    23: "metricom",
    24: "ieee1394",
    27: "eui64",
    32: "infiniband",
    256: "slip",
    257: "cslip",
    258: "slip6",
    259: "cslip6",
    260: "rsrvd",
    264: "adapt",
    270: "rose",
    271: "x25",
    272: "hwx25",
    280: "can",
    512: "ppp",
    513: "cisco",
    516: "lapb",
    517: "ddcmp",
    518: "rawhdlc",
    768: "ipip",
    769: "tunnel6",
    770: "frad",
    771: "skip",
    772: "loopback",
    773: "localtlk",
    774: "fddi",
    775: "bif",
    776: "sit",
    777: "ip/ddp",
    778: "gre",
    779: "pimreg",
    780: "hippi",
    781: "ash",
    782: "econet",
    783: "irda",
    784: "fcpp",
    785: "fcal",
    786: "fcpl",
    **{787 + i: f"fcfb_{i}" for i in range(13)},
    800: "tr",
    801: "ieee802.11",
    802: "ieee802.11_prism",
    803: "ieee802.11_radiotap",
    804: "ieee802.15.4",
    805: "ieee802.15.4_monitor",
    820: "phonet",
    821: "phonet_pipe",
    822: "caif",
    823: "ip6gre",
    824: "netlink",
    825: "6lowpan",
    65534: "nohdr",
    65535: "void",
}
DOCUMENTED[LinkType] = LINK_TYPES


def test_every_enum_is_covered() -> None:
    assert set(DOCUMENTED) == set(ALL_ENUMS)


@pytest.mark.parametrize("cls", list(DOCUMENTED), ids=lambda c: c.__name__)
def test_documented_string_forms(cls: type[NetEnum]) -> None:
    table = DOCUMENTED[cls]
    assert {int(m): str(m) for m in cls} == table
    for value, label in table.items():
        m = cls(value)
        assert m.known
        assert str(m) == label == f"{m}" == m.label
        assert cls.parse(label) is m
        assert cls.parse(value) is m
        assert cls.from_name(label) is m


def test_unknown_numbers_fall_back_like_go_stringer() -> None:
    assert str(Family(3)) == "Family(3)"
    assert str(RoutingTable(180)) == "RoutingTable(180)"
    assert int(RoutingTable(180)) == 180
    assert RoutingTable(180) is RoutingTable(180)
    assert not RoutingTable(180).known
    assert RoutingTable.parse("RoutingTable(180)") is RoutingTable(180)
    assert str(LinkType(9)) == "LinkType(9)"
    assert str(RouteProtocol(5)) == "RouteProtocol(5)"
    assert str(NfTablesChainPriority(-5)) == "NfTablesChainPriority(-5)"
    with pytest.raises(ValueError):
        RoutingTable.parse("Family(3)")
    with pytest.raises(ValueError):
        Family.parse("inet5")
    with pytest.raises(ValueError):
        Family.parse(True)


@given(st.sampled_from(ALL_ENUMS), st.integers(-(2**31), 2**31 - 1))
def test_any_number_round_trips_through_its_string(cls: type[NetEnum], n: int) -> None:
    m = cls(n)
    assert int(m) == n
    assert cls.parse(str(m)) is m


def test_bond_options_treat_empty_as_zero() -> None:
    bond = (BondMode, BondXmitHashPolicy, LACPRate, ARPValidate, ARPAllTargets, PrimaryReselect, ADSelect)
    for cls in bond:
        assert int(cls.from_name("")) == 0
    assert FailOverMAC.from_name("") is FailOverMAC.NONE
    assert FailOverMAC.from_name("follow") is FailOverMAC.FOLLOW
    with pytest.raises(ValueError):
        Family.from_name("")
    with pytest.raises(ValueError):
        BondMode.from_name("802.3")


def test_layer_order() -> None:
    assert ConfigLayer.DEFAULT < ConfigLayer.CMDLINE < ConfigLayer.PLATFORM < ConfigLayer.OPERATOR
    assert ConfigLayer.OPERATOR < ConfigLayer.CONFIGURATION


def test_family_of() -> None:
    import ipaddress

    assert Family.of(ipaddress.ip_address("10.0.0.1")) is Family.INET4
    assert Family.of(ipaddress.ip_interface("fe80::1/64")) is Family.INET6


# ---- flags --------------------------------------------------------------------------------

FLAG_BITS: dict[type, list[tuple[int, str]]] = {
    RouteFlags: [
        (0x100, "notify"),
        (0x200, "cloned"),
        (0x400, "equalize"),
        (0x800, "prefix"),
        (0x1000, "lookup_table"),
        (0x2000, "fib_match"),
        (0x4000, "offload"),
        (0x8000, "trap"),
    ],
    AddressFlags: [
        (0x1, "temporary"),
        (0x2, "nodad"),
        (0x4, "optimistic"),
        (0x8, "dadfailed"),
        (0x10, "homeaddress"),
        (0x20, "deprecated"),
        (0x40, "tentative"),
        (0x80, "permanent"),
        (0x100, "mngmtmpaddr"),
        (0x200, "noprefixroute"),
        (0x400, "mcautojoin"),
        (0x800, "stableprivacy"),
    ],
    LinkFlags: list(
        enumerate(
            [
                "UP",
                "BROADCAST",
                "DEBUG",
                "LOOPBACK",
                "POINTTOPOINT",
                "NOTRAILERS",
                "RUNNING",
                "NOARP",
                "PROMISC",
                "ALLMULTI",
                "MASTER",
                "SLAVE",
                "MULTICAST",
                "PORTSEL",
                "AUTOMEDIA",
                "DYNAMIC",
                "LOWER_UP",
                "DORMANT",
                "ECHO",
            ]
        )
    ),
}
FLAG_BITS[LinkFlags] = [(1 << i, name) for i, name in FLAG_BITS[LinkFlags]]


def test_flags_cover_documented_bits() -> None:
    assert set(FLAG_BITS) == set(ALL_FLAGS)
    for cls, bits in FLAG_BITS.items():
        assert [(int(m), str(m)) for m in cls] == bits


def test_flag_strings() -> None:
    assert str(AddressFlags(0)) == ""
    assert str(AddressFlags.PERMANENT) == "permanent"
    assert str(AddressFlags.PERMANENT | AddressFlags.NODAD) == "nodad,permanent"
    assert str(LinkFlags(0x11043)) == "UP,BROADCAST,RUNNING,MULTICAST,LOWER_UP"
    assert str(RouteFlags(0)) == ""
    assert LinkFlags.parse("UP,BROADCAST,RUNNING,MULTICAST,LOWER_UP") == 0x11043
    assert AddressFlags.parse("") == 0
    assert AddressFlags.parse(["permanent", "nodad"]) == 0x82
    with pytest.raises(ValueError):
        AddressFlags.parse("permanent,bogus")
    # unknown bits are kept numerically, not named
    assert int(AddressFlags(0x80 | 0x10000)) == 0x10080
    assert str(AddressFlags(0x80 | 0x10000)) == "permanent"


@given(st.sampled_from(ALL_FLAGS), st.data())
def test_flag_round_trip(cls: type, data: st.DataObject) -> None:
    known = 0
    for m in cls:
        known |= int(m)
    value = data.draw(st.integers(0, 2**32 - 1)) & known
    f = cls(value)
    assert cls.parse(str(f)) == f


class _M(BaseModel):
    table: RoutingTable
    flags: AddressFlags
    fom: FailOverMAC


def test_pydantic_integration() -> None:
    m = _M.model_validate({"table": "RoutingTable(180)", "flags": "nodad,permanent", "fom": 2})
    assert m.table == 180 and m.flags == 0x82 and m.fom is FailOverMAC.FOLLOW
    assert m.model_dump(mode="json") == {"table": "RoutingTable(180)", "flags": "nodad,permanent", "fom": 2}
    assert _M.model_validate({"table": 254, "flags": 0x80, "fom": 0}).model_dump(mode="json") == {
        "table": "main",
        "flags": "permanent",
        "fom": 0,
    }
    assert _M.model_validate_json(m.model_dump_json()) == m
