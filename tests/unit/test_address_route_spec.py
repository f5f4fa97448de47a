"""Address and route spec controllers: the pure diff logic (netd.md §5.2, §5.3 and the
lease extension of decisions.md), and the reconcile flow over a fake rtnetlink adapter
(finalizers, Applied records, first-start cleanup, per-spec retries)."""

from __future__ import annotations

import datetime as dt
import errno
import ipaddress
import socket
import time
from dataclasses import replace
from typing import Any

import pytest

from cosi import Backoff, Context, Phase, State
from netd.controllers import address_spec as ac
from netd.controllers import route_spec as rc
from netd.controllers.address_spec import Action, AddressSpecController, plan_address, wanted_lifetimes
from netd.controllers.route_spec import (
    RouteSpecController,
    apply_order,
    desired_route,
    plan_route,
    record_matches,
    route_matches,
    route_record,
    same_key,
    teardown_routes,
)
from netd.kernel.applied import Applied
from netd.kernel.netlink import NLM_F_REPLACE, RTM_DELADDR, RTM_DELROUTE, RTM_NEWADDR, RTM_NEWROUTE
from netd.kernel.rtnl import (
    AlreadyExists,
    KernelError,
    LinkName,
    NotFound,
    gratuitous_arp_frame,
)
from netd.kernel.rtnl_batch import Request
from netd.kernel.rtnl_codec import (
    AddressRecord,
    CacheInfo,
    RouteRecord,
)
from netd.netip import parse_addr, parse_prefix
from netd.resources import register_all
from netd.resources.address import ADDRESS_SPEC_TYPE, AddressSpec
from netd.resources.enums import Family, RouteProtocol, RouteType, RoutingTable, Scope
from netd.resources.namespaces import NETWORK
from netd.resources.route import ROUTE_SPEC_TYPE, RouteSpec

NOW = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
V4 = socket.AF_INET
V6 = socket.AF_INET6
STATIC = int(RouteProtocol.STATIC)


def aspec(address: str = "10.0.0.5/24", flags: str = "permanent", **kw: Any) -> AddressSpec:
    p = parse_prefix(address)
    return AddressSpec(
        address=p, link_name="eth0", family=Family.of(p), scope=Scope.GLOBAL, flags=flags, **kw
    )


def kaddr(
    address: str = "10.0.0.5/24",
    flags: int = 0x80,
    scope: int = 0,
    valid: int | None = None,
    preferred: int | None = None,
    index: int = 2,
) -> AddressRecord:
    """A kernel address as the dump decodes it."""
    p = parse_prefix(address)
    cache = None
    if valid is not None or preferred is not None:
        inf = 0xFFFFFFFF
        cache = CacheInfo(inf if preferred is None else preferred, inf if valid is None else valid)
    return AddressRecord(
        family=V4 if p.version == 4 else V6,
        prefixlen=p.network.prefixlen,
        flags=flags & 0xFF,
        scope=scope,
        index=index,
        address=p.ip,
        local=p.ip if p.version == 4 else None,
        cacheinfo=cache,
        ifa_flags=flags,
    )


# ---- addresses ------------------------------------------------------------------------------


def test_equal_address_is_adopted_ignoring_kernel_managed_flags() -> None:
    s = aspec()
    assert plan_address(s, kaddr(), NOW) is Action.NONE
    assert plan_address(s, kaddr(flags=0x80 | 0x40), NOW) is Action.NONE  # tentative (DAD)
    # permanent is the kernel's: a spec without it matches a forever address too
    assert plan_address(aspec(flags=""), kaddr(), NOW) is Action.NONE
    s6 = aspec("2001:db8::5/64", "permanent,nodad")
    assert plan_address(s6, kaddr("2001:db8::5/64", 0x80 | 0x2), NOW) is Action.NONE


def test_missing_or_differing_address() -> None:
    s = aspec()
    assert plan_address(s, None, NOW) is Action.ADD
    assert plan_address(s, kaddr(scope=253), NOW) is Action.REPLACE
    assert plan_address(aspec(flags="permanent,noprefixroute"), kaddr(), NOW) is Action.REPLACE
    s6 = aspec("2001:db8::5/64", "permanent,nodad")
    assert plan_address(s6, kaddr("2001:db8::5/64", 0x80), NOW) is Action.REPLACE
    # IPv6 drops flags userspace may not set (kernel-only ones): they do not count
    assert (
        plan_address(aspec("2001:db8::5/64", "permanent,deprecated"), kaddr("2001:db8::5/64"), NOW)
        is Action.NONE
    )


