"""Controllers: declared inputs and outputs, and the context they act through.

A controller is level-triggered: each reconcile reads what it needs and writes
the desired outputs, so any number of input events collapses into one pass.
The context enforces the declarations (netd.md §1.2): a controller reads only
its inputs and outputs, writes only its outputs, and touches finalizers only on
its strong inputs.
"""

from __future__ import annotations

import asyncio
import builtins
import enum
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel

from cosi.errors import AccessError
from cosi.resource import Event, Phase, Resource

if TYPE_CHECKING:
    from cosi.state import State


class InputKind(enum.StrEnum):
    WEAK = "weak"  # reconcile on any change
    STRONG = "strong"  # as weak, and may add/remove finalizers
    DESTROY_READY = "destroyReady"  # reconcile only when a resource is tearing down with no finalizers


class OutputKind(enum.StrEnum):
    EXCLUSIVE = "exclusive"
    SHARED = "shared"


@dataclass(frozen=True)
class Input:
    namespace: str
    type: str
    kind: InputKind = InputKind.WEAK
    id: str | None = None


@dataclass(frozen=True)
class Output:
    namespace: str
    type: str
    kind: OutputKind = OutputKind.EXCLUSIVE


class Controller:
    """Base class. Subclasses set ``name`` and implement ``reconcile``.

    ``run`` is the long-running loop; override it (calling ``super().run``) to
    start extra event sources such as a netlink socket reader.
    """

    name: str = ""

    def inputs(self) -> Sequence[Input]:
        return ()

    def outputs(self) -> Sequence[Output]:
        return ()

    async def reconcile(self, ctx: Context) -> None:
        raise NotImplementedError

    async def run(self, ctx: Context) -> None:
        while True:
            await ctx.wait()
            await self.reconcile(ctx)
            ctx.succeeded()


class Backoff:
    """Exponential back-off of a failing controller (netd.md §1.5): 500 ms
    initial, times 1.5, ±50 % randomisation, capped at 60 s, reset by a success."""

    def __init__(
        self, initial: float = 0.5, multiplier: float = 1.5, randomization: float = 0.5, maximum: float = 60.0
    ) -> None:
        self.initial = initial
        self.multiplier = multiplier
        self.randomization = randomization
        self.maximum = maximum
        self._current = initial

    def next(self) -> float:
        base = self._current
        self._current = min(self._current * self.multiplier, self.maximum)
        delta = self.randomization * base
        return max(0.0, min(random.uniform(base - delta, base + delta), self.maximum))

    def reset(self) -> None:
        self._current = self.initial


