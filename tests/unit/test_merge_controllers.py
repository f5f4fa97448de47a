"""The merge controllers in a real cosi.Runtime: network-config → network, teardown with
finalizers held by a spec controller, re-adding while the old one is tearing down."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import pytest

from cosi import Backoff, Context, Input, InputKind, Output, OutputKind, Phase, Resource, Runtime, State
from netd.controllers.merge import (
    REQUEUE_DELAY,
    MergeConflictError,
    address_merge_controller,
    merge_controllers,
)
from netd.netip import parse_addr, parse_prefix
from netd.resources import (
    ADDRESS_SPEC_TYPE,
    HOSTNAME_SPEC_TYPE,
    LINK_SPEC_TYPE,
    NETWORK,
    NETWORK_CONFIG,
    OPERATOR_SPEC_TYPE,
    RESOLVER_SPEC_TYPE,
    ROUTE_SPEC_TYPE,
    ROUTING_RULE_SPEC_TYPE,
    TIME_SERVER_SPEC_TYPE,
    AddressSpec,
    HostnameSpec,
    LinkSpec,
    OperatorSpec,
    ResolverSpec,
    RouteSpec,
    TimeServerSpec,
    register_all,
)
from netd.resources.base import Spec
from netd.resources.enums import ConfigLayer, Family, RoutingTable, Scope

D, OP, CFG = ConfigLayer.DEFAULT, ConfigLayer.OPERATOR, ConfigLayer.CONFIGURATION
SRC = "network.SomeConfigController"  # the owner of the network-config specs in these tests
SPEC_CTRL = "network.AddressSpecController"  # a finalizer as a spec controller would add it


def fast_backoff() -> Backoff:
    return Backoff(initial=0.01, maximum=0.05)


async def until(cond: Callable[[], object], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


@pytest.fixture
async def rt() -> AsyncIterator[Runtime]:
    state = State()
    register_all(state)
    runtime = Runtime(state, backoff=fast_backoff)
    for c in merge_controllers():
        runtime.register(c)
    async with runtime:
        yield runtime


def addr(prefix: str, layer: ConfigLayer, link: str = "eth0", scope: Scope = Scope.GLOBAL) -> AddressSpec:
    return AddressSpec.configured(parse_prefix(prefix), link, layer).model_copy(update={"scope": scope})


def merged(state: State, type_: str, id_: str) -> Resource | None:
    return state.get(NETWORK, type_, id_)


def running(state: State, type_: str, id_: str, spec: object) -> Callable[[], bool]:
    def cond() -> bool:
        r = state.get(NETWORK, type_, id_)
        return r is not None and r.md.phase is Phase.RUNNING and r.spec == spec

    return cond


def test_declarations() -> None:
    for c in merge_controllers():
        t = c.outputs()[0].type
        assert list(c.inputs()) == [
            Input(NETWORK_CONFIG, t, InputKind.WEAK),
            Input(NETWORK, t, InputKind.DESTROY_READY),
        ]
        assert list(c.outputs()) == [Output(NETWORK, t, OutputKind.SHARED)]
    types = [c.outputs()[0].type for c in merge_controllers()]
    assert types == [
        ADDRESS_SPEC_TYPE,
        LINK_SPEC_TYPE,
        ROUTE_SPEC_TYPE,
        HOSTNAME_SPEC_TYPE,
        RESOLVER_SPEC_TYPE,
        TIME_SERVER_SPEC_TYPE,
        OPERATOR_SPEC_TYPE,
        ROUTING_RULE_SPEC_TYPE,
    ]


async def test_all_seven_types_merge_into_network(rt: Runtime) -> None:
    s = rt.state
    gw = parse_addr("10.0.0.1")
    route = RouteSpec(family=Family.INET4, gateway=gw, table=RoutingTable.MAIN, priority=1024, layer=CFG)
    writes: list[tuple[str, str, object]] = [
        (ADDRESS_SPEC_TYPE, "default/lo/127.0.0.1/8", addr("127.0.0.1/8", D, link="lo", scope=Scope.HOST)),
        (ADDRESS_SPEC_TYPE, "configuration/eth0/10.0.0.2/24", addr("10.0.0.2/24", CFG)),
        (LINK_SPEC_TYPE, "default/eth0", LinkSpec(name="eth0", up=True, layer=D)),
        (LINK_SPEC_TYPE, "configuration/eth0", LinkSpec(name="eth0", mtu=9000, layer=CFG)),
        (ROUTE_SPEC_TYPE, "configuration/inet4/10.0.0.1//1024", route),
        (HOSTNAME_SPEC_TYPE, "default/hostname", HostnameSpec(hostname="talos-10-0-0-2", layer=D)),
        (RESOLVER_SPEC_TYPE, "default/resolvers", ResolverSpec(dns_servers=[parse_addr("1.1.1.1")])),
        (TIME_SERVER_SPEC_TYPE, "default/timeservers", TimeServerSpec(time_servers=["pool.ntp.org"])),
        (OPERATOR_SPEC_TYPE, "default/dhcp4/eth0", OperatorSpec(link_name="eth0", require_up=True)),
    ]
    for t, id_, spec in writes:
        s.put(NETWORK_CONFIG, t, id_, spec, owner=SRC)  # type: ignore[arg-type]
    want = {
        (ADDRESS_SPEC_TYPE, "lo/127.0.0.1/8"): "network.AddressMergeController",
        (ADDRESS_SPEC_TYPE, "eth0/10.0.0.2/24"): "network.AddressMergeController",
        (LINK_SPEC_TYPE, "eth0"): "network.LinkMergeController",
        (ROUTE_SPEC_TYPE, "inet4/10.0.0.1//1024"): "network.RouteMergeController",
        (HOSTNAME_SPEC_TYPE, "hostname"): "network.HostnameMergeController",
        (RESOLVER_SPEC_TYPE, "resolvers"): "network.ResolverMergeController",
        (TIME_SERVER_SPEC_TYPE, "timeservers"): "network.TimeServerMergeController",
        (OPERATOR_SPEC_TYPE, "dhcp4/eth0"): "network.OperatorMergeController",
    }
    await until(lambda: all(merged(s, t, i) is not None for t, i in want))
    for (t, i), owner in want.items():
        r = merged(s, t, i)
        assert r is not None and r.md.owner == owner and r.md.phase is Phase.RUNNING
    link = merged(s, LINK_SPEC_TYPE, "eth0")
    assert link is not None and link.spec == LinkSpec(name="eth0", up=True, mtu=9000, layer=CFG)
    # exactly what the rules produce, nothing more
    for t in {t for t, _ in want}:
        assert {r.id for r in s.list(NETWORK, t)} == {i for tt, i in want if tt == t}
    # steady state: another reconcile writes nothing
    versions = {k: merged(s, *k).md.version for k in want}  # type: ignore[union-attr]
    for ctx in rt.contexts.values():
        ctx.trigger()
    await asyncio.sleep(0.05)
    assert versions == {k: merged(s, *k).md.version for k in want}  # type: ignore[union-attr]
    assert not rt.restarts


async def test_higher_layer_update_and_removal_follow(rt: Runtime) -> None:
    s = rt.state
    s.put(NETWORK_CONFIG, HOSTNAME_SPEC_TYPE, "default/hostname", HostnameSpec(hostname="dflt"), owner=SRC)
    await until(running(s, HOSTNAME_SPEC_TYPE, "hostname", HostnameSpec(hostname="dflt")))
    high = HostnameSpec(hostname="node1", domainname="example.com", layer=CFG)
    s.put(NETWORK_CONFIG, HOSTNAME_SPEC_TYPE, "configuration/hostname", high, owner=SRC)
    await until(running(s, HOSTNAME_SPEC_TYPE, "hostname", high))
    s.destroy(NETWORK_CONFIG, HOSTNAME_SPEC_TYPE, "configuration/hostname", owner=SRC)
    await until(running(s, HOSTNAME_SPEC_TYPE, "hostname", HostnameSpec(hostname="dflt")))
    # an empty hostname is no hostname: the merged one goes away
    s.put(NETWORK_CONFIG, HOSTNAME_SPEC_TYPE, "default/hostname", HostnameSpec(hostname=""), owner=SRC)
    await until(lambda: merged(s, HOSTNAME_SPEC_TYPE, "hostname") is None)


async def test_removed_spec_torn_down_then_destroyed_when_released(rt: Runtime) -> None:
    s = rt.state
    spec = addr("10.0.0.2/24", CFG)
    s.put(NETWORK_CONFIG, ADDRESS_SPEC_TYPE, "configuration/eth0/10.0.0.2/24", spec, owner=SRC)
    await until(lambda: merged(s, ADDRESS_SPEC_TYPE, "eth0/10.0.0.2/24") is not None)
    s.add_finalizer(NETWORK, ADDRESS_SPEC_TYPE, "eth0/10.0.0.2/24", SPEC_CTRL)

    s.destroy(NETWORK_CONFIG, ADDRESS_SPEC_TYPE, "configuration/eth0/10.0.0.2/24", owner=SRC)

    def tearing() -> bool:
        r = merged(s, ADDRESS_SPEC_TYPE, "eth0/10.0.0.2/24")
        return r is not None and r.md.phase is Phase.TEARING_DOWN

    await until(tearing)
    await asyncio.sleep(0.05)
    assert tearing()  # held by the finalizer
    s.remove_finalizer(NETWORK, ADDRESS_SPEC_TYPE, "eth0/10.0.0.2/24", SPEC_CTRL)
    await until(lambda: merged(s, ADDRESS_SPEC_TYPE, "eth0/10.0.0.2/24") is None, timeout=1.0)
    assert not rt.restarts


async def test_without_finalizers_destroyed_at_once(rt: Runtime) -> None:
    s = rt.state
    for t, id_, spec in (
        (RESOLVER_SPEC_TYPE, "default/resolvers", ResolverSpec(dns_servers=[parse_addr("1.1.1.1")])),
        (LINK_SPEC_TYPE, "default/eth0", LinkSpec(name="eth0", up=True)),
    ):
        s.put(NETWORK_CONFIG, t, id_, spec, owner=SRC)  # type: ignore[arg-type]
    await until(lambda: merged(s, RESOLVER_SPEC_TYPE, "resolvers") is not None)
    await until(lambda: merged(s, LINK_SPEC_TYPE, "eth0") is not None)
    s.destroy(NETWORK_CONFIG, RESOLVER_SPEC_TYPE, "default/resolvers", owner=SRC)
    s.destroy(NETWORK_CONFIG, LINK_SPEC_TYPE, "default/eth0", owner=SRC)
    await until(lambda: merged(s, RESOLVER_SPEC_TYPE, "resolvers") is None)
    await until(lambda: merged(s, LINK_SPEC_TYPE, "eth0") is None)


@pytest.mark.parametrize(
    ("type_", "config_id", "merged_id", "old", "new", "controller"),
    [
        (
            ADDRESS_SPEC_TYPE,
            "configuration/eth0/10.0.0.2/24",
            "eth0/10.0.0.2/24",
            addr("10.0.0.2/24", CFG),
            addr("10.0.0.2/24", OP, scope=Scope.LINK),
            "network.AddressMergeController",
        ),
        (
            LINK_SPEC_TYPE,
            "configuration/eth0",
            "eth0",
            LinkSpec(name="eth0", up=True, layer=CFG),
            LinkSpec(name="eth0", mtu=1400, layer=D),
            "network.LinkMergeController",
        ),
        (
            HOSTNAME_SPEC_TYPE,
            "configuration/hostname",
            "hostname",
            HostnameSpec(hostname="old", layer=CFG),
            HostnameSpec(hostname="new", layer=CFG),
            "network.HostnameMergeController",
        ),
        (
            TIME_SERVER_SPEC_TYPE,
            "default/timeservers",
            "timeservers",
            TimeServerSpec(time_servers=["a.example"]),
            TimeServerSpec(time_servers=["b.example"]),
            "network.TimeServerMergeController",
        ),
    ],
    ids=["address", "link", "hostname", "timeserver"],
)
async def test_readded_while_tearing_down_written_once_old_is_gone(
    rt: Runtime,
    caplog: pytest.LogCaptureFixture,
    type_: str,
    config_id: str,
    merged_id: str,
    old: Spec,
    new: Spec,
    controller: str,
) -> None:
    caplog.set_level(logging.CRITICAL)  # the conflict errors of the restart path are expected
    s = rt.state
    s.put(NETWORK_CONFIG, type_, config_id, old, owner=SRC)
    await until(running(s, type_, merged_id, old))
    s.add_finalizer(NETWORK, type_, merged_id, SPEC_CTRL)
    s.destroy(NETWORK_CONFIG, type_, config_id, owner=SRC)
    await until(lambda: (r := merged(s, type_, merged_id)) is not None and r.md.phase is Phase.TEARING_DOWN)

    s.put(NETWORK_CONFIG, type_, config_id, new, owner=SRC)
    await asyncio.sleep(0.1)
    r = merged(s, type_, merged_id)
    assert r is not None and r.md.phase is Phase.TEARING_DOWN and r.spec == old  # not written over

    s.remove_finalizer(NETWORK, type_, merged_id, SPEC_CTRL)
    await until(running(s, type_, merged_id, new))
    r = merged(s, type_, merged_id)
    assert r is not None and r.md.owner == controller and r.md.version == 1  # a new resource
    if controller in ("network.HostnameMergeController", "network.TimeServerMergeController"):
        assert controller not in rt.restarts  # re-queued, not failed
    else:
        assert rt.restarts.get(controller, 0) >= 1  # failed → restarted with back-off


async def test_requeue_controllers_poll_while_held(rt: Runtime) -> None:
    """Hostname/Resolver/TimeServer re-queue themselves after REQUEUE_DELAY while the
    conflict lasts, and stop doing so once it is resolved."""
    s = rt.state
    ctx = rt.contexts["network.ResolverMergeController"]
    one = ResolverSpec(dns_servers=[parse_addr("1.1.1.1")])
    s.put(NETWORK_CONFIG, RESOLVER_SPEC_TYPE, "default/resolvers", one, owner=SRC)
    await until(running(s, RESOLVER_SPEC_TYPE, "resolvers", one))
    s.add_finalizer(NETWORK, RESOLVER_SPEC_TYPE, "resolvers", SPEC_CTRL)
    s.destroy(NETWORK_CONFIG, RESOLVER_SPEC_TYPE, "default/resolvers", owner=SRC)
    await until(
        lambda: (r := merged(s, RESOLVER_SPEC_TYPE, "resolvers")) is not None and r.md.phase != "running"
    )
    s.put(NETWORK_CONFIG, RESOLVER_SPEC_TYPE, "default/resolvers", one, owner=SRC)
    await asyncio.sleep(0.02)
    before = ctx.reconciles
    await asyncio.sleep(REQUEUE_DELAY * 3.5)
    assert ctx.reconciles - before >= 2
    s.remove_finalizer(NETWORK, RESOLVER_SPEC_TYPE, "resolvers", SPEC_CTRL)
    await until(running(s, RESOLVER_SPEC_TYPE, "resolvers", one))
    await asyncio.sleep(REQUEUE_DELAY * 2)
    settled = ctx.reconciles
    await asyncio.sleep(REQUEUE_DELAY * 2)
    assert ctx.reconciles == settled


async def test_only_owned_resources_cleaned_up(rt: Runtime) -> None:
    s = rt.state
    s.put(NETWORK, ADDRESS_SPEC_TYPE, "eth9/10.9.9.9/24", addr("10.9.9.9/24", D, link="eth9"), owner="other")
    s.put(NETWORK_CONFIG, ADDRESS_SPEC_TYPE, "default/eth0/10.0.0.2/24", addr("10.0.0.2/24", D), owner=SRC)
    await until(lambda: merged(s, ADDRESS_SPEC_TYPE, "eth0/10.0.0.2/24") is not None)
    s.destroy(NETWORK_CONFIG, ADDRESS_SPEC_TYPE, "default/eth0/10.0.0.2/24", owner=SRC)
    await until(lambda: merged(s, ADDRESS_SPEC_TYPE, "eth0/10.0.0.2/24") is None)
    other = merged(s, ADDRESS_SPEC_TYPE, "eth9/10.9.9.9/24")
    assert other is not None and other.md.phase is Phase.RUNNING


async def test_many_specs_arrive_in_a_burst(rt: Runtime) -> None:
    s = rt.state
    for i in range(200):
        layer = CFG if i % 2 else D
        spec = addr(f"10.0.{i // 100}.{i % 100 + 1}/16", layer)
        s.put(NETWORK_CONFIG, ADDRESS_SPEC_TYPE, f"{layer}/{spec.id()}", spec, owner=SRC)
        # the same address on the default layer too: the configuration one must win
        if layer is CFG:
            low = addr(f"10.0.{i // 100}.{i % 100 + 1}/16", D, scope=Scope.LINK)
            s.put(NETWORK_CONFIG, ADDRESS_SPEC_TYPE, f"default/{low.id()}", low, owner=SRC)
    await until(lambda: len(s.list(NETWORK, ADDRESS_SPEC_TYPE)) == 200)
    for r in s.list(NETWORK, ADDRESS_SPEC_TYPE):
        assert r.spec.scope is Scope.GLOBAL  # type: ignore[attr-defined]


async def test_context_direct_reconcile_raises_on_conflict() -> None:
    """Without a runtime: the restart path is an exception out of reconcile."""
    s = State()
    c = address_merge_controller()
    ctx = Context(s, c, Backoff())
    spec = addr("10.0.0.2/24", CFG)
    s.put(NETWORK_CONFIG, ADDRESS_SPEC_TYPE, "configuration/eth0/10.0.0.2/24", spec, owner=SRC)
    await c.reconcile(ctx)
    s.add_finalizer(NETWORK, ADDRESS_SPEC_TYPE, "eth0/10.0.0.2/24", SPEC_CTRL)
    s.teardown(NETWORK, ADDRESS_SPEC_TYPE, "eth0/10.0.0.2/24", owner=c.name)
    with pytest.raises(MergeConflictError, match=r"eth0/10\.0\.0\.2/24"):
        await c.reconcile(ctx)
    s.remove_finalizer(NETWORK, ADDRESS_SPEC_TYPE, "eth0/10.0.0.2/24", SPEC_CTRL)
    # cleanup happens before the error: the released one is destroyed in the failing round
    with pytest.raises(MergeConflictError):
        await c.reconcile(ctx)
    assert s.get(NETWORK, ADDRESS_SPEC_TYPE, "eth0/10.0.0.2/24") is None
    await c.reconcile(ctx)
    r = s.get(NETWORK, ADDRESS_SPEC_TYPE, "eth0/10.0.0.2/24")
    assert r is not None and r.md.phase is Phase.RUNNING and r.spec == spec
    ctx.close()