def lease(valid: int | None, preferred: int | None = None) -> AddressSpec:
    return aspec(
        valid_until=None if valid is None else NOW + dt.timedelta(seconds=valid),
        preferred_until=None if preferred is None else NOW + dt.timedelta(seconds=preferred),
    )


def test_wanted_lifetimes_clamp_preferred_to_valid() -> None:
    assert wanted_lifetimes(lease(None), NOW) == (None, None)
    assert wanted_lifetimes(lease(100), NOW) == (100, 100)
    assert wanted_lifetimes(lease(100, 50), NOW) == (100, 50)
    assert wanted_lifetimes(lease(100, 500), NOW) == (100, 100)
    assert wanted_lifetimes(lease(None, 50), NOW) == (None, 50)
    assert wanted_lifetimes(lease(-5), NOW) == (0, 0)


def test_lease_lifetimes() -> None:
    s = lease(3600, 1800)
    forever = kaddr()
    assert plan_address(s, forever, NOW) is Action.REFRESH  # forever → finite
    assert (
        plan_address(aspec(), kaddr(flags=0, valid=100, preferred=100), NOW) is Action.REFRESH
    )  # finite → forever
    # Unrecorded: the kernel's countdown agrees within the slack → adopt; else refresh.
    assert plan_address(s, kaddr(flags=0, valid=3599, preferred=1798), NOW) is Action.NONE
    assert plan_address(s, kaddr(flags=0, valid=3000, preferred=1800), NOW) is Action.REFRESH
    # Recorded with this lease: never rewritten for the countdown, even if it drifted.
    rec = ac.lease_record(s)
    assert plan_address(s, kaddr(flags=0, valid=3000, preferred=1000), NOW, rec) is Action.NONE
    # The spec changed (a renewal): rewritten.
    renewed = lease(3601, 1800)
    assert plan_address(renewed, kaddr(flags=0, valid=3600, preferred=1800), NOW, rec) is Action.REFRESH
    # A flag difference still replaces; an expired lease adds nothing.
    assert plan_address(s, kaddr(flags=0, valid=3600, preferred=1800, scope=253), NOW) is Action.REPLACE
    assert plan_address(lease(-1), None, NOW) is Action.EXPIRED


def test_teardown_deletes_only_what_we_created() -> None:
    s = aspec()
    assert not ac.teardown_deletes(s, kaddr(), recorded=False)  # adopted: it was there before us
    assert ac.teardown_deletes(s, kaddr(scope=253), recorded=True)
    assert not ac.teardown_deletes(s, kaddr(scope=253), recorded=False)  # a foreign look-alike
    assert not ac.teardown_deletes(s, None, recorded=True)


# ---- routes ---------------------------------------------------------------------------------


def rspec(
    dst: str = "",
    gw: str = "",
    *,
    family: Family = Family.INET4,
    metric: int = 1024,
    link: str = "eth0",
    **kw: Any,
) -> RouteSpec:
    return RouteSpec(
        family=family,
        dst=parse_prefix(dst) if dst else None,
        gateway=parse_addr(gw) if gw else None,
        out_link_name=link,
        table=kw.pop("table", RoutingTable.MAIN),
        priority=metric,
        scope=Scope.GLOBAL if gw else Scope.LINK,
        type=RouteType.UNICAST,
        protocol=kw.pop("protocol", RouteProtocol.STATIC),
        **kw,
    )


def kroute(dst: str | None = None, gw: str | None = None, **kw: Any) -> RouteRecord:
    """A kernel route as the dump decodes it (``table`` sets the header byte and RTA_TABLE)."""
    p = parse_prefix(dst) if dst else None
    table = kw.pop("table", 254)
    fields: dict[str, Any] = {
        "family": V6 if (gw and ":" in gw) or (dst and ":" in dst) else V4,
        "dst": p.network.network_address if p is not None and p.network.prefixlen else None,
        "dst_len": p.network.prefixlen if p is not None else 0,
        "gateway": parse_addr(gw) if gw else None,
        "table": table if table < 256 else 252,
        "table_id": table,
        "priority": 1024,
        "oif": 2,
        "scope": 0 if gw else 253,
        "type": 1,
        "protocol": STATIC,
    }
    fields.update(kw)
    return RouteRecord(**fields)


def prefix_of(r: RouteRecord) -> Any:
    return ipaddress.ip_interface((r.dst or ("0.0.0.0" if r.family == V4 else "::"), r.dst_len))


