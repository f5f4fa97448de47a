"""netd.controllers.merge: the merge rules of netd.md §4.3, as pure functions.

Rule tables with concrete specs first, then hypothesis properties: the result
does not depend on arrival order, the higher layer wins, link fields fold
across layers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosi import Backoff, Context, State
from netd.controllers.merge import (
    MergeController,
    address_merge_controller,
    link_merge_controller,
    merge_addresses,
    merge_controllers,
    merge_hostname,
    merge_links,
    merge_operators,
    merge_resolvers,
    merge_routes,
    merge_time_servers,
)
from netd.netip import parse_addr, parse_prefix
from netd.resources import (
    NETWORK,
    NETWORK_CONFIG,
    AddressSpec,
    BondMasterSpec,
    BridgeMasterSpec,
    BridgeSlave,
    HostnameSpec,
    LinkSpec,
    OperatorSpec,
    ResolverSpec,
    RouteSpec,
    STPSpec,
    TimeServerSpec,
    VLANSpec,
    WireguardPeer,
    WireguardSpec,
)
from netd.resources.base import Spec
from netd.resources.enums import (
    BondMode,
    ConfigLayer,
    Family,
    LinkType,
    Operator,
    RouteProtocol,
    RouteType,
    RoutingTable,
    Scope,
    VLANProtocol,
)
from netd.resources.ids import layered_id
from netd.resources.operator import DHCP4OperatorSpec

D, CMD, PLAT, OP, CFG = (
    ConfigLayer.DEFAULT,
    ConfigLayer.CMDLINE,
    ConfigLayer.PLATFORM,
    ConfigLayer.OPERATOR,
    ConfigLayer.CONFIGURATION,
)
LAYERS = list(ConfigLayer)
S = TypeVar("S", bound=Spec)


def addr(prefix: str, link: str = "eth0", layer: ConfigLayer = D, **kw: Any) -> AddressSpec:
    return AddressSpec.configured(parse_prefix(prefix), link, layer).model_copy(update=kw)


def route(
    gw: str | None,
    dst: str | None = None,
    metric: int = 1024,
    link: str = "eth0",
    layer: ConfigLayer = D,
    **kw: Any,
) -> RouteSpec:
    gateway = parse_addr(gw) if gw else None
    prefix = parse_prefix(dst) if dst else None
    family = Family.of(gateway) if gateway else (Family.of(prefix) if prefix else Family.INET4)
    return RouteSpec(
        family=family,
        dst=prefix,
        gateway=gateway,
        out_link_name=link,
        table=RoutingTable.MAIN,
        priority=metric,
        type=RouteType.UNICAST,
        protocol=RouteProtocol.STATIC,
        layer=layer,
        **kw,
    ).normalized()


def layered(*specs: Any) -> list[tuple[str, Any]]:
    """(network-config ID, spec) for specs of the config layers: ``<layer>/<natural id>``."""
    return [(layered_id(s.layer, s.id()), s) for s in specs]


def shuffled(items: list[Any], seed: int = 0) -> list[Any]:
    out = list(items)
    random.Random(seed).shuffle(out)
    return out


def all_orders(items: list[Any]) -> Iterable[list[Any]]:
    yield items
    yield list(reversed(items))
    for seed in range(5):
        yield shuffled(items, seed)


def check_orders(merge: Callable[[Any], dict[str, Any]], items: list[tuple[str, Any]]) -> dict[str, Any]:
    """Merge ``items`` in several arrival orders; all results must be equal."""
    first = merge(items)
    for order in all_orders(items):
        assert merge(order) == first
    return first


# ---- addresses, routes, operators -------------------------------------------------------


def test_addresses_distinct_all_kept() -> None:
    a = addr("10.0.0.2/24", layer=CFG)
    b = addr("10.0.0.3/24", layer=D)
    c = addr("10.0.0.2/24", link="eth1", layer=PLAT)
    got = check_orders(merge_addresses, layered(a, b, c))
    assert got == {"eth0/10.0.0.2/24": a, "eth0/10.0.0.3/24": b, "eth1/10.0.0.2/24": c}


def test_address_collision_higher_layer_wins_verbatim() -> None:
    low = addr("10.0.0.2/24", layer=CMD, scope=Scope.LINK)
    high = addr("10.0.0.2/24", layer=CFG)
    mid = addr("10.0.0.2/24", layer=PLAT, announce_with_arp=True)
    got = check_orders(merge_addresses, layered(low, high, mid))
    assert got == {"eth0/10.0.0.2/24": high}
    assert got["eth0/10.0.0.2/24"].layer is CFG  # copied verbatim, layer included


def test_address_collision_equal_layers_later_id_wins() -> None:
    # two operators on the operator layer: dhcp6/... sorts after dhcp4/...
    v4 = addr("10.0.0.2/24", layer=OP)
    v6 = addr("10.0.0.2/24", layer=OP, scope=Scope.LINK)
    items = [("dhcp4/eth0/eth0/10.0.0.2/24", v4), ("dhcp6/eth0/eth0/10.0.0.2/24", v6)]
    assert check_orders(merge_addresses, items) == {"eth0/10.0.0.2/24": v6}


def test_layer_comes_from_the_spec_not_the_id() -> None:
    # the DHCP4 MTU link spec is written by an operator with layer default (netd.md §4.2)
    op_default = addr("10.0.0.2/24", layer=D, scope=Scope.LINK)
    cmdline = addr("10.0.0.2/24", layer=CMD)
    items = [("dhcp4/eth0/eth0/10.0.0.2/24", op_default), ("cmdline/eth0/10.0.0.2/24", cmdline)]
    assert check_orders(merge_addresses, items) == {"eth0/10.0.0.2/24": cmdline}


def test_routes_same_dst_different_gateway_or_metric_all_kept() -> None:
    a = route("10.0.0.1", layer=CFG)
    b = route("10.0.0.254", layer=CFG)
    c = route("10.0.0.1", metric=2048, layer=D)
    d = route("10.0.0.1", dst="192.168.0.0/16", layer=D)
    got = check_orders(merge_routes, layered(a, b, c, d))
    assert got == {
        "inet4/10.0.0.1//1024": a,
        "inet4/10.0.0.254//1024": b,
        "inet4/10.0.0.1//2048": c,
        "inet4/10.0.0.1/192.168.0.0/16/1024": d,
    }


def test_routes_collision_higher_layer_wins_ipv4_regardless_of_out_link() -> None:
    low = route("10.0.0.1", link="eth0", layer=CMD)
    high = route("10.0.0.1", link="eth1", layer=CFG)
    items = [("cmdline/eth0-route", low), ("configuration/eth1-route", high)]
    assert check_orders(merge_routes, items) == {"inet4/10.0.0.1//1024": high}


def test_routes_ipv6_out_link_is_part_of_the_key() -> None:
    a = route("fe80::1", link="eth0", layer=CMD)
    b = route("fe80::1", link="eth1", layer=CFG)
    got = check_orders(merge_routes, layered(a, b))
    assert got == {"eth0/inet6/fe80::1//1024": a, "eth1/inet6/fe80::1//1024": b}


def test_routes_other_table_is_a_different_key() -> None:
    main = route("10.0.0.1", layer=CFG)
    other = route("10.0.0.1", layer=D).model_copy(update={"table": RoutingTable(180)})
    got = check_orders(merge_routes, layered(main, other))
    assert set(got) == {"inet4/10.0.0.1//1024", "RoutingTable(180)/inet4/10.0.0.1//1024"}


def op(link: str, layer: ConfigLayer, metric: int = 1024, kind: Operator = Operator.DHCP4) -> OperatorSpec:
    return OperatorSpec(
        operator=kind,
        link_name=link,
        require_up=True,
        dhcp4=DHCP4OperatorSpec(route_metric=metric),
        layer=layer,
    )


def test_operators_collision_and_layers() -> None:
    default = op("eth0", D, metric=1024)
    cfg = op("eth0", CFG, metric=100)
    other = op("eth1", D)
    v6 = op("eth0", CFG, kind=Operator.DHCP6)
    items = [
        ("configuration/dhcp4/eth0", cfg),
        ("configuration/dhcp6/eth0", v6),
        ("default/dhcp4/eth0", default),
        ("default/dhcp4/eth1", other),
    ]
    got = check_orders(merge_operators, items)
    assert got == {"dhcp4/eth0": cfg, "dhcp4/eth1": other, "dhcp6/eth0": v6}
    same = [("cmdline/dhcp4/eth0", op("eth0", CMD, 1)), ("cmdline/zz", op("eth0", CMD, 2))]
    assert check_orders(merge_operators, same) == {"dhcp4/eth0": op("eth0", CMD, 2)}


@pytest.mark.parametrize(
    "merge",
    [
        merge_addresses,
        merge_routes,
        merge_operators,
        merge_links,
        merge_hostname,
        merge_resolvers,
        merge_time_servers,
    ],
)
def test_no_specs_nothing_merged(merge: Callable[[Any], dict[str, Any]]) -> None:
    assert merge([]) == {}


# ---- links ------------------------------------------------------------------------------


def link(name: str = "eth0", layer: ConfigLayer = D, **kw: Any) -> LinkSpec:
    return LinkSpec(name=name, layer=layer, **kw)


def test_link_fields_fold_across_layers() -> None:
    d = link(up=True, type=LinkType.ETHER)
    cfg = link(layer=CFG, mtu=9000)
    plat = link(layer=PLAT, kind="", logical=False, parent_name="")
    got = check_orders(merge_links, layered(cfg, d, plat))
    assert got == {"eth0": link(layer=CFG, up=True, mtu=9000, type=LinkType.ETHER)}


def test_link_zero_in_higher_layer_does_not_undo() -> None:
    low = link(layer=CMD, up=True, mtu=1400, logical=True, kind="dummy", parent_name="eth9")
    high = link(layer=CFG, up=False, mtu=0, logical=False, kind="", parent_name="")
    got = check_orders(merge_links, layered(low, high))["eth0"]
    assert (got.up, got.mtu, got.logical, got.kind, got.parent_name) == (True, 1400, True, "dummy", "eth9")
    assert got.layer is CFG


def test_link_non_zero_higher_overrides() -> None:
    low = link(layer=D, mtu=1500, kind="dummy")
    high = link(layer=OP, mtu=1450, kind="vlan")
    got = check_orders(merge_links, layered(low, high))["eth0"]
    assert (got.mtu, got.kind, got.layer) == (1450, "vlan", OP)


def test_link_bond_slave_pair_is_one_unit() -> None:
    low = link(layer=CMD, up=True, master_name="bond0", slave_index=1)
    high = link(layer=CFG, master_name="bond1", slave_index=0)
    got = check_orders(merge_links, layered(low, high))["eth0"]
    assert (got.master_name, got.slave_index) == ("bond1", 0)  # index 0 taken with its master
    # a zero pair leaves the lower one
    higher = link(layer=CFG, mtu=1500)
    got = check_orders(merge_links, layered(low, higher))["eth0"]
    assert (got.master_name, got.slave_index, got.mtu) == ("bond0", 1, 1500)


def test_link_units_replace_whole() -> None:
    low = link(
        "bond0",
        layer=CMD,
        logical=True,
        kind="bond",
        bond_master=BondMasterSpec(mode=BondMode.IEEE8023AD, miimon=100),
        vlan=VLANSpec(vlan_id=10, vlan_protocol=VLANProtocol.IEEE8021AD),
        bridge_slave=BridgeSlave(master_name="br0"),
    )
    high = link(
        "bond0",
        layer=CFG,
        bond_master=BondMasterSpec(mode=BondMode.ACTIVE_BACKUP),
        vlan=VLANSpec(vlan_id=20),
    )
    got = check_orders(merge_links, layered(low, high))["bond0"]
    assert got.bond_master == BondMasterSpec(mode=BondMode.ACTIVE_BACKUP)  # miimon not kept
    assert got.vlan == VLANSpec(vlan_id=20)  # protocol 802.1q with it, not 802.1ad
    assert got.bridge_slave == BridgeSlave(master_name="br0")  # zero unit above: kept
    assert (got.logical, got.kind) == (True, "bond")


def test_link_bridge_master_unit() -> None:
    low = link("br0", layer=D, bridge_master=BridgeMasterSpec(stp=STPSpec(enabled=True)))
    high = link("br0", layer=CFG, up=True)
    got = check_orders(merge_links, layered(low, high))["br0"]
    assert got.bridge_master.stp.enabled and got.up


def peer(key: str, endpoint: str = "", ips: tuple[str, ...] = ()) -> WireguardPeer:
    return WireguardPeer(
        public_key=key,
        endpoint=endpoint,
        persistent_keepalive_interval=dt.timedelta(seconds=25),
        allowed_ips=[parse_prefix(p) for p in ips],
    )


def test_link_wireguard_taken_whole_then_merged() -> None:
    base = WireguardSpec(private_key="priv-a", listen_port=51820, peers=[peer("A", ips=("10.1.0.0/16",))])
    low = link("wg0", layer=PLAT, logical=True, kind="wireguard", wireguard=base)
    high = link(
        "wg0",
        layer=CFG,
        wireguard=WireguardSpec(
            firewall_mark=7,
            peers=[peer("A", endpoint="1.2.3.4:51820"), peer("B", ips=("10.2.0.0/16",))],
        ),
    )
    got = check_orders(merge_links, layered(low, high))["wg0"]
    wg = got.wireguard
    assert (wg.private_key, wg.listen_port, wg.firewall_mark) == ("priv-a", 51820, 7)
    # peer A already present (no per-peer merging: its endpoint stays empty); B appended
    assert [p.public_key for p in wg.peers] == ["A", "B"]
    assert wg.peers[0] == peer("A", ips=("10.1.0.0/16",))
    # the lower one zero → the higher one whole
    only = check_orders(merge_links, layered(link("wg0", layer=D, up=True), low))["wg0"]
    assert only.wireguard == base and only.up


def test_link_wireguard_non_zero_scalars_override() -> None:
    low = link("wg0", layer=D, wireguard=WireguardSpec(private_key="a", listen_port=1, firewall_mark=2))
    high = link("wg0", layer=CFG, wireguard=WireguardSpec(private_key="b", listen_port=3))
    wg = check_orders(merge_links, layered(low, high))["wg0"].wireguard
    assert (wg.private_key, wg.listen_port, wg.firewall_mark) == ("b", 3, 2)


def test_link_wireguard_peer_key_appended_once() -> None:
    """A public key twice in the higher spec: only the first is appended (netd.md §4.3
    "not present yet"; WireguardSpec.merged alone would append both)."""
    low = link("wg0", layer=D, wireguard=WireguardSpec(listen_port=1, peers=[peer("A")]))
    high = link(
        "wg0",
        layer=CFG,
        wireguard=WireguardSpec(
            peers=[peer("B", "1.1.1.1:1"), peer("A", "9.9.9.9:9"), peer("B", "2.2.2.2:2")]
        ),
    )
    wg = check_orders(merge_links, layered(low, high))["wg0"].wireguard
    assert wg.peers == [peer("A"), peer("B", "1.1.1.1:1")]


def test_links_same_layer_fold_in_id_order() -> None:
    # default/eth0 then dhcp4/eth0/eth0 (the DHCP4 MTU spec, layer default) — decisions.md
    dflt = link(layer=D, up=True, mtu=1500)
    dhcp = link(layer=D, up=True, mtu=1450)
    items = [("default/eth0", dflt), ("dhcp4/eth0/eth0", dhcp)]
    assert check_orders(merge_links, items) == {"eth0": link(layer=D, up=True, mtu=1450)}
    items = [("default/eth0", dhcp), ("dhcp4/eth0/eth0", dflt)]
    assert check_orders(merge_links, items) == {"eth0": link(layer=D, up=True, mtu=1500)}


def test_links_grouped_by_name() -> None:
    items = layered(link("eth0", up=True), link("eth1", layer=CFG, mtu=9000), link("lo", up=True))
    assert check_orders(merge_links, items) == {
        "eth0": link("eth0", up=True),
        "eth1": link("eth1", layer=CFG, mtu=9000),
        "lo": link("lo", up=True),
    }


# ---- hostname, resolvers, time servers ------------------------------------------------


def host(name: str, layer: ConfigLayer, domain: str = "") -> HostnameSpec:
    return HostnameSpec(hostname=name, domainname=domain, layer=layer)


def test_hostname_highest_layer_wins() -> None:
    items = [
        ("cmdline/hostname", host("cmd", CMD)),
        ("default/hostname", host("talos-10-0-0-2", D)),
        ("platform/hostname", host("plat", PLAT, "example.com")),
    ]
    assert check_orders(merge_hostname, items) == {"hostname": host("plat", PLAT, "example.com")}


def test_hostname_empty_ignored() -> None:
    items = [
        ("configuration/hostname", host("", CFG, "example.com")),
        ("default/hostname", host("talos-10-0-0-2", D)),
    ]
    assert check_orders(merge_hostname, items) == {"hostname": host("talos-10-0-0-2", D)}
    only_empty = [("default/hostname", host("", D)), ("configuration/hostname", host("", CFG))]
    assert check_orders(merge_hostname, only_empty) == {}


def test_hostname_equal_layers_first_in_id_order() -> None:
    items = [("dhcp4/eth0/hostname", host("four", OP)), ("dhcp6/eth0/hostname", host("six", OP))]
    assert check_orders(merge_hostname, items) == {"hostname": host("four", OP)}


def resolvers(layer: ConfigLayer, *ips: str) -> ResolverSpec:
    return ResolverSpec(dns_servers=[parse_addr(i) for i in ips], layer=layer)


def test_resolvers_same_layer_concatenated_in_id_order() -> None:
    items = [
        ("default/resolvers", resolvers(D, "1.1.1.1", "8.8.8.8")),
        ("dhcp4/eth0/resolvers", resolvers(OP, "10.0.0.53")),
        ("dhcp6/eth0/resolvers", resolvers(OP, "fd00::53", "10.0.0.53")),
    ]
    got = check_orders(merge_resolvers, items)
    assert got == {"resolvers": resolvers(OP, "10.0.0.53", "fd00::53", "10.0.0.53")}


def test_resolvers_highest_layer_wins() -> None:
    items = [
        ("configuration/resolvers", resolvers(CFG, "9.9.9.9")),
        ("default/resolvers", resolvers(D, "1.1.1.1", "8.8.8.8")),
        ("dhcp4/eth0/resolvers", resolvers(OP, "10.0.0.53")),
    ]
    assert check_orders(merge_resolvers, items) == {"resolvers": resolvers(CFG, "9.9.9.9")}
    assert check_orders(merge_resolvers, items[1:2]) == {"resolvers": resolvers(D, "1.1.1.1", "8.8.8.8")}


def test_resolvers_empty_list_counts_as_absent() -> None:
    items = [("configuration/resolvers", resolvers(CFG)), ("default/resolvers", resolvers(D, "1.1.1.1"))]
    assert check_orders(merge_resolvers, items) == {"resolvers": resolvers(D, "1.1.1.1")}
    assert merge_resolvers([("configuration/resolvers", resolvers(CFG))]) == {}


def ntp(layer: ConfigLayer, *servers: str) -> TimeServerSpec:
    return TimeServerSpec(time_servers=list(servers), layer=layer)


def test_time_servers() -> None:
    items = [
        ("default/timeservers", ntp(D, "pool.ntp.org")),
        ("dhcp4/eth0/timeservers", ntp(OP, "10.0.0.123")),
        ("dhcp6/eth0/timeservers", ntp(OP, "ntp.example.com")),
    ]
    got = check_orders(merge_time_servers, items)
    assert got == {"timeservers": ntp(OP, "10.0.0.123", "ntp.example.com")}
    items.append(("cmdline/timeservers", ntp(CMD, "1.2.3.4")))
    assert check_orders(merge_time_servers, items)["timeservers"].layer is OP
    items.append(("configuration/timeservers", ntp(CFG, "time.cloudflare.com")))
    assert check_orders(merge_time_servers, items) == {"timeservers": ntp(CFG, "time.cloudflare.com")}


def test_controller_names() -> None:
    names = [c.name for c in merge_controllers()]
    assert names == [
        "network.AddressMergeController",
        "network.LinkMergeController",
        "network.RouteMergeController",
        "network.HostnameMergeController",
        "network.ResolverMergeController",
        "network.TimeServerMergeController",
        "network.OperatorMergeController",
        "network.RoutingRuleMergeController",
    ]
    assert all(isinstance(c, MergeController) for c in merge_controllers())
    assert merge_controllers()[0] is not merge_controllers()[0]  # fresh instances


# ---- properties -------------------------------------------------------------------------

layers = st.sampled_from(LAYERS)
prefixes = st.sampled_from(["", "default", "cmdline", "platform", "configuration", "dhcp4/eth0", "vip/eth1"])


def unique_ids(items: list[tuple[str, S]]) -> list[tuple[str, S]]:
    return list(dict(items).items())


@st.composite
def address_items(draw: st.DrawFn) -> list[tuple[str, AddressSpec]]:
    specs = draw(
        st.lists(
            st.builds(
                addr,
                st.sampled_from(["10.0.0.2/24", "10.0.0.3/24", "fd00::2/64"]),
                st.sampled_from(["eth0", "eth1"]),
                layers,
                scope=st.sampled_from([Scope.GLOBAL, Scope.LINK, Scope.HOST]),
            ),
            max_size=12,
        )
    )
    return unique_ids([(f"{draw(prefixes)}/{s.id()}/{draw(st.integers(0, 3))}", s) for s in specs])


@st.composite
def route_items(draw: st.DrawFn) -> list[tuple[str, RouteSpec]]:
    specs = draw(
        st.lists(
            st.builds(
                route,
                st.sampled_from([None, "10.0.0.1", "10.0.0.254", "fe80::1"]),
                st.sampled_from([None, "192.168.0.0/16"]),
                st.sampled_from([1024, 2048]),
                st.sampled_from(["eth0", "eth1"]),
                layers,
                mtu=st.sampled_from([0, 1400]),
            ),
            max_size=12,
        )
    )
    return unique_ids([(f"{draw(prefixes)}/{s.id()}/{draw(st.integers(0, 3))}", s) for s in specs])


@st.composite
def link_items(draw: st.DrawFn) -> list[tuple[str, LinkSpec]]:
    specs = draw(
        st.lists(
            st.builds(
                link,
                st.sampled_from(["eth0", "eth1"]),
                layers,
                up=st.booleans(),
                logical=st.booleans(),
                mtu=st.sampled_from([0, 1400, 1500, 9000]),
                kind=st.sampled_from(["", "dummy", "vlan"]),
                parent_name=st.sampled_from(["", "eth9"]),
                master_name=st.sampled_from(["", "bond0"]),
                slave_index=st.integers(0, 2),
                wireguard=st.builds(
                    WireguardSpec,
                    listen_port=st.sampled_from([0, 51820]),
                    peers=st.lists(
                        st.builds(peer, st.sampled_from(["A", "B", "C"])),
                        max_size=2,
                        unique_by=lambda p: p.public_key,
                    ),
                ),
            ),
            max_size=10,
        )
    )
    return unique_ids([(f"{draw(prefixes)}/{s.name}/{draw(st.integers(0, 5))}", s) for s in specs])


hostname_items = st.lists(
    st.tuples(
        st.sampled_from(
            ["default/hostname", "cmdline/hostname", "dhcp4/eth0/hostname", "dhcp6/eth0/hostname"]
        ),
        st.builds(host, st.sampled_from(["", "a", "b", "c"]), layers),
    ),
    max_size=6,
).map(unique_ids)

resolver_items = st.lists(
    st.tuples(
        st.sampled_from(["default/resolvers", "dhcp4/eth0/resolvers", "dhcp6/eth0/resolvers", "platform/r"]),
        st.builds(
            lambda layer, ips: resolvers(layer, *ips),
            layers,
            st.lists(st.sampled_from(["1.1.1.1", "8.8.8.8", "fd00::53"]), max_size=3),
        ),
    ),
    max_size=6,
).map(unique_ids)

time_server_items = st.lists(
    st.tuples(
        st.sampled_from(["default/timeservers", "dhcp4/eth0/timeservers", "configuration/timeservers"]),
        st.builds(
            lambda layer, names: ntp(layer, *names),
            layers,
            st.lists(st.sampled_from(["pool.ntp.org", "10.0.0.123"]), max_size=2),
        ),
    ),
    max_size=5,
).map(unique_ids)

operator_items = st.lists(
    st.builds(op, st.sampled_from(["eth0", "eth1"]), layers, st.sampled_from([1, 1024])), max_size=8
).map(lambda specs: unique_ids([(f"{layered_id(s.layer, s.id())}/{s.dhcp4.route_metric}", s) for s in specs]))

CASES: list[tuple[Callable[[Any], dict[str, Any]], Any]] = [
    (merge_addresses, address_items()),
    (merge_routes, route_items()),
    (merge_operators, operator_items),
    (merge_links, link_items()),
    (merge_hostname, hostname_items),
    (merge_resolvers, resolver_items),
    (merge_time_servers, time_server_items),
]


@pytest.mark.parametrize(("merge", "strategy"), CASES, ids=lambda x: getattr(x, "__name__", ""))
def test_result_does_not_depend_on_arrival_order(
    merge: Callable[[Any], dict[str, Any]], strategy: Any
) -> None:
    @settings(max_examples=60, deadline=None)
    @given(strategy, st.randoms(use_true_random=False))
    def prop(items: list[tuple[str, Any]], rnd: random.Random) -> None:
        expected = merge(sorted(items, key=lambda i: i[0]))
        order = list(items)
        rnd.shuffle(order)
        assert merge(order) == expected
        # as the controller sees them: written into a State in random order, listed back
        state = State()
        for id_, spec in order:
            state.put(NETWORK_CONFIG, "Specs.test.dev", id_, spec, owner="writer")
        listed = [(r.id, r.spec) for r in state.list(NETWORK_CONFIG, "Specs.test.dev")]
        assert merge(listed) == expected

    prop()


def _reconcile_into_network(ctrl: MergeController[Any], order: list[tuple[str, Any]]) -> dict[str, Any]:
    state = State()
    for id_, spec in order:
        state.put(NETWORK_CONFIG, ctrl.resource_type, id_, spec, owner="network.SomeConfigController")
    ctx = Context(state, ctrl, Backoff())
    try:
        asyncio.run(ctrl.reconcile(ctx))
    finally:
        ctx.close()
    out = {}
    for r in state.list(NETWORK, ctrl.resource_type):
        assert r.md.owner == ctrl.name
        out[r.id] = r.spec
    return out


@settings(max_examples=40, deadline=None)
@given(address_items(), link_items(), st.randoms(use_true_random=False))
def test_controller_output_does_not_depend_on_write_order(
    addresses: list[tuple[str, AddressSpec]], links: list[tuple[str, LinkSpec]], rnd: random.Random
) -> None:
    for ctrl, items in ((address_merge_controller(), addresses), (link_merge_controller(), links)):
        order = list(items)
        rnd.shuffle(order)
        assert _reconcile_into_network(ctrl, order) == _reconcile_into_network(ctrl, items)


@settings(max_examples=100, deadline=None)
@given(address_items(), route_items(), operator_items)
def test_keyed_merges_higher_layer_wins(
    addresses: list[tuple[str, AddressSpec]],
    routes: list[tuple[str, RouteSpec]],
    operators: list[tuple[str, OperatorSpec]],
) -> None:
    for merge, items in (
        (merge_addresses, addresses),
        (merge_routes, routes),
        (merge_operators, operators),
    ):
        got: dict[str, Any] = merge(items)  # type: ignore[operator]
        keys = {s.id() for _, s in items}
        assert set(got) == keys  # every distinct key kept
        for key in keys:
            same = sorted((i, s) for i, s in items if s.id() == key)
            top = max(s.layer for _, s in same)
            assert got[key].layer == top
            # equal layers: the last in ID order
            assert got[key] is [s for _, s in same if s.layer == top][-1]


@settings(max_examples=100, deadline=None)
@given(hostname_items, resolver_items, time_server_items)
def test_singletons_highest_layer_wins(
    hostnames: list[tuple[str, HostnameSpec]],
    resolver_specs: list[tuple[str, ResolverSpec]],
    time_servers: list[tuple[str, TimeServerSpec]],
) -> None:
    named = sorted((i, s) for i, s in hostnames if s.hostname)
    got_host = merge_hostname(hostnames)
    if not named:
        assert got_host == {}
    else:
        top = max(s.layer for _, s in named)
        assert got_host == {"hostname": next(s for _, s in named if s.layer == top)}

    present = sorted((i, s) for i, s in resolver_specs if s.dns_servers)
    got_res = merge_resolvers(resolver_specs)
    if not present:
        assert got_res == {}
    else:
        top = max(s.layer for _, s in present)
        want = [a for _, s in present if s.layer == top for a in s.dns_servers]
        assert got_res == {"resolvers": ResolverSpec(dns_servers=want, layer=top)}

    present_t = sorted((i, s) for i, s in time_servers if s.time_servers)
    got_t = merge_time_servers(time_servers)
    if not present_t:
        assert got_t == {}
    else:
        top = max(s.layer for _, s in present_t)
        want_t = [t for _, s in present_t if s.layer == top for t in s.time_servers]
        assert got_t == {"timeservers": TimeServerSpec(time_servers=want_t, layer=top)}


@settings(max_examples=150, deadline=None)
@given(link_items())
def test_link_fields_merge_across_layers(items: list[tuple[str, LinkSpec]]) -> None:
    got = merge_links(items)
    assert set(got) == {s.name for _, s in items}
    for name, merged in got.items():
        # the fold order: layer ascending, then network-config ID
        chain = [
            s
            for _, s in sorted(((i, s) for i, s in items if s.name == name), key=lambda x: (x[1].layer, x[0]))
        ]
        assert merged.layer == max(s.layer for s in chain) == chain[-1].layer
        for field in ("up", "logical", "mtu", "kind", "parent_name"):
            non_zero = [getattr(s, field) for s in chain[1:] if getattr(s, field)]
            want = non_zero[-1] if non_zero else getattr(chain[0], field)
            assert getattr(merged, field) == want, field
        # the bond-slave pair moves as one unit
        pairs = [(s.master_name, s.slave_index) for s in chain[1:] if s.master_name or s.slave_index]
        assert (merged.master_name, merged.slave_index) == (
            pairs[-1] if pairs else (chain[0].master_name, chain[0].slave_index)
        )
        # wireguard peers: every public key once, in first-seen order (no duplicates across layers)
        first_seen: list[str] = []
        for s in chain:
            for p in s.wireguard.peers:
                if p.public_key not in first_seen:
                    first_seen.append(p.public_key)
        assert [p.public_key for p in merged.wireguard.peers] == first_seen
        ports = [s.wireguard.listen_port for s in chain if s.wireguard.listen_port]
        assert merged.wireguard.listen_port == (ports[-1] if ports else 0)
