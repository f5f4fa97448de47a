"""netd.resources.ids: the ID formats of netd.md §2 with their documented examples."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netd.netip import format_prefix, parse_addr, parse_prefix
from netd.resources.enums import ConfigLayer, Family, Operator, RoutingTable
from netd.resources.ids import (
    address_id,
    device_config_id,
    external_address_id,
    filtered_node_address_id,
    layered_id,
    link_id,
    operator_id,
    operator_spec_id,
    probe_id,
    route_id,
    split_layered_id,
    vlan_link_name,
)


def P(s: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    return parse_prefix(s)


def A(s: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return parse_addr(s)


def test_link_and_address_ids() -> None:
    assert link_id("eth0") == "eth0"
    assert address_id("eth0", P("172.20.0.2/24")) == "eth0/172.20.0.2/24"
    assert address_id("lo", P("127.0.0.1/8")) == "lo/127.0.0.1/8"
    assert address_id("eth0", P("fe80::9804:17ff:fe9d:3058/64")) == "eth0/fe80::9804:17ff:fe9d:3058/64"
    assert address_id("external", P("10.3.5.7/32")) == "external/10.3.5.7/32"
    assert address_id("eth0", P("::ffff:1.2.3.4/128")) == "eth0/::ffff:1.2.3.4/128"
    assert external_address_id(A("10.3.5.7")) == "external/10.3.5.7/32"
    assert external_address_id(A("2001:db8::1")) == "external/2001:db8::1/128"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((RoutingTable.MAIN, Family.INET4, None, A("172.20.0.1"), 1024, "eth0"), "inet4/172.20.0.1//1024"),
        ((RoutingTable.MAIN, Family.INET4, P("10.0.0.1/32"), None, 1024, "eth0"), "inet4//10.0.0.1/32/1024"),
        ((RoutingTable.MAIN, Family.INET4, None, None, 1000, ""), "inet4///1000"),
        ((RoutingTable.MAIN, Family.INET6, None, A("fe80::1"), 1024, "eth0"), "eth0/inet6/fe80::1//1024"),
        ((RoutingTable.LOCAL, Family.INET4, P("127.0.0.1/32"), None, 0, "lo"), "local/inet4//127.0.0.1/32/0"),
        ((RoutingTable.LOCAL, Family.INET6, P("::1/128"), None, 0, "lo"), "local/lo/inet6//::1/128/0"),
        (
            (RoutingTable(180), Family.INET4, P("10.244.0.0/16"), None, 1, "kubespan"),
            "RoutingTable(180)/inet4//10.244.0.0/16/1",
        ),
        ((180, 2, P("10.244.0.0/16"), None, 1, ""), "RoutingTable(180)/inet4//10.244.0.0/16/1"),
        ((RoutingTable.DEFAULT, Family.INET6, None, None, 0, ""), "default//inet6///0"),
        ((RoutingTable.UNSPEC, Family(3), None, None, 0, ""), "unspec/Family(3)///0"),
    ],
)
def test_route_ids(args: tuple, expected: str) -> None:  # type: ignore[type-arg]
    assert route_id(*args) == expected


def test_operator_and_layered_ids() -> None:
    assert operator_id(Operator.DHCP4, "eth0") == "dhcp4/eth0"
    assert operator_id("dhcp6", "eth0") == "dhcp6/eth0"
    assert operator_id(Operator.VIP, "eth0") == "vip/eth0"
    assert layered_id(ConfigLayer.DEFAULT, "lo/127.0.0.1/8") == "default/lo/127.0.0.1/8"
    assert layered_id("cmdline", "inet4/10.0.0.1//1024") == "cmdline/inet4/10.0.0.1//1024"
    assert layered_id(ConfigLayer.CONFIGURATION, "hostname") == "configuration/hostname"
    assert layered_id(ConfigLayer.PLATFORM, "resolvers") == "platform/resolvers"
    assert layered_id(ConfigLayer.DEFAULT, operator_id(Operator.DHCP4, "eth0")) == "default/dhcp4/eth0"
    assert split_layered_id("cmdline/inet4/10.0.0.1//1024") == (ConfigLayer.CMDLINE, "inet4/10.0.0.1//1024")
    with pytest.raises(ValueError):
        split_layered_id("dhcp4/eth0/hostname")
    assert operator_spec_id(Operator.DHCP4, "eth0", "eth0/172.20.0.2/24") == "dhcp4/eth0/eth0/172.20.0.2/24"
    assert (
        operator_spec_id(Operator.DHCP4, "eth0", route_id(254, 2, None, A("172.20.0.1"), 1024))
        == "dhcp4/eth0/inet4/172.20.0.1//1024"
    )
    assert operator_spec_id(Operator.DHCP4, "eth0", "hostname") == "dhcp4/eth0/hostname"
    assert operator_spec_id(Operator.DHCP4, "eth0", "eth0") == "dhcp4/eth0/eth0"
    assert operator_spec_id(Operator.VIP, "eth0", address_id("eth0", P("10.5.0.100/32"))) == (
        "vip/eth0/eth0/10.5.0.100/32"
    )


def test_other_ids() -> None:
    assert device_config_id("eth0", 0) == "eth0/000"
    assert device_config_id("eth0", 3, 1) == "eth0/003/001"
    assert probe_id("proxy.example.com:80") == "tcp:proxy.example.com:80"
    assert filtered_node_address_id("current", "no-k8s") == "current-no-k8s"


def test_vlan_link_name() -> None:
    assert vlan_link_name("eth0", 100) == "eth0.100"
    assert vlan_link_name("enp0s3f1a", 4094) == "enp0s3f1a.4094"  # 9 + 5 = 14
    name = vlan_link_name("enx0123456789ab", 100)
    assert name.startswith("enx0") and name.endswith(".100") and len(name) == 14
    int(name[4:10], 16)


@st.composite
def prefixes(draw: st.DrawFn) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    if draw(st.booleans()):
        return ipaddress.IPv4Interface((draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 32))))
    return ipaddress.IPv6Interface((draw(st.integers(0, 2**128 - 1)), draw(st.integers(0, 128))))


@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from([Family.INET4, Family.INET6]),
    st.none() | prefixes(),
    st.integers(0, 2**32 - 1),
    st.text("abcdefgh0123456789.-", max_size=15),
)
def test_route_id_structure(
    table: int,
    family: Family,
    dst: ipaddress.IPv4Interface | ipaddress.IPv6Interface | None,
    priority: int,
    link: str,
) -> None:
    rid = route_id(table, family, dst, None, priority, link)
    head = "" if table == 254 else f"{RoutingTable(table)}/"
    mid = f"{link}/" if family == Family.INET6 else ""
    dst_text = "" if dst is None else format_prefix(dst)
    assert rid == f"{head}{mid}{family}//{dst_text}/{priority}"
    if table == 254:
        assert not rid.startswith("main/")
    elif table in (0, 253, 255):
        assert rid.split("/")[0] in ("unspec", "default", "local")
    else:
        assert rid.startswith(f"RoutingTable({table})/")


@given(prefixes(), st.text("abcdefgh0123456789.-", min_size=1, max_size=15))
def test_address_id_round_trip(p: ipaddress.IPv4Interface | ipaddress.IPv6Interface, link: str) -> None:
    aid = address_id(link, p)
    got_link, _, rest = aid.partition("/")
    assert got_link == link
    assert parse_prefix(rest) == p
