"""Objects of operator-layer specs outlive a restart for a grace period (decisions.md
"Restarts and objects that operators and KubeSpan own"): the record tag, the Grace clock,
and the restart sweep of the kernel spec skeleton and of the link controller over fakes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

# The fakes of the address/route and link controller tests (same directory).
from test_address_route_spec import FakeRtnl, aspec, kaddr, make
from test_link_spec import FakeOps, Harness, bridge, kbridge

from cosi import Backoff, Context, State
from netd import tunables
from netd.controllers.address_spec import AddressSpecController
from netd.controllers.operator_grace import LAYER_KEY, Grace, is_operator, retag, tag
from netd.kernel.applied import Applied
from netd.resources import register_all
from netd.resources.address import ADDRESS_SPEC_TYPE
from netd.resources.enums import ConfigLayer
from netd.resources.namespaces import NETWORK

OWNER = "network.AddressMergeController"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---- the pure parts ---------------------------------------------------------------------------


def test_tag_marks_only_operator_layer_specs() -> None:
    rec = {"link": "eth0", "address": "10.0.0.5/24"}
    op = tag(rec, aspec(layer=ConfigLayer.OPERATOR))
    assert op == {**rec, LAYER_KEY: "operator"} and is_operator(op)
    assert rec == {"link": "eth0", "address": "10.0.0.5/24"}  # a copy
    for layer in (ConfigLayer.DEFAULT, ConfigLayer.PLATFORM, ConfigLayer.CONFIGURATION):
        plain = tag(op, aspec(layer=layer))
        assert plain == rec and not is_operator(plain)  # the tag follows the spec
    assert not is_operator({}) and not is_operator({"kind": "bridge"})  # older records
    assert retag(op, aspec(layer=ConfigLayer.OPERATOR)) is None  # right already
    assert retag(rec, aspec(layer=ConfigLayer.CONFIGURATION)) is None
    assert retag(rec, aspec(layer=ConfigLayer.OPERATOR)) == op
    assert retag(op, aspec(layer=ConfigLayer.CONFIGURATION)) == rec


def test_grace_defers_operator_records_until_over() -> None:
    clock = Clock()
    g = Grace(5.0, clock=clock)
    g.start()
    clock.now += 1
    g.start()  # idempotent: counted from the first pass
    assert g.remaining() == pytest.approx(4.0) and not g.over
    assert g.deferred({LAYER_KEY: "operator"})
    assert not g.deferred({}) and not g.deferred({LAYER_KEY: "configuration"})
    clock.now += 4
    assert g.remaining() == 0 and g.over
    assert not g.deferred({LAYER_KEY: "operator"})
    assert Grace(0.0, clock=clock).remaining() == 0.0


def test_grace_reads_the_tunable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "tunables.yaml"
    f.write_text("OPERATOR_RESTART_GRACE: 1500ms\n")
    monkeypatch.setenv(tunables.ENV, str(f))  # (the tunables cache is per file path)
    g = Grace()
    g.start()
    assert g.seconds == 1.5


async def test_grace_wakes_the_controller_when_over() -> None:
    state = State()
    register_all(state)
    c = AddressSpecController(Applied())
    ctx = Context(state, c, Backoff())
    ctx._dirty.clear()
    g = Grace(0.05)
    g.start()
    g.wake(ctx, 1, "address")
    g.wake(ctx, 1, "address")  # one timer
    assert not ctx._dirty.is_set()
    await asyncio.sleep(0.15)
    assert ctx._dirty.is_set()
    g.close()


# ---- the kernel spec skeleton (addresses over a fake kernel) -------------------------------------


@pytest.fixture
def state() -> State:
    s = State()
    register_all(s)
    return s


def setup(state: State, tmp_path: Path) -> tuple[Applied, FakeRtnl, AddressSpecController, Context, Clock]:
    applied = Applied(str(tmp_path / "applied.json"))
    op = {
        "link": "eth0",
        "address": "10.9.9.9/24",
        "validUntil": "",
        "preferredUntil": "",
        LAYER_KEY: "operator",
    }
    applied.add("address", "eth0/10.9.9.9/24", op)  # a DHCP lease of the last run
    applied.add("address", "eth0/10.8.8.8/24", {"link": "eth0", "address": "10.8.8.8/24"})  # old config
    fake = FakeRtnl()
    fake.addrs = [kaddr("10.9.9.9/24"), kaddr("10.8.8.8/24")]
    clock = Clock()
    c = AddressSpecController(applied)
    c.grace = Grace(30.0, clock=clock)
    return applied, fake, c, make(state, c, fake), clock


async def test_operator_records_are_swept_after_the_grace(state: State, tmp_path: Path) -> None:
    applied, fake, c, ctx, clock = setup(state, tmp_path)
    await c.reconcile(ctx)
    assert fake.writes == [("del", "10.8.8.8/24")]  # an ordinary stale record: at once
    assert sorted(applied.items("address")) == ["eth0/10.9.9.9/24"]
    assert not c._stale_done
    clock.now += 10
    await c.reconcile(ctx)
    assert fake.writes == [("del", "10.8.8.8/24")]  # still in the grace
    clock.now += 20
    await c.reconcile(ctx)
    assert fake.writes == [("del", "10.8.8.8/24"), ("del", "10.9.9.9/24")]
    assert applied.items("address") == {} and c._stale_done
    c.grace.close()


async def test_a_republished_operator_spec_adopts_its_object(state: State, tmp_path: Path) -> None:
    applied, fake, c, ctx, clock = setup(state, tmp_path)
    await c.reconcile(ctx)
    s = aspec("10.9.9.9/24", layer=ConfigLayer.OPERATOR)
    state.put(NETWORK, ADDRESS_SPEC_TYPE, s.id(), s, OWNER)
    clock.now += 5
    await c.reconcile(ctx)
    assert c._stale_done  # nothing left to wait for
    clock.now += 60
    await c.reconcile(ctx)
    assert fake.writes == [("del", "10.8.8.8/24")]  # the lease address: neither removed nor re-added
    assert applied.items("address")["eth0/10.9.9.9/24"][LAYER_KEY] == "operator"
    c.grace.close()


async def test_commit_records_the_layer_and_follows_it(state: State) -> None:
    applied = Applied()
    fake = FakeRtnl()
    c = AddressSpecController(applied)
    ctx = make(state, c, fake)
    s = aspec("10.0.0.7/24", layer=ConfigLayer.OPERATOR)
    state.put(NETWORK, ADDRESS_SPEC_TYPE, s.id(), s, OWNER)
    await c.reconcile(ctx)
    assert fake.writes == [("add", "10.0.0.7/24")]
    assert applied.items("address")[s.id()][LAYER_KEY] == "operator"
    # The same address now comes from the machine config: in sync, nothing written, but
    # the record no longer waits for an operator after a restart.
    state.put(
        NETWORK, ADDRESS_SPEC_TYPE, s.id(), aspec("10.0.0.7/24", layer=ConfigLayer.CONFIGURATION), OWNER
    )
    await c.reconcile(ctx)
    assert fake.writes == [("add", "10.0.0.7/24")]
    assert LAYER_KEY not in applied.items("address")[s.id()]


# ---- the link controller ------------------------------------------------------------------------


def test_link_records_the_layer_and_waits_for_the_grace(tmp_path: Path) -> None:
    applied = Applied(str(tmp_path / "applied.json"))
    h = Harness(FakeOps(), applied)
    h.put(bridge("ksbr", layer=ConfigLayer.OPERATOR), bridge("cfg"))
    h.reconcile()
    assert applied.items("link") == {
        "ksbr": {"kind": "bridge", LAYER_KEY: "operator"},
        "cfg": {"kind": "bridge"},
    }

    # Restart without the specs: the ordinary link goes at once, the operator's waits.
    clock = Clock()
    ops = FakeOps(kbridge("ksbr", 1), kbridge("cfg", 2))
    h = Harness(ops, Applied(str(tmp_path / "applied.json")))
    h.ctl.grace = Grace(30.0, clock=clock)
    assert h.reconcile() == [("del", "cfg")]
    clock.now += 29
    assert h.reconcile() == []
    clock.now += 1
    assert h.reconcile() == [("del", "ksbr")]
    assert h.applied.items("link") == {}


def test_link_republished_during_the_grace_is_adopted(tmp_path: Path) -> None:
    applied = Applied(str(tmp_path / "applied.json"))
    applied.add("link", "ksbr", {"kind": "bridge", LAYER_KEY: "operator"})
    clock = Clock()
    ops = FakeOps(kbridge("ksbr", 1))
    h = Harness(ops, applied)
    h.ctl.grace = Grace(30.0, clock=clock)
    assert h.reconcile() == []
    h.put(bridge("ksbr", layer=ConfigLayer.OPERATOR))
    clock.now += 1
    assert h.reconcile() == []  # in sync: adopted as it is
    clock.now += 60
    assert h.reconcile() == []
    assert ops.links["ksbr"].index == 1
    assert applied.items("link") == {"ksbr": {"kind": "bridge", LAYER_KEY: "operator"}}