def test_desired_route_normalisation() -> None:
    r = desired_route(rspec("10.1.2.3/16", "10.0.0.1", mtu=1400, src=parse_addr("10.0.0.5")), 2)
    assert (r.dst, r.dst_len) == (parse_addr("10.1.0.0"), 16) and r.gateway == parse_addr("10.0.0.1")
    assert (r.full_table, r.priority, r.oif, r.mtu, r.scope, r.type, r.protocol) == (
        254,
        1024,
        2,
        1400,
        0,
        1,
        STATIC,
    )
    assert desired_route(rspec("0.0.0.0/0", "10.0.0.1"), 2).dst is None
    assert desired_route(rspec(gw="10.0.0.1", table=RoutingTable.UNSPEC), 2).full_table == 254
    assert desired_route(rspec(gw="fe80::1", family=Family.INET6, metric=0), 2).priority == 1024
    assert not desired_route(rspec(gw="10.0.0.1", metric=0), 2).priority
    spec = rspec(gw="10.0.0.1")
    spec.type = RouteType.UNSPEC
    assert desired_route(spec, 2).type == 1


def test_route_key_and_match() -> None:
    want = desired_route(rspec("10.1.0.0/16", "10.0.0.1"), 2)
    k = kroute("10.1.0.0/16", "10.0.0.1")
    assert same_key(want, k) and route_matches(want, k)
    for other in (
        replace(k, priority=1),
        replace(k, table=180, table_id=180),
        replace(k, gateway=parse_addr("10.0.0.2")),
        replace(k, dst_len=24),
    ):
        assert not same_key(want, other)
    assert same_key(want, replace(k, oif=3))  # IPv4: the out link is not part of the key
    for differing in (
        replace(k, oif=3),
        replace(k, scope=253),
        replace(k, protocol=3),
        replace(k, mtu=1400),
        replace(k, flags=0x100),  # notify: within the compare mask
    ):
        assert same_key(want, differing) and not route_matches(want, differing)
    assert route_matches(want, replace(k, flags=0x4000))  # offload: outside the mask
    assert route_matches(want, replace(k, prefsrc=parse_addr("10.0.0.5")))  # spec has no src
    assert not route_matches(
        desired_route(rspec("10.1.0.0/16", "10.0.0.1", src=parse_addr("10.0.0.9")), 2),
        replace(k, prefsrc=parse_addr("10.0.0.5")),
    )
    # a spec without out link adopts whatever link the kernel chose
    assert route_matches(desired_route(rspec("10.1.0.0/16", "10.0.0.1", link=""), 0), k)


def test_ipv6_key_has_the_out_link_and_no_scope() -> None:
    want = desired_route(rspec(gw="fe80::1", family=Family.INET6), 2)
    k = kroute(gw="fe80::1", family=V6, scope=0)
    want_link_scope = desired_route(rspec("2001:db8::/64", family=Family.INET6), 2)
    assert route_matches(want_link_scope, kroute("2001:db8::/64", family=V6, scope=0))
    assert same_key(want, k) and route_matches(want, k)
    assert not same_key(want, replace(k, oif=3))  # eth1's route is another spec's business
    assert same_key(desired_route(rspec(gw="fe80::1", family=Family.INET6, link=""), 0), replace(k, oif=3))


def test_plan_route_adopts_replaces_ours_and_spares_foreign() -> None:
    want = desired_route(rspec("10.1.0.0/16", "10.0.0.1", mtu=1400), 2)
    never = lambda k: False  # noqa: E731
    same = kroute("10.1.0.0/16", "10.0.0.1", mtu=1400)
    assert plan_route(want, [same], never).empty
    old = replace(same, mtu=1500)  # our protocol, differing: replaced
    unrelated = kroute("10.2.0.0/16", "10.0.0.1")
    p = plan_route(want, [old, unrelated], never)
    assert p.delete == (old,) and p.add == want
    foreign = replace(same, mtu=0, protocol=int(RouteProtocol.BOOT))  # someone else's
    p = plan_route(want, [foreign], never)
    assert p.delete == () and p.add == want  # the add may then fail with EEXIST: retried
    p = plan_route(want, [foreign], lambda k: k == foreign)  # but one we recorded is ours
    assert p.delete == (foreign,)


def test_teardown_routes() -> None:
    want = desired_route(rspec("10.1.0.0/16", "10.0.0.1"), 2)
    mine = kroute("10.1.0.0/16", "10.0.0.1")
    foreign = replace(mine, protocol=int(RouteProtocol.BOOT), oif=3)
    other = kroute("10.3.0.0/16", "10.0.0.1")
    assert teardown_routes(want, [mine, foreign, other], lambda k: False) == []  # adopted or foreign: stay
    assert teardown_routes(want, [mine, foreign, other], lambda k: k == mine) == [mine]
    assert teardown_routes(want, [foreign], lambda k: k == foreign) == [foreign]


