"""The controller runtime: coalescing, restarts, access checks, dependency graph."""

from __future__ import annotations

import asyncio
import logging

import pytest
from pydantic import BaseModel

from cosi import (
    AccessError,
    Backoff,
    Context,
    Controller,
    Input,
    InputKind,
    Output,
    OwnerConflictError,
    Runtime,
    State,
)

NS = "test"
SRC, DST = "Sources.test.dev", "Sinks.test.dev"


class Val(BaseModel):
    n: int


def fast_backoff() -> Backoff:
    return Backoff(initial=0.01, maximum=0.05)


class Copier(Controller):
    """Copies every source to a sink with n*10; removes sinks whose source went."""

    name = "test.Copier"

    def inputs(self) -> list[Input]:
        return [Input(NS, SRC)]

    def outputs(self) -> list[Output]:
        return [Output(NS, DST)]

    async def reconcile(self, ctx: Context) -> None:
        desired: dict[str, BaseModel] = {
            r.id: Val(n=r.spec.n * 10) for r in ctx.list(NS, SRC)  # type: ignore[attr-defined]
        }
        ctx.reconcile_owned(NS, DST, desired)


async def until(cond: object, timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


async def test_burst_of_events_coalesces() -> None:
    s = State()
    rt = Runtime(s, backoff=fast_backoff)
    rt.register(Copier())
    async with rt:
        await until(lambda: rt.contexts["test.Copier"].reconciles >= 1)
        await asyncio.sleep(0.02)
        before = rt.contexts["test.Copier"].reconciles
        for i in range(1000):
            s.put(NS, SRC, f"s{i:04d}", Val(n=i), owner="writer")
            if i % 100 == 99:
                await asyncio.sleep(0)
        await until(lambda: len(s.list(NS, DST)) == 1000)
        await asyncio.sleep(0.05)
        n = rt.contexts["test.Copier"].reconciles - before
        assert 1 <= n <= 15, f"{n} reconciles for 1,000 events"
        sink = s.get(NS, DST, "s0999")
        assert sink is not None and sink.spec == Val(n=9990) and sink.md.owner == "test.Copier"
        # removing a source removes its sink; a single event is not delayed
        s.destroy(NS, SRC, "s0005", owner="writer")
        await until(lambda: s.get(NS, DST, "s0005") is None, timeout=0.5)


async def test_failing_controller_restarts_and_others_keep_running(caplog: pytest.LogCaptureFixture) -> None:
    class Flaky(Controller):
        name = "test.Flaky"
        calls = 0

        def inputs(self) -> list[Input]:
            return [Input(NS, SRC)]

        def outputs(self) -> list[Output]:
            return [Output(NS, "Flags.test.dev")]

        async def reconcile(self, ctx: Context) -> None:
            Flaky.calls += 1
            if Flaky.calls <= 3:
                raise RuntimeError("boom")
            ctx.put(NS, "Flags.test.dev", "ok", Val(n=Flaky.calls))

    s = State()
    rt = Runtime(s, backoff=fast_backoff)
    rt.register(Flaky())
    rt.register(Copier())
    caplog.set_level(logging.ERROR)
    async with rt:
        s.put(NS, SRC, "a", Val(n=1), owner="writer")
        await until(lambda: s.get(NS, DST, "a") is not None)
        await until(lambda: s.get(NS, "Flags.test.dev", "ok") is not None)
        assert rt.restarts["test.Flaky"] == 3
        assert "test.Copier" not in rt.restarts
        s.put(NS, SRC, "b", Val(n=2), owner="writer")
        await until(lambda: s.get(NS, DST, "b") is not None)
    failed = [r for r in caplog.records if r.name == "test.Flaky"]
    assert len(failed) == 3 and "boom" in (failed[0].exc_text or "")


async def test_context_enforces_declarations() -> None:
    s = State()
    c = Copier()
    ctx = Context(s, c, Backoff())
    with pytest.raises(AccessError, match="not among its outputs"):
        ctx.put(NS, SRC, "x", Val(n=1))
    with pytest.raises(AccessError, match="not among its inputs"):
        ctx.list(NS, "Other.test.dev")
    s.put(NS, SRC, "x", Val(n=1))
    with pytest.raises(AccessError, match="not a strong input"):
        ctx.add_finalizer(NS, SRC, "x", "mine")
    ctx.close()


async def test_two_exclusive_claims_conflict_at_register() -> None:
    s = State()
    rt = Runtime(s)
    rt.register(Copier())

    class Other(Copier):
        name = "test.Other"

    with pytest.raises(OwnerConflictError):
        rt.register(Other())


async def test_finalizer_flow_between_controllers() -> None:
    """A 'spec' controller holds sinks with a finalizer until it has undone them;
    the owner destroys them once released (destroy-ready input)."""
    undone: list[str] = []

    class Applier(Controller):
        name = "test.Applier"

        def inputs(self) -> list[Input]:
            return [Input(NS, DST, InputKind.STRONG)]

        def outputs(self) -> list[Output]:
            return [Output(NS, "Applied.test.dev")]

        async def reconcile(self, ctx: Context) -> None:
            for r in ctx.list(NS, DST):
                if r.md.phase == "tearingDown":
                    if self.name not in r.md.finalizers:
                        continue  # already undone, waiting for the owner to destroy it
                    undone.append(r.id)
                    ctx.remove_finalizer(NS, DST, r.id, self.name)
                else:
                    ctx.add_finalizer(NS, DST, r.id, self.name)

    class Owner(Copier):
        def inputs(self) -> list[Input]:
            return [Input(NS, SRC), Input(NS, DST, InputKind.DESTROY_READY)]

    s = State()
    rt = Runtime(s, backoff=fast_backoff)
    rt.register(Owner())
    rt.register(Applier())
    async with rt:
        s.put(NS, SRC, "a", Val(n=1), owner="w")
        await until(lambda: (r := s.get(NS, DST, "a")) is not None and r.md.finalizers == ("test.Applier",))
        s.destroy(NS, SRC, "a", owner="w")
        await until(lambda: s.get(NS, DST, "a") is None)
        assert undone == ["a"]


def test_dependencies_graphviz() -> None:
    s = State()
    rt = Runtime(s)
    rt.register(Copier())
    dot = rt.dependencies()
    assert dot.startswith("digraph")
    assert '"test/Sources.test.dev" -> "test.Copier" [style=dashed];' in dot
    assert '"test.Copier" -> "test/Sinks.test.dev" [style=bold];' in dot


def test_backoff_sequence() -> None:
    b = Backoff(randomization=0.0)
    seq = [round(b.next(), 4) for _ in range(14)]
    assert seq[:4] == [0.5, 0.75, 1.125, 1.6875]
    assert max(seq) == 60.0
    b.reset()
    assert b.next() == 0.5
    jitter = Backoff()
    assert 0.25 <= jitter.next() <= 0.75
    assert 0.375 <= jitter.next() <= 1.125


async def test_settle_waits_for_a_chain_of_controllers() -> None:
    class Second(Controller):
        name = "test.Second"

        def inputs(self) -> list[Input]:
            return [Input(NS, DST)]

        def outputs(self) -> list[Output]:
            return [Output(NS, "Thirds.test.dev")]

        async def reconcile(self, ctx: Context) -> None:
            await asyncio.sleep(0.01)  # slow enough that a naive check would stop early
            ctx.reconcile_owned(NS, "Thirds.test.dev", {r.id: r.spec for r in ctx.list(NS, DST)})

    s = State()
    for i in range(5):
        s.put(NS, SRC, f"s{i}", Val(n=i), owner="w")
    rt = Runtime(s)
    rt.register(Copier())
    rt.register(Second())
    async with rt:
        assert await rt.settle()
        assert len(s.list(NS, "Thirds.test.dev")) == 5


async def test_reconcile_owned_recreates_a_released_resource() -> None:
    """A desired resource still tearing down is destroyed and written anew once
    nothing holds it, not left in teardown forever."""
    s = State()
    c = Copier()
    ctx = Context(s, c, Backoff())
    ctx.reconcile_owned(NS, DST, {"a": Val(n=1)})
    s.add_finalizer(NS, DST, "a", "applier")
    ctx.reconcile_owned(NS, DST, {})
    held = s.get(NS, DST, "a")
    assert held is not None and held.md.phase == "tearingDown"
    ctx.reconcile_owned(NS, DST, {"a": Val(n=2)})
    held = s.get(NS, DST, "a")
    assert held is not None and held.md.phase == "tearingDown" and held.spec == Val(n=1)
    s.remove_finalizer(NS, DST, "a", "applier")
    ctx.reconcile_owned(NS, DST, {"a": Val(n=2)})
    fresh = s.get(NS, DST, "a")
    assert fresh is not None and fresh.md.phase == "running" and fresh.spec == Val(n=2)
    ctx.close()
