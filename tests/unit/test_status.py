"""Pure parts of the status controllers: the route decoder, the delta model, event
application (link renames, replaces, silent IPv4 flushes), publishing, HardwareAddr and
NetworkStatus (netd.md §2.6, §2.12, §5.7, §7.2)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from collections.abc import Callable
from typing import Any

import pytest
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from cosi import Runtime, State
from netd.controllers.netlink_status import link_record, publish, publish_all
from netd.controllers.status import (
    AddressStatusController,
    HardwareAddrController,
    RouteStatusController,
    StatusController,
    StatusModel,
    first_physical,
    network_status,
)
from netd.kernel import netlink as nl
from netd.kernel import rtnl_codec as codec
from netd.kernel import rtnl_events as ev
from netd.kernel.ethtool import Ethtool
from netd.netip import parse_prefix
from netd.resources import register_all
from netd.resources.address import ADDRESS_STATUS_TYPE, AddressStatus
from netd.resources.enums import (
    Duplex,
    Family,
    LinkFlags,
    LinkType,
    Port,
    RouteProtocol,
    RouteType,
    RoutingTable,
    Scope,
)
from netd.resources.files import ETC_FILE_STATUS_TYPE, EtcFileStatus
from netd.resources.hardware import HARDWARE_ADDR_TYPE
from netd.resources.hostname import HOSTNAME_STATUS_TYPE, HostnameStatus
from netd.resources.link import LINK_STATUS_TYPE, LinkStatus
from netd.resources.namespaces import FILES, NETWORK
from netd.resources.nodeaddress import NODE_ADDRESS_TYPE, NodeAddress
from netd.resources.route import ROUTE_STATUS_TYPE, RouteStatus
from netd.resources.status import NETWORK_STATUS_TYPE

# ---- message builders -------------------------------------------------------------------


def _rta(atype: int, value: bytes) -> bytes:
    data = struct.pack("=HH", 4 + len(value), atype) + value
    return data + b"\0" * ((4 - len(data) % 4) % 4)


def route_msg(
    *,
    mtype: int = nl.RTM_NEWROUTE,
    nl_flags: int = 0,
    family: int = socket.AF_INET,
    dst: str | None = None,
    gateway: str | None = None,
    prefsrc: str | None = None,
    oif: int = 0,
    priority: int | None = None,
    table: int = 254,
    protocol: int = 4,
    scope: int = 0,
    rtype: int = 1,
    tos: int = 0,
    mtu: int = 0,
) -> bytes:
    attrs = b""
    dst_len = 0
    if dst is not None:
        net = ipaddress.ip_network(dst)
        dst_len = net.prefixlen
        attrs += _rta(1, net.network_address.packed)
    if gateway is not None:
        attrs += _rta(5, ipaddress.ip_address(gateway).packed)
    if prefsrc is not None:
        attrs += _rta(7, ipaddress.ip_address(prefsrc).packed)
    if oif:
        attrs += _rta(4, struct.pack("=I", oif))
    if priority is not None:
        attrs += _rta(6, struct.pack("=I", priority))
    attrs += _rta(15, struct.pack("=I", table))
    if mtu:
        attrs += _rta(8, _rta(2, struct.pack("=I", mtu)))
    body = struct.pack(
        "=BBBBBBBBI",
        family,
        dst_len,
        0,
        tos,
        min(table, 252 if table > 255 else table),
        protocol,
        scope,
        rtype,
        0,
    )
    body += attrs
    return struct.pack("=IHHII", 16 + len(body), mtype, nl_flags, 0, 0) + body


def link_msg(
    index: int, name: str, *, mtype: int = nl.RTM_NEWLINK, up: bool = True, family: int = 0
) -> bytes:
    m = ifinfmsg()
    m["family"] = family
    m["index"] = index
    m["flags"] = int(LinkFlags.UP) if up else 0
    m["attrs"] = [("IFLA_IFNAME", name)]
    m["header"]["type"] = mtype
    m.encode()
    return bytes(m.data)


def addr_msg(index: int, prefix: str, *, mtype: int = nl.RTM_NEWADDR) -> bytes:
    iface = ipaddress.ip_interface(prefix)
    m = ifaddrmsg()
    m["family"] = socket.AF_INET if iface.version == 4 else socket.AF_INET6
    m["prefixlen"] = iface.network.prefixlen
    m["index"] = index
    m["scope"] = 0
    ip = str(iface.ip)
    m["attrs"] = (
        [("IFA_ADDRESS", ip), ("IFA_LOCAL", ip), ("IFA_FLAGS", 0x80)]
        if iface.version == 4
        else [
            ("IFA_ADDRESS", ip),
            ("IFA_FLAGS", 0x80),
        ]
    )
    m["header"]["type"] = mtype
    m.encode()
    return bytes(m.data)


# ---- decoding ---------------------------------------------------------------------------


def parse_route(raw: bytes) -> codec.RouteRecord:
    body = codec.decode(raw)[0].body
    assert isinstance(body, codec.RouteRecord)
    return body


route_status = codec.route_status


def test_parse_route_and_status_ipv4() -> None:
    raw = route_msg(
        dst="198.51.100.0/24",
        gateway="192.0.2.1",
        prefsrc="192.0.2.5",
        oif=3,
        priority=77,
        table=100,
        protocol=4,
        mtu=1400,
    )
    m = parse_route(raw)
    assert (m.family, m.dst_len, m.table, m.full_table, m.oif, m.priority, m.mtu) == (
        2,
        24,
        100,
        100,
        3,
        77,
        1400,
    )
    s = route_status(m, {3: "eth0"})
    assert s.dst == parse_prefix("198.51.100.0/24")
    assert str(s.gateway) == "192.0.2.1" and str(s.src) == "192.0.2.5"
    assert s.out_link_name == "eth0" and s.table == RoutingTable(100) and s.protocol == RouteProtocol.STATIC
    assert s.mtu == 1400 and s.type == RouteType.UNICAST and s.scope == Scope.GLOBAL
    assert s.id() == "RoutingTable(100)/inet4/192.0.2.1/198.51.100.0/24/77"
    # model_construct output is an ordinary, valid model.
    assert RouteStatus.model_validate(s.model_dump(by_alias=True, mode="json")) == s


def test_route_status_ids_default_ipv6_local() -> None:
    default = route_status(parse_route(route_msg(gateway="192.0.2.1", priority=1024)), {})
    assert default.dst is None and default.id() == "inet4/192.0.2.1//1024"
    v6 = route_status(
        parse_route(route_msg(family=socket.AF_INET6, gateway="fe80::1", oif=2, priority=1024)), {2: "eth0"}
    )
    assert v6.id() == "eth0/inet6/fe80::1//1024" and v6.family == Family.INET6
    local = route_status(
        parse_route(route_msg(dst="127.0.0.1/32", table=255, scope=254, rtype=2, oif=1)), {1: "lo"}
    )
    assert local.id() == "local/inet4//127.0.0.1/32/0"
    # Tables above 255: the status shows the header byte (netd.md §2.6), the key keeps them apart.
    a, b = (
        parse_route(route_msg(dst="10.0.0.0/8", table=1000)),
        parse_route(route_msg(dst="10.0.0.0/8", table=2000)),
    )
    assert codec.route_kernel_key(a) != codec.route_kernel_key(b)
    assert route_status(a, {}).id() == route_status(b, {}).id()


def test_split_datagram() -> None:
    one, two = route_msg(dst="10.0.0.0/8"), link_msg(3, "eth0")
    parts = ev.split(one + two)
    assert [t for t, _ in parts] == [nl.RTM_NEWROUTE, nl.RTM_NEWLINK]
    assert parts[0][1] == one
    assert link_record(parts[1][1]).ifname == "eth0"
    assert ev.split(b"\x01\x02") == []


def test_ethtool_missing_device_is_silent() -> None:
    info = Ethtool().info("no-such-link0")
    assert (info.link_state, info.speed_mbit, info.port, info.duplex) == (
        False,
        0,
        Port.OTHER,
        Duplex.UNKNOWN,
    )


# ---- the model --------------------------------------------------------------------------


def test_model_collisions_keep_the_resource() -> None:
    m = StatusModel()
    s1, s2 = RouteStatus(priority=1), RouteStatus(priority=2)
    assert m.add("k1", "id", s1) == {"id"}
    assert m.add("k2", "id", s2) == {"id"}
    assert m.desired("id") == s1
    assert m.remove("k1") == {"id"}
    assert m.desired("id") == s2
    assert m.remove("k2") == {"id"} and m.desired("id") is None
    assert m.remove("k2") == set()


def test_model_moves_key_to_new_id() -> None:
    m = StatusModel()
    m.add(3, "eth0", LinkStatus(index=3))
    assert m.add(3, "wan", LinkStatus(index=3)) == {"eth0", "wan"}
    assert m.ids() == {"wan"} and len(m) == 1
    assert m.clear() == {"wan"} and len(m) == 0


# ---- controllers' event application (no kernel) ----------------------------------------


def _apply(c: Any, *messages: bytes) -> set[str]:
    touched: set[str] = set()
    for raw in messages:
        for mtype, message in ev.split(raw):
            touched |= c.apply(mtype, message)
    return touched


def test_route_deltas_replace_and_rename() -> None:
    c = RouteStatusController()
    _apply(c, link_msg(2, "eth0"))
    t = _apply(c, route_msg(family=socket.AF_INET6, dst="2001:db8::/64", oif=2, priority=5))
    assert t == {"eth0/inet6//2001:db8::/64/5"}
    _apply(c, route_msg(dst="10.0.0.0/8", gateway="192.0.2.1", oif=2, protocol=4))
    # A replace changes the gateway: the old route is gone without an RTM_DELROUTE.
    t = _apply(
        c, route_msg(nl_flags=nl.NLM_F_REPLACE, dst="10.0.0.0/8", gateway="192.0.2.9", oif=2, protocol=3)
    )
    assert t == {"inet4/192.0.2.1/10.0.0.0/8/0", "inet4/192.0.2.9/10.0.0.0/8/0"}
    assert c.model.desired("inet4/192.0.2.1/10.0.0.0/8/0") is None
    new = c.model.desired("inet4/192.0.2.9/10.0.0.0/8/0")
    assert isinstance(new, RouteStatus) and new.protocol == RouteProtocol.BOOT
    # Renaming the link changes IPv6 route IDs and every outLinkName.
    t = _apply(c, link_msg(2, "wan"))
    assert "eth0/inet6//2001:db8::/64/5" in t and "wan/inet6//2001:db8::/64/5" in t
    moved = c.model.desired("inet4/192.0.2.9/10.0.0.0/8/0")
    assert isinstance(moved, RouteStatus) and moved.out_link_name == "wan"
    # Delete.
    t = _apply(c, route_msg(mtype=nl.RTM_DELROUTE, dst="10.0.0.0/8", gateway="192.0.2.9", oif=2, protocol=3))
    assert c.model.desired("inet4/192.0.2.9/10.0.0.0/8/0") is None
    assert c._resync_families == set()


def test_route_controller_resyncs_ipv4_on_silent_flushes() -> None:
    c = RouteStatusController()
    _apply(c, link_msg(2, "eth0", up=True))
    _apply(c, link_msg(2, "eth0", family=7, mtype=nl.RTM_DELLINK))  # bridge port event: ignored
    assert c._resync_families == set() and c.links == {2: "eth0"}
    _apply(c, link_msg(2, "eth0", up=False))
    assert c._resync_families == {socket.AF_INET}
    c._resync_families.clear()
    _apply(c, addr_msg(2, "2001:db8::1/64", mtype=nl.RTM_DELADDR))
    assert c._resync_families == set()
    _apply(c, addr_msg(2, "192.0.2.1/24", mtype=nl.RTM_DELADDR))
    assert c._resync_families == {socket.AF_INET}


def test_address_deltas_and_rename() -> None:
    c = AddressStatusController()
    _apply(c, link_msg(2, "eth0"))
    assert _apply(c, addr_msg(2, "192.0.2.5/24"), addr_msg(2, "2001:db8::5/64")) == {
        "eth0/192.0.2.5/24",
        "eth0/2001:db8::5/64",
    }
    a = c.model.desired("eth0/192.0.2.5/24")
    assert isinstance(a, AddressStatus) and a.link_index == 2 and a.family == Family.INET4
    assert _apply(c, link_msg(2, "lan")) == {
        "eth0/192.0.2.5/24",
        "eth0/2001:db8::5/64",
        "lan/192.0.2.5/24",
        "lan/2001:db8::5/64",
    }
    assert _apply(c, addr_msg(2, "192.0.2.5/24", mtype=nl.RTM_DELADDR)) == {"lan/192.0.2.5/24"}
    assert _apply(c, link_msg(2, "lan", mtype=nl.RTM_DELLINK)) == {"lan/2001:db8::5/64"}
    assert len(c.model) == 0


# ---- publishing and the derived controllers --------------------------------------------


class FakeCtx:
    """Just enough of cosi.Context for publish()."""

    def __init__(self, state: State, name: str) -> None:
        self.state = state
        self.name = name

    def put(self, ns: str, t: str, id_: str, spec: Any) -> Any:
        return self.state.put(ns, t, id_, spec, self.name)

    def teardown(self, ns: str, t: str, id_: str) -> bool:
        return self.state.teardown(ns, t, id_, self.name)

    def destroy(self, ns: str, t: str, id_: str) -> None:
        self.state.destroy(ns, t, id_, self.name)

    def owned(self, ns: str, t: str) -> list[Any]:
        return [r for r in self.state.list(ns, t) if r.md.owner == self.name]


def test_publish_leaves_other_owners_alone() -> None:
    state = State()
    register_all(state)
    ext = AddressStatus(address=parse_prefix("10.3.5.7/32"), link_name="external")
    state.put(NETWORK, ADDRESS_STATUS_TYPE, "external/10.3.5.7/32", ext, "network.PlatformConfigController")
    ctx: Any = FakeCtx(state, "network.AddressStatusController")
    m = StatusModel()
    m.add("k", "eth0/192.0.2.5/24", AddressStatus(address=parse_prefix("192.0.2.5/24"), link_name="eth0"))
    publish_all(ctx, ADDRESS_STATUS_TYPE, m)
    assert [r.md.id for r in state.list(NETWORK, ADDRESS_STATUS_TYPE)] == [
        "eth0/192.0.2.5/24",
        "external/10.3.5.7/32",
    ]
    v = state.must_get(NETWORK, ADDRESS_STATUS_TYPE, "eth0/192.0.2.5/24").md.version
    publish(ctx, ADDRESS_STATUS_TYPE, m, ["eth0/192.0.2.5/24"])  # unchanged: no write
    assert state.must_get(NETWORK, ADDRESS_STATUS_TYPE, "eth0/192.0.2.5/24").md.version == v
    m.clear()
    publish_all(ctx, ADDRESS_STATUS_TYPE, m)
    assert [r.md.id for r in state.list(NETWORK, ADDRESS_STATUS_TYPE)] == ["external/10.3.5.7/32"]


def test_first_physical() -> None:
    links = [
        ("veth0", LinkStatus(type=LinkType.ETHER, kind="veth", hardware_addr="02:00:00:00:00:01")),
        ("eth1", LinkStatus(type=LinkType.ETHER, hardware_addr="02:00:00:00:00:03")),
        ("eth0", LinkStatus(type=LinkType.ETHER, hardware_addr="02:00:00:00:00:02")),
        ("lo", LinkStatus(type=LinkType.LOOPBACK)),
    ]
    first = first_physical(links)
    assert first is not None and (first.name, first.hardware_addr) == ("eth0", "02:00:00:00:00:02")
    assert first_physical([links[0], links[3]]) is None


def test_network_status_fields() -> None:
    s = network_status(0, True, False, True)
    assert (s.address_ready, s.connectivity_ready, s.hostname_ready, s.etc_files_ready) == (
        False,
        True,
        False,
        True,
    )


async def _until(cond: Callable[[], object], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


@pytest.mark.asyncio
async def test_hardware_addr_and_network_status_controllers() -> None:
    state = State()
    register_all(state)
    rt = Runtime(state)
    rt.register(HardwareAddrController())
    rt.register(StatusController())
    w = "network.LinkStatusController"
    async with rt:
        state.put(NETWORK, LINK_STATUS_TYPE, "veth0", LinkStatus(type=LinkType.ETHER, kind="veth"), w)
        await rt.settle()
        assert state.get(NETWORK, HARDWARE_ADDR_TYPE, "first") is None
        state.put(
            NETWORK,
            LINK_STATUS_TYPE,
            "eth3",
            LinkStatus(type=LinkType.ETHER, hardware_addr="02:00:00:00:00:03"),
            w,
        )
        state.put(
            NETWORK,
            LINK_STATUS_TYPE,
            "eth1",
            LinkStatus(type=LinkType.ETHER, hardware_addr="02:00:00:00:00:01"),
            w,
        )
        await _until(lambda: state.get(NETWORK, HARDWARE_ADDR_TYPE, "first") is not None)
        await rt.settle()
        first = state.must_get(NETWORK, HARDWARE_ADDR_TYPE, "first").spec
        assert first.model_dump(by_alias=True) == {"name": "eth1", "hardwareAddr": "02:00:00:00:00:01"}
        state.destroy(NETWORK, LINK_STATUS_TYPE, "eth1", w)
        state.destroy(NETWORK, LINK_STATUS_TYPE, "eth3", w)
        await _until(lambda: state.get(NETWORK, HARDWARE_ADDR_TYPE, "first") is None)

        def status() -> Any:
            r = state.get(NETWORK, NETWORK_STATUS_TYPE, "status")
            return None if r is None else r.spec.model_dump()

        await _until(lambda: status() is not None)
        assert not any(status().values())
        state.put(
            NETWORK,
            NODE_ADDRESS_TYPE,
            "current",
            NodeAddress(addresses=[parse_prefix("192.0.2.5/24")]),
            "network.NodeAddressController",
        )
        state.put(
            NETWORK,
            ROUTE_STATUS_TYPE,
            "inet4/192.0.2.1//1024",
            RouteStatus(family=Family.INET4, gateway=ipaddress.ip_address("192.0.2.1")),
            "network.RouteStatusController",
        )
        state.put(
            NETWORK,
            HOSTNAME_STATUS_TYPE,
            "hostname",
            HostnameStatus(hostname="n"),
            "network.HostnameSpecController",
        )
        state.put(FILES, ETC_FILE_STATUS_TYPE, "hosts", EtcFileStatus(), "files.EtcFileController")
        await _until(lambda: status()["hostname_ready"] and status()["connectivity_ready"])
        assert status()["address_ready"] and not status()["etc_files_ready"]
        state.put(FILES, ETC_FILE_STATUS_TYPE, "resolv.conf", EtcFileStatus(), "files.EtcFileController")
        await _until(lambda: status()["etc_files_ready"])


def test_address_before_its_link_is_renamed_when_the_link_shows_up() -> None:
    c = AddressStatusController()
    assert _apply(c, addr_msg(5, "192.0.2.9/24")) == {"/192.0.2.9/24"}
    assert _apply(c, link_msg(5, "eth5")) == {"/192.0.2.9/24", "eth5/192.0.2.9/24"}
    assert c.model.ids() == {"eth5/192.0.2.9/24"}
    assert _apply(c, link_msg(5, "eth5")) == set()  # same name again: nothing to do


def test_route_before_its_link_gets_the_name() -> None:
    c = RouteStatusController()
    _apply(c, route_msg(family=socket.AF_INET6, dst="2001:db8::/64", oif=7, priority=1))
    assert c.model.ids() == {"/inet6//2001:db8::/64/1"}
    _apply(c, link_msg(7, "eth7"))
    assert c.model.ids() == {"eth7/inet6//2001:db8::/64/1"}


def test_pci_info_from_sysfs(tmp_path: Any) -> None:
    from netd.controllers.status import pci_info

    dev = tmp_path / "0000:06:00.0"
    dev.mkdir()
    (dev / "vendor").write_text("0x1969\n")
    (dev / "device").write_text("0xe0b1\n")
    info = pci_info("0000:06:00.0", root=str(tmp_path))
    assert (info["vendor_id"], info["product_id"]) == ("0x1969", "0xe0b1")
    assert pci_info("", root=str(tmp_path)) == {} and pci_info("N/A", root=str(tmp_path)) == {}