def test_link_routes_come_before_gateway_routes() -> None:
    specs = {
        "RoutingTable(180)/inet4/192.0.2.1/10.0.0.0/8/1": rspec("10.0.0.0/8", "192.0.2.1"),
        "eth0/inet6/2001:db8:ff::1/2001:db8:3::/64/1024": rspec("2001:db8:3::/64", "2001:db8:ff::1"),
        "eth1/inet6//2001:db8:ff::1/128/1024": rspec("2001:db8:ff::1/128"),
        "inet4//203.0.113.1/32/1024": rspec("203.0.113.1/32"),
    }
    order = sorted(specs, key=lambda i: apply_order(specs[i], i))
    assert order[:2] == ["eth1/inet6//2001:db8:ff::1/128/1024", "inet4//203.0.113.1/32/1024"]


def test_route_record_round_trip() -> None:
    links = {"eth0": 2, "eth1": 3}
    want = desired_route(rspec("10.1.0.0/16", "10.0.0.1", table=RoutingTable(180), metric=7), 2)
    data = route_record(want, "eth0")
    assert record_matches(data, replace(want, mtu=9000, scope=253), links)  # key, link, protocol, type
    assert not record_matches(data, replace(want, oif=3), links)
    assert not record_matches(data, replace(want, protocol=3), links)
    assert not record_matches(data, replace(want, table=254, table_id=254), links)
    assert not record_matches(data, want, {"eth1": 3})  # its link is gone: so is the route
    default = desired_route(rspec(gw="10.0.0.1", link=""), 0)
    assert record_matches(route_record(default, ""), replace(default, oif=5), links)
    assert not record_matches({"garbage": 1}, want, links)


# ---- reconcile flow over a fake kernel -------------------------------------------------------


class FakeRtnl:
    """The adapter over a kernel in memory: batches are applied request by request, in
    order, each failure reported for its request only (as the kernel does)."""

    def __init__(self) -> None:
        self.link_list = [LinkName(1, "lo", ""), LinkName(2, "eth0", "02:00:00:00:00:01")]
        self.addrs: list[AddressRecord] = []
        self.route_list: list[RouteRecord] = []
        self.writes: list[tuple[str, Any]] = []
        self.fail: dict[Any, KernelError] = {}
        self.batches = 0

    async def links(self) -> list[LinkName]:
        return list(self.link_list)

    async def addresses(self) -> list[AddressRecord]:
        return list(self.addrs)

    async def routes(self) -> list[RouteRecord]:
        return list(self.route_list)

    async def write(self, requests: Any) -> list[KernelError | None]:
        self.batches += 1
        out: list[KernelError | None] = []
        for req in requests:
            try:
                self.one(req)
                out.append(None)
            except KernelError as e:
                out.append(e)
        return out

    def one(self, req: Request) -> None:
        rec = req.record
        if req.type == RTM_NEWADDR:
            cache = rec.cacheinfo
            valid = None if cache is None or cache.valid == 0xFFFFFFFF else cache.valid
            preferred = None if cache is None or cache.preferred == 0xFFFFFFFF else cache.preferred
            self.add_address(rec.index, ipaddress.ip_interface((rec.ip, rec.prefixlen)), rec.scope,
                             rec.all_flags, valid=valid, preferred=preferred,
                             replace=bool(req.flags & NLM_F_REPLACE))  # fmt: skip
        elif req.type == RTM_DELADDR:
            self.delete_address(rec.index, ipaddress.ip_interface((rec.ip, rec.prefixlen)))
        elif req.type == RTM_NEWROUTE:
            self.add_route(rec)
        elif req.type == RTM_DELROUTE:
            self.delete_route(rec)
        else:
            raise AssertionError(req)

    def add_address(
        self,
        index: int,
        address: Any,
        scope: int,
        flags: int,
        *,
        valid: Any = None,
        preferred: Any = None,
        replace: bool = False,
    ) -> None:
        if address in self.fail:
            raise self.fail[address]
        self.writes.append(("replace" if replace else "add", str(address)))
        self.addrs = [
            a
            for a in self.addrs
            if (a.index, a.ip, a.prefixlen) != (index, address.ip, address.network.prefixlen)
        ]
        kflags = (flags | 0x80) if valid is None else flags & ~0x80
        a = kaddr(str(address), kflags, scope, valid, preferred, index)
        self.addrs.append(a)

    def delete_address(self, index: int, address: Any) -> None:
        self.writes.append(("del", str(address)))
        before = len(self.addrs)
        key = (index, address.ip, address.network.prefixlen)
        self.addrs = [a for a in self.addrs if (a.index, a.ip, a.prefixlen) != key]
        if len(self.addrs) == before:
            raise NotFound(errno.EADDRNOTAVAIL, "delete")

    def add_route(self, r: RouteRecord) -> None:
        if prefix_of(r) in self.fail:
            raise self.fail[prefix_of(r)]
        if any(same_key(r, k) for k in self.route_list):
            raise AlreadyExists(errno.EEXIST, "add")
        self.writes.append(("add", prefix_of(r)))
        self.route_list.append(replace(r))

    def delete_route(self, r: RouteRecord) -> None:
        self.writes.append(("del", prefix_of(r)))
        ident = (rc.route_key(r), r.oif or 0, r.protocol, r.type, r.scope)
        before = len(self.route_list)
        self.route_list = [
            k for k in self.route_list if (rc.route_key(k), k.oif or 0, k.protocol, k.type, k.scope) != ident
        ]
        if len(self.route_list) == before:
            raise NotFound(errno.ESRCH, "delete")

    def close(self) -> None:
        pass