class Context:
    """What a controller sees of the state, checked against its declarations."""

    def __init__(self, state: State, controller: Controller, backoff: Backoff) -> None:
        self.state = state
        self.controller = controller
        self.name = controller.name
        self.log = logging.getLogger(controller.name)
        self.backoff = backoff
        self._dirty = asyncio.Event()
        self._dirty.set()  # the first reconcile runs at once
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self._outputs = {(o.namespace, o.type): o for o in controller.outputs()}
        self._inputs: dict[tuple[str, str], Input] = {}
        self.reconciles = 0
        self.idle = False  # waiting for a trigger (used by Runtime.settle)
        self.set_inputs(controller.inputs())

    # ---- triggers ------------------------------------------------------------------

    def set_inputs(self, inputs: Sequence[Input]) -> None:
        """Replace the watched inputs (a controller may depend on what it has read)."""
        for u in self._unsubscribe:
            u()
        self._unsubscribe = []
        self._inputs = {(i.namespace, i.type): i for i in inputs}
        for i in inputs:
            self._unsubscribe.append(self.state.subscribe(i.namespace, i.type, self._make_trigger(i)))
        self._dirty.set()

    def _make_trigger(self, inp: Input) -> Callable[[Event], None]:
        dirty = self._dirty

        if inp.kind is InputKind.DESTROY_READY:

            def on_destroy_ready(ev: Event) -> None:
                r = ev.resource
                if (
                    r is not None
                    and r.md.phase is Phase.TEARING_DOWN
                    and not r.md.finalizers
                    and (inp.id is None or r.md.id == inp.id)
                ):
                    dirty.set()

            return on_destroy_ready
        if inp.id is not None:
            want = inp.id

            def on_one(ev: Event) -> None:
                if ev.resource is not None and ev.resource.md.id == want:
                    dirty.set()

            return on_one
        return lambda ev: dirty.set()

    def trigger(self) -> None:
        """Queue a reconcile (coalesced with any already pending)."""
        self._dirty.set()

    def trigger_threadsafe(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._dirty.set)

    def requeue_after(self, seconds: float) -> None:
        """Reconcile again after a delay (a timer, e.g. a lease renewal); replaces a pending timer."""
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(seconds, self._dirty.set)

    async def wait(self) -> None:
        """Wait for the next trigger, then yield once so a burst of writes can finish
        before the reconcile reads the state."""
        self._loop = asyncio.get_running_loop()
        self.idle = True
        try:
            await self._dirty.wait()
        finally:
            self.idle = False
        await asyncio.sleep(0)
        self._dirty.clear()
        self.reconciles += 1

    @property
    def quiet(self) -> bool:
        """Idle with nothing pending, not even a requeue timer."""
        if not self.idle or self._dirty.is_set():
            return False
        timer = self._timer
        return timer is None or timer.cancelled() or timer.when() <= asyncio.get_running_loop().time()

    def succeeded(self) -> None:
        self.backoff.reset()

    def close(self) -> None:
        for u in self._unsubscribe:
            u()
        self._unsubscribe = []
        if self._timer is not None:
            self._timer.cancel()

    # ---- access --------------------------------------------------------------------

    def _check_read(self, namespace: str, type_: str) -> None:
        if (namespace, type_) not in self._inputs and (namespace, type_) not in self._outputs:
            raise AccessError(f"{self.name} reads {type_} in {namespace}, which is not among its inputs")

    def _check_write(self, namespace: str, type_: str) -> None:
        if (namespace, type_) not in self._outputs:
            raise AccessError(f"{self.name} writes {type_} in {namespace}, which is not among its outputs")

    def _check_finalizer(self, namespace: str, type_: str) -> None:
        inp = self._inputs.get((namespace, type_))
        if (namespace, type_) not in self._outputs and (inp is None or inp.kind is not InputKind.STRONG):
            raise AccessError(
                f"{self.name} changes finalizers of {type_} in {namespace}, which is not a strong input"
            )

    def get(self, namespace: str, type_: str, id_: str) -> Resource | None:
        self._check_read(namespace, type_)
        return self.state.get(namespace, type_, id_)

    def list(self, namespace: str, type_: str) -> builtins.list[Resource]:
        self._check_read(namespace, type_)
        return self.state.list(namespace, type_)

    def owned(self, namespace: str, type_: str) -> builtins.list[Resource]:
        """Resources of an output kind that this controller owns (the ones it may clean up)."""
        self._check_write(namespace, type_)
        return [r for r in self.state.list(namespace, type_) if r.md.owner == self.name]

    def put(
        self, namespace: str, type_: str, id_: str, spec: BaseModel, labels: dict[str, str] | None = None
    ) -> Resource:
        self._check_write(namespace, type_)
        return self.state.put(namespace, type_, id_, spec, self.name, labels)

    def teardown(self, namespace: str, type_: str, id_: str) -> bool:
        self._check_write(namespace, type_)
        return self.state.teardown(namespace, type_, id_, self.name)

    def destroy(self, namespace: str, type_: str, id_: str) -> None:
        self._check_write(namespace, type_)
        self.state.destroy(namespace, type_, id_, self.name)

    def add_finalizer(self, namespace: str, type_: str, id_: str, *names: str) -> Resource:
        self._check_finalizer(namespace, type_)
        return self.state.add_finalizer(namespace, type_, id_, *names)

    def remove_finalizer(self, namespace: str, type_: str, id_: str, *names: str) -> Resource:
        self._check_finalizer(namespace, type_)
        return self.state.remove_finalizer(namespace, type_, id_, *names)

    def reconcile_owned(
        self,
        namespace: str,
        type_: str,
        desired: Mapping[str, BaseModel],
        labels: dict[str, str] | None = None,
    ) -> None:
        """Write every desired resource and tear down/destroy owned ones no longer desired.

        The usual tail of a reconcile: "write outputs → clean up what is no
        longer desired". Resources held by finalizers stay in teardown until
        released; a later reconcile destroys them.
        """
        for id_, spec in desired.items():
            cur = self.state.get(namespace, type_, id_)
            if cur is not None and cur.md.phase is Phase.TEARING_DOWN:
                if cur.md.finalizers:
                    continue  # recreated once released: declare a DESTROY_READY input on the output
                self.destroy(namespace, type_, id_)
            self.put(namespace, type_, id_, spec, labels)
        for r in self.owned(namespace, type_):
            if r.md.id not in desired and self.teardown(namespace, type_, r.md.id):
                self.destroy(namespace, type_, r.md.id)