OWNER = "network.AddressMergeController"


def make(state: State, controller: Any, fake: FakeRtnl) -> Context:
    controller.rtnl = fake
    return Context(state, controller, Backoff())


@pytest.fixture
def state() -> State:
    s = State()
    register_all(s)
    return s


async def test_address_controller_flow(state: State, tmp_path: Any) -> None:
    applied = Applied(str(tmp_path / "applied.json"))
    applied.add("address", "eth0/10.9.9.9/24", {"link": "eth0", "address": "10.9.9.9/24"})  # an old config's
    fake = FakeRtnl()
    fake.addrs = [
        kaddr("10.9.9.9/24"),  # recorded by an earlier run, no spec wants it: goes
        kaddr("192.168.1.1/24"),  # foreign: stays
        kaddr("10.0.0.6/24"),  # equal to a spec: adopted
    ]
    for a in ("10.0.0.5/24", "10.0.0.6/24"):
        s = aspec(a)
        state.put(NETWORK, ADDRESS_SPEC_TYPE, s.id(), s, OWNER)
    missing = AddressSpec(address=parse_prefix("10.7.0.1/24"), link_name="eth7", family=Family.INET4)
    state.put(NETWORK, ADDRESS_SPEC_TYPE, missing.id(), missing, OWNER)
    c = AddressSpecController(applied, clock=lambda: NOW)
    ctx = make(state, c, fake)
    await c.reconcile(ctx)
    assert fake.writes == [("del", "10.9.9.9/24"), ("add", "10.0.0.5/24")]
    assert sorted(applied.items("address")) == ["eth0/10.0.0.5/24"]  # adopted ones are not recorded
    assert {f"{a.ip}/{a.prefixlen}" for a in fake.addrs} == {"192.168.1.1/24", "10.0.0.5/24", "10.0.0.6/24"}
    assert all(r.md.finalizers == (c.name,) for r in state.list(NETWORK, ADDRESS_SPEC_TYPE))

    # Steady state writes nothing; the link appearing applies the waiting spec.
    fake.writes.clear()
    await c.reconcile(ctx)
    assert fake.writes == []
    fake.link_list.append(LinkName(7, "eth7", ""))
    await c.reconcile(ctx)
    assert fake.writes == [("add", "10.7.0.1/24")]

    # Teardown: ours goes, the adopted one stays, and the finalizers are released.
    fake.writes.clear()
    for id_ in ("eth0/10.0.0.5/24", "eth0/10.0.0.6/24"):
        state.teardown(NETWORK, ADDRESS_SPEC_TYPE, id_, OWNER)
    await c.reconcile(ctx)
    assert sorted(fake.writes) == [("del", "10.0.0.5/24")]
    for id_ in ("eth0/10.0.0.5/24", "eth0/10.0.0.6/24"):
        r = state.get(NETWORK, ADDRESS_SPEC_TYPE, id_)
        assert r is not None and r.md.phase is Phase.TEARING_DOWN and r.md.finalizers == ()
    assert sorted(applied.items("address")) == ["eth7/10.7.0.1/24"]
    assert Applied(str(tmp_path / "applied.json")).items("address").keys() == {"eth7/10.7.0.1/24"}


async def test_address_errors_are_per_spec(state: State) -> None:
    fake = FakeRtnl()
    bad, good = aspec("10.0.0.5/24"), aspec("10.0.0.6/24")
    fake.fail[bad.address] = KernelError(errno.EINVAL, "add")
    for s in (bad, good):
        state.put(NETWORK, ADDRESS_SPEC_TYPE, s.id(), s, OWNER)
    c = AddressSpecController(Applied(), clock=lambda: NOW)
    ctx = make(state, c, fake)
    await c.reconcile(ctx)
    assert fake.writes == [("add", "10.0.0.6/24")]
    assert c.retry is not None and c.retry.pending
    del fake.fail[bad.address]
    await c.reconcile(ctx)
    assert not c.retry.pending
    assert {f"{a.ip}/{a.prefixlen}" for a in fake.addrs} == {"10.0.0.5/24", "10.0.0.6/24"}


async def test_address_lease_renewal_refreshes_in_place(state: State) -> None:
    fake = FakeRtnl()
    s = lease(600, 300)
    state.put(NETWORK, ADDRESS_SPEC_TYPE, s.id(), s, OWNER)
    now = [NOW]
    c = AddressSpecController(Applied(), clock=lambda: now[0])
    ctx = make(state, c, fake)
    await c.reconcile(ctx)
    assert fake.writes == [("add", "10.0.0.5/24")] and fake.addrs[0].cacheinfo.valid == 600
    now[0] = NOW + dt.timedelta(seconds=100)  # time passes: the spec did not change
    await c.reconcile(ctx)
    assert fake.writes == [("add", "10.0.0.5/24")]
    renewed = lease(900, 600)
    state.put(NETWORK, ADDRESS_SPEC_TYPE, s.id(), renewed, OWNER)
    await c.reconcile(ctx)
    assert fake.writes[1:] == [("replace", "10.0.0.5/24")] and fake.addrs[0].cacheinfo.valid == 800


async def test_route_controller_flow(state: State) -> None:
    applied = Applied()
    fake = FakeRtnl()
    old = desired_route(rspec("10.50.0.0/16", "192.0.2.1"), 2)
    old.table = 254  # as the kernel reports it
    applied.add("route", "inet4/192.0.2.1/10.50.0.0/16/1024", route_record(old, "eth0"))
    foreign_same_proto = kroute("10.60.0.0/16", "192.0.2.1")  # by hand, no spec has its key
    fake.route_list = [old, foreign_same_proto]
    onlink = rspec("203.0.113.1/32")
    via = rspec("10.20.0.0/16", "203.0.113.1")
    for s in (via, onlink):
        state.put(NETWORK, ROUTE_SPEC_TYPE, s.id(), s, "network.RouteMergeController")
    c = RouteSpecController(applied)
    ctx = make(state, c, fake)
    await c.reconcile(ctx)
    assert fake.batches == 1  # one batch, in order:
    assert fake.writes == [
        ("del", parse_prefix("10.50.0.0/16")),  # recorded, unwanted: first-start cleanup
        ("add", parse_prefix("203.0.113.1/32")),  # the link route before ...
        ("add", parse_prefix("10.20.0.0/16")),  # ... the gateway route that needs it
    ]
    assert foreign_same_proto in fake.route_list
    assert sorted(applied.items("route")) == sorted([onlink.id(), via.id()])
    fake.writes.clear()
    await c.reconcile(ctx)
    assert fake.writes == []

    # The MTU changes: our route with that key is replaced.
    state.put(
        NETWORK,
        ROUTE_SPEC_TYPE,
        via.id(),
        rspec("10.20.0.0/16", "203.0.113.1", mtu=1400),
        "network.RouteMergeController",
    )
    await c.reconcile(ctx)
    assert fake.writes == [("del", parse_prefix("10.20.0.0/16")), ("add", parse_prefix("10.20.0.0/16"))]

    # Teardown of both: gateway route first; finalizers released; records dropped.
    fake.writes.clear()
    for s in (via, onlink):
        state.teardown(NETWORK, ROUTE_SPEC_TYPE, s.id(), "network.RouteMergeController")
    await c.reconcile(ctx)
    assert fake.writes == [("del", parse_prefix("10.20.0.0/16")), ("del", parse_prefix("203.0.113.1/32"))]
    assert fake.route_list == [foreign_same_proto]
    assert applied.items("route") == {}
    assert all(not r.md.finalizers for r in state.list(NETWORK, ROUTE_SPEC_TYPE))


async def test_route_conflict_with_foreign_route_is_retried(state: State) -> None:
    fake = FakeRtnl()
    foreign = kroute("10.20.0.0/16", "192.0.2.1", protocol=int(RouteProtocol.BOOT))
    fake.route_list = [foreign]
    s = rspec("10.20.0.0/16", "192.0.2.1")
    other = rspec("10.30.0.0/16", "192.0.2.1")
    for x in (s, other):
        state.put(NETWORK, ROUTE_SPEC_TYPE, x.id(), x, "network.RouteMergeController")
    c = RouteSpecController(Applied())
    ctx = make(state, c, fake)
    await c.reconcile(ctx)
    assert foreign in fake.route_list  # never deleted
    assert fake.writes == [("add", parse_prefix("10.30.0.0/16"))]  # the other spec went on
    assert c.retry is not None and c.retry.pending


def test_kernel_address_equality_uses_ip_and_prefix() -> None:
    a = kaddr("10.0.0.5/24")
    assert ac.find_address([a], 2, ipaddress.ip_interface("10.0.0.5/24")) == a
    assert ac.find_address([a], 2, ipaddress.ip_interface("10.0.0.5/25")) is None
    assert ac.find_address([a], 3, ipaddress.ip_interface("10.0.0.5/24")) is None
    assert rc.IPV6_DEFAULT_METRIC == 1024


def test_gratuitous_arp_frame() -> None:
    frame = gratuitous_arp_frame("02:00:00:00:00:0a", ipaddress.IPv4Address("192.0.2.50"))
    mac, ip, bcast = bytes.fromhex("02000000000a"), bytes([192, 0, 2, 50]), b"\xff" * 6
    assert frame == bcast + mac + b"\x08\x06" + bytes.fromhex("0001080006040001") + mac + ip + bcast + ip
    with pytest.raises(ValueError):
        gratuitous_arp_frame("", ipaddress.IPv4Address("192.0.2.50"))


async def test_announce_only_when_added(state: State) -> None:
    fake = FakeRtnl()
    sent: list[tuple[str, str, Any]] = []
    vip = aspec("10.0.0.50/32", announce_with_arp=True)
    plain = aspec("10.0.0.5/24")
    v6 = aspec("2001:db8::50/128", announce_with_arp=True)
    for s in (vip, plain, v6):
        state.put(NETWORK, ADDRESS_SPEC_TYPE, s.id(), s, OWNER)
    c = AddressSpecController(Applied(), clock=lambda: NOW)
    c.garp = lambda *a: sent.append(a)
    ctx = make(state, c, fake)
    await c.reconcile(ctx)
    assert sent == [("eth0", "02:00:00:00:00:01", parse_addr("10.0.0.50"))]
    await c.reconcile(ctx)
    assert len(sent) == 1  # adopted: no second announcement


def test_ipv4_secondary_flag_is_the_kernels() -> None:
    assert plan_address(aspec("10.0.0.6/24"), kaddr("10.0.0.6/24", 0x80 | 0x01), NOW) is Action.NONE


async def test_a_flag_the_kernel_refuses_is_accepted_not_rewritten_forever(state: State) -> None:
    class Dropping(FakeRtnl):
        def add_address(self, index: int, address: Any, scope: int, flags: int, **kw: Any) -> None:
            super().add_address(index, address, scope, flags & ~0x400, **kw)  # drops mcautojoin

    fake = Dropping()
    s = aspec(flags="permanent,mcautojoin")
    state.put(NETWORK, ADDRESS_SPEC_TYPE, s.id(), s, OWNER)
    c = AddressSpecController(Applied(), clock=lambda: NOW)
    ctx = make(state, c, fake)
    await c.reconcile(ctx)
    await c.reconcile(ctx)
    await c.reconcile(ctx)
    assert fake.writes == [("add", "10.0.0.5/24")]
    # a changed spec is applied again
    s2 = aspec(flags="permanent,mcautojoin,noprefixroute")
    state.put(NETWORK, ADDRESS_SPEC_TYPE, s.id(), s2, OWNER)
    await c.reconcile(ctx)
    assert fake.writes == [("add", "10.0.0.5/24"), ("del", "10.0.0.5/24"), ("add", "10.0.0.5/24")]


def test_ipv6_protocol_unspec_is_the_kernels_boot() -> None:
    spec = rspec("2001:db8::/64", family=Family.INET6, protocol=RouteProtocol.UNSPEC)
    assert desired_route(spec, 2).protocol == int(RouteProtocol.BOOT)
    assert desired_route(rspec("10.0.0.0/8", protocol=RouteProtocol.UNSPEC), 2).protocol == 0


async def test_a_route_the_kernel_stores_differently_is_accepted(state: State) -> None:
    class Dropping(FakeRtnl):
        def add_route(self, r: RouteRecord) -> None:
            super().add_route(replace(r, flags=0))  # the kernel does not keep RTM_F_NOTIFY

    fake = Dropping()
    s = rspec("10.1.0.0/16", "192.0.2.1", flags="notify")
    state.put(NETWORK, ROUTE_SPEC_TYPE, s.id(), s, "network.RouteMergeController")
    applied = Applied()
    c = RouteSpecController(applied)
    ctx = make(state, c, fake)
    for _ in range(3):
        await c.reconcile(ctx)
    assert fake.writes == [("add", parse_prefix("10.1.0.0/16"))]
    # the record describes the route the kernel made: teardown finds it
    state.teardown(NETWORK, ROUTE_SPEC_TYPE, s.id(), "network.RouteMergeController")
    await c.reconcile(ctx)
    assert fake.route_list == [] and applied.items("route") == {}


async def test_request_socket_joins_no_multicast_group() -> None:
    """Events would pile up unread in the reconcile socket's queue otherwise."""
    from netd.kernel.rtnl import Rtnl

    async with Rtnl() as rtnl:
        sock = rtnl._b().sock
        assert sock.getsockname()[1] == 0  # no multicast group
        assert any(link.name == "lo" for link in await rtnl.links())


async def test_in_sync_reconcile_of_5000_routes_writes_nothing_and_is_cheap(state: State) -> None:
    """5,000 specs, their 5,000 routes in the kernel plus 5,000 foreign ones: a pass is
    O(specs + kernel routes) (routes indexed by key once) and writes nothing."""
    fake = FakeRtnl()
    applied = Applied()
    for i in range(5000):
        dst = f"10.{i >> 8}.{i & 255}.0/24"
        s = rspec(dst, "192.0.2.1", table=RoutingTable(100))
        state.put(NETWORK, ROUTE_SPEC_TYPE, s.id(), s, "network.RouteMergeController")
        fake.route_list.append(kroute(dst, "192.0.2.1", table=100))
        fake.route_list.append(kroute(f"11.{i >> 8}.{i & 255}.0/24", "192.0.2.1", protocol=4))
    c = RouteSpecController(applied)
    ctx = make(state, c, fake)
    await c.reconcile(ctx)  # the first pass adopts (and caches the specs' desired routes)
    assert fake.writes == [] and applied.items("route") == {}
    t0 = time.process_time()
    await c.reconcile(ctx)
    cpu = time.process_time() - t0
    assert fake.writes == [] and fake.batches == 0
    assert cpu < 1.0, cpu


async def test_in_sync_reconcile_of_5000_addresses_writes_nothing(state: State) -> None:
    fake = FakeRtnl()
    for i in range(5000):
        a = f"172.16.{i >> 8}.{i & 255}/32"
        s = aspec(a)
        state.put(NETWORK, ADDRESS_SPEC_TYPE, s.id(), s, OWNER)
        fake.addrs.append(kaddr(a))
    c = AddressSpecController(Applied(), clock=lambda: NOW)
    ctx = make(state, c, fake)
    t0 = time.process_time()
    await c.reconcile(ctx)
    cpu = time.process_time() - t0
    assert fake.writes == [] and fake.batches == 0
    assert cpu < 1.0, cpu


async def test_batch_errors_go_to_their_spec_only(state: State) -> None:
    """One batch of 3 adds, the middle one refused: the others are recorded, the refused
    one is retried (and recorded once it goes through)."""
    fake = FakeRtnl()
    applied = Applied()
    specs = [rspec(f"10.{i}.0.0/16", "192.0.2.1") for i in range(3)]
    for s in specs:
        state.put(NETWORK, ROUTE_SPEC_TYPE, s.id(), s, "network.RouteMergeController")
    fake.fail[parse_prefix("10.1.0.0/16")] = KernelError(errno.EINVAL, "add")
    c = RouteSpecController(applied)
    ctx = make(state, c, fake)
    await c.reconcile(ctx)
    assert fake.batches == 1 and len(fake.writes) == 2
    assert sorted(applied.items("route")) == sorted([specs[0].id(), specs[2].id()])
    assert c.retry is not None and c.retry.pending
    del fake.fail[parse_prefix("10.1.0.0/16")]
    await c.reconcile(ctx)
    assert fake.writes[2:] == [("add", parse_prefix("10.1.0.0/16"))] and not c.retry.pending
    assert len(applied.items("route")) == 3
