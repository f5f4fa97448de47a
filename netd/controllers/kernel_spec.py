"""The skeleton every kernel spec controller shares (addresses, routes, rules).

A pass is always the same: add finalizers → read the kernel once (a dump per
object type, indexed by key) → specs going away remove what is ours → once per
start, objects recorded by an earlier run that no spec wants are removed →
running specs adopt a matching kernel object or get their delete/add requests
→ the creations of the pass are recorded as pending in Applied (ONE durable
save) → every request of the pass goes to the kernel as ONE batch (per-request
errno back to its owner) → the owners commit (Applied records confirmed,
written once per pass) or retry with back-off.

Crash consistency (issue 16, :mod:`netd.kernel.applied`): because the intent
is on disk before the batch is sent, a ``kill -9`` at any point leaves every
object we created either recorded or pending. The first pass after a start
resolves the pending records (:meth:`exists`): an object in the kernel that
matches its pending record is ours, one that is not there is forgotten.

A controller on this base keeps only what is its own: how a spec becomes the
kernel object it wants, how a kernel object is compared with it, and what is
recorded. Hooks:

* :meth:`observe` reads the kernel (after the event source was drained);
* :meth:`teardown` / :meth:`stale` / :meth:`plan` put requests in the batch;
* :meth:`observe_after` re-reads what the adds made (optional);
* :meth:`intent` returns the pending record of a spec whose requests create an
  object (written before the batch), :meth:`exists` says whether the kernel has
  the object of a pending record left by a crash;
* :meth:`commit` returns the Applied record of a spec whose requests succeeded;
* :meth:`ignorable` says which errors do not count (a delete of what is gone).

Kernel objects are owned only when recorded in ``Applied`` (decisions.md):
an object that was there before and matched a spec is adopted, and stays when
the spec goes.

Records of objects whose spec came from the operator layer (DHCP, VIP,
KubeSpan) say so (``"layer": "operator"``); the restart sweep leaves them
alone until their operator had its chance to republish (a grace period after
the start, :mod:`operator_grace`): a republished spec adopts its object, only
what is still unwanted after the grace is removed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from cosi import Context, Controller, Input, InputKind, Phase
from netd.kernel.applied import Applied
from netd.kernel.netlink import NLM_F_CREATE
from netd.kernel.rtnl import KernelError, NotFound, Rtnl, describe_request
from netd.kernel.rtnl_batch import Request
from netd.kernel.rtnl_events import RtnlEvents
from netd.resources.namespaces import NETWORK

from .operator_grace import Grace, retag, tag
from .retry import KernelRetry

S = TypeVar("S")
O = TypeVar("O")  # noqa: E741 - the controller's observation of the kernel

#: A pass with more writes than this logs one summary line instead of one per write.
LOG_EACH_MAX = 50

STALE_PREFIX = "stale "


@dataclass
class SpecItem(Generic[S]):
    id: str
    spec: S
    tearing_down: bool


@dataclass
class Owner(Generic[S]):
    """What one spec (or one stale record) put in the batch, and how it went.
    ``data`` is the controller's own (the desired object, an action, ...)."""

    key: str
    item: SpecItem[S] | None = None
    requests: list[int] = field(default_factory=list)
    data: Any = None


class Batch:
    """The requests of one pass, in order; a kernel object is deleted once at most."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.doomed: set[Hashable] = set()

    def add(self, owner: Owner[Any], request: Request) -> int:
        owner.requests.append(len(self.requests))
        self.requests.append(request)
        return owner.requests[-1]

    def delete(self, owner: Owner[Any], key: Hashable, request: Request) -> None:
        """A delete of the kernel object ``key`` (skipped if the pass already deletes it)."""
        if key not in self.doomed:
            self.doomed.add(key)
            self.add(owner, request)


class KernelSpecController(Controller, Generic[S, O]):
    """Specs of ``spec_type`` in ``network`` → kernel objects (see the module docstring)."""

    spec_type: str = ""
    spec_model: type[Any] = object
    applied_kind: str = ""
    #: The rtnetlink groups whose events trigger a pass (netd.kernel.netlink).
    groups: int = 0
    #: "route", "address", "rule" (log text).
    what: str = ""

    def __init__(self, applied: Applied) -> None:
        self.applied = applied
        self.rtnl: Rtnl | None = None
        self.events: RtnlEvents | None = None
        self.retry: KernelRetry | None = None
        self.passes = 0
        self._stale_done = False
        self._resolved = False
        self.grace = Grace()
        self._waiting: set[str] = set()
        self._verbose = True

    # ---- hooks

    def order(self, items: list[SpecItem[S]]) -> list[SpecItem[S]]:
        """The order running specs are applied in (teardown runs it backwards)."""
        return items

    async def observe(self, kernel: Rtnl) -> O:
        raise NotImplementedError

    def teardown(self, item: SpecItem[S], obs: O, batch: Batch, owner: Owner[S], recorded: bool) -> None:
        """Requests removing what a tearing-down spec created (none: released at once)."""
        raise NotImplementedError

    def stale(self, rec_id: str, data: dict[str, Any], obs: O, batch: Batch, owner: Owner[S]) -> None:
        """Requests removing the kernel object of a record no spec wants any more."""
        raise NotImplementedError

    def plan(
        self, ctx: Context, item: SpecItem[S], obs: O, batch: Batch, recorded: dict[str, Any] | None
    ) -> Owner[S] | str | None:
        """The owner of a running spec's requests; None when in sync or waiting; an error
        text when the spec cannot be applied at all."""
        raise NotImplementedError

    async def observe_after(self, kernel: Rtnl, written: list[Owner[S]]) -> Any:
        """What the successful adds made, for :meth:`commit` (default: nothing)."""
        return None

    def commit(
        self, ctx: Context, owner: Owner[S], after: Any, errors: Sequence[KernelError | None]
    ) -> dict[str, Any] | None:
        """The Applied record of a running spec whose requests went through (None: keep none)."""
        raise NotImplementedError

    def intent(self, owner: Owner[S]) -> dict[str, Any] | None:
        """The record announcing what a running spec's requests will create (written
        durably before the batch is sent); None: the controller records nothing."""
        raise NotImplementedError

    def exists(self, rec_id: str, data: dict[str, Any], obs: O) -> bool:
        """Whether the kernel holds the object a pending record announced (and it matches)."""
        raise NotImplementedError

    def reclaim(self, item: SpecItem[S], obs: O) -> dict[str, Any] | None:
        """The record of a running spec's kernel object when the records were lost (a
        corrupt applied.json): what matches a current spec is taken as ours."""
        return None

    def ignorable(self, owner: Owner[S], i: int, err: KernelError) -> bool:
        """Errors that do not fail their owner: a delete of an object already gone."""
        return isinstance(err, NotFound)

    def forget(self, spec_id: str) -> None:
        """Drop the controller's caches of a released spec."""

    def after_pass(
        self, ctx: Context, requests: Sequence[Request], errors: Sequence[KernelError | None]
    ) -> None:
        """Called at the end of a pass that wrote something."""

    # ---- shared helpers for the hooks

    def waiting_for_link(self, ctx: Context, spec_id: str, link: str) -> None:
        """The spec's link is missing: logged once; the link event triggers the next pass."""
        if spec_id not in self._waiting:
            self._waiting.add(spec_id)
            ctx.log.info("%s: waiting for link %s", spec_id, link)

    def note(self, ctx: Context, msg: str, *args: Any) -> None:
        """One line per write when a pass writes little; at debug level in a big pass
        (10,000 lines cost more than the writes), which logs a summary instead."""
        if self._verbose:
            ctx.log.info(msg, *args)
        else:
            ctx.log.debug(msg, *args)

    # ---- the skeleton

    def inputs(self) -> Sequence[Input]:
        return [Input(NETWORK, self.spec_type, InputKind.STRONG)]

    async def run(self, ctx: Context) -> None:
        self.events = RtnlEvents(self.groups, ctx.trigger, keep=False)
        watcher = asyncio.create_task(self.events.run(), name=f"{self.name}.events")
        try:
            await super().run(ctx)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            self.grace.close()
            self.events = None
            if self.rtnl is not None:
                self.rtnl.close()
                self.rtnl = None

    def _items(self, ctx: Context) -> list[SpecItem[S]]:
        items: list[SpecItem[S]] = []
        for r in ctx.list(NETWORK, self.spec_type):
            assert isinstance(r.spec, self.spec_model)
            tearing = r.md.phase is Phase.TEARING_DOWN
            if not tearing and self.name not in r.md.finalizers:
                ctx.add_finalizer(NETWORK, self.spec_type, r.md.id, self.name)
            items.append(SpecItem(r.md.id, r.spec, tearing))
        return self.order(items)

    def _failed(self, o: Owner[S], errors: Sequence[KernelError | None]) -> KernelError | None:
        """The first error of the owner's requests that counts."""
        for i in o.requests:
            err = errors[i]
            if err is not None and not self.ignorable(o, i, err):
                return err
        return None

    def _release(self, ctx: Context, item: SpecItem[S]) -> None:
        assert self.retry is not None
        self.retry.succeeded(item.id)
        self.applied.remove(self.applied_kind, item.id)
        self._waiting.discard(item.id)
        self.forget(item.id)
        ctx.remove_finalizer(NETWORK, self.spec_type, item.id, self.name)

    async def reconcile(self, ctx: Context) -> None:
        if self.retry is None:
            self.retry = KernelRetry(ctx.log)
        if self.rtnl is None:
            self.rtnl = Rtnl()
        t0 = time.monotonic()
        self.grace.start()
        self.passes += 1
        retry, kernel = self.retry, self.rtnl
        items = self._items(ctx)
        ids = {s.id for s in items}
        if self.events is not None:
            self.events.drain()  # what it has queued, the dumps below reflect
        obs = await self.observe(kernel)
        if not self._resolved:  # once per start: creations a crash left unconfirmed
            self._resolved = True
            ours, dropped = self.applied.resolve(self.applied_kind, lambda k, d: self.exists(k, d, obs))
            if ours or dropped:
                ctx.log.info(
                    "%d %s creation(s) interrupted by a crash: %d made it (ours), %d did not",
                    ours + dropped,
                    self.what,
                    ours,
                    dropped,
                )
        recorded = self.applied.items(self.applied_kind)
        batch = Batch()

        # 1. Specs going away (backwards: what depends on others goes first).
        released: list[SpecItem[S]] = []
        teardowns: list[Owner[S]] = []
        for s in reversed(items):
            if not s.tearing_down:
                continue
            o: Owner[S] = Owner(s.id, item=s)
            self.teardown(s, obs, batch, o, s.id in recorded)
            if o.requests:
                teardowns.append(o)
            else:
                released.append(s)

        # 2. Once per start: objects recorded by an earlier run that no spec wants
        # (those of operator-layer specs only once the grace is over).
        stale: list[Owner[S]] = []
        kept = 0
        if not self._stale_done:
            for rec_id, data in sorted(recorded.items()):
                if rec_id in ids:
                    continue
                if self.grace.deferred(data):
                    kept += 1
                    continue
                o = Owner(STALE_PREFIX + rec_id)
                self.stale(rec_id, data, obs, batch, o)
                stale.append(o)

        # 3. Running specs. After a start whose applied.json was unreadable, the objects
        # the current specs match are recorded as ours (issue 16), never the others.
        reclaiming = self.passes == 1 and self.applied.corrupt is not None
        running: list[Owner[S]] = []
        retagged: dict[str, dict[str, Any]] = {}
        for s in items:
            if s.tearing_down:
                continue
            rec = recorded.get(s.id)
            planned = self.plan(ctx, s, obs, batch, rec)
            if isinstance(planned, Owner):
                self._waiting.discard(s.id)
                running.append(planned)
            elif isinstance(planned, str):
                retry.failed(s.id, planned)
            else:
                retry.succeeded(s.id)
                if rec is not None and (t := retag(rec, s.spec)) is not None:
                    retagged[s.id] = t  # in sync, but the spec's layer changed
                elif rec is None and reclaiming and (r := self.reclaim(s, obs)) is not None:
                    retagged[s.id] = tag(r, s.spec)  # records lost: what the specs match is ours

        requests = batch.requests
        self._verbose = len(requests) <= LOG_EACH_MAX
        # Intent before action: what the batch creates is on disk before it is sent.
        pended: list[Owner[S]] = []
        with self.applied.batch():
            for o in running:
                if o.item is None or not any(requests[i].flags & NLM_F_CREATE for i in o.requests):
                    continue
                intent = self.intent(o)
                if intent is not None:
                    self.applied.pend(self.applied_kind, o.key, tag(intent, o.item.spec))
                    pended.append(o)
        errors = await kernel.write(requests) if requests else []
        written = [o for o in running if self._failed(o, errors) is None]
        after = await self.observe_after(kernel, written) if written else None

        with self.applied.batch():
            for s in released:
                self._release(ctx, s)
            for o in teardowns:
                err = self._failed(o, errors)
                if err is not None:
                    retry.failed(o.key, err)
                    continue
                for i in o.requests:
                    self.note(ctx, "%s: %s", o.key, describe_request(requests[i]))
                assert o.item is not None
                self._release(ctx, o.item)
            ok = True
            for o in stale:
                rec_id = o.key[len(STALE_PREFIX) :]
                err = self._failed(o, errors)
                if err is not None:
                    retry.failed(o.key, err)
                    ok = False
                    continue
                if o.requests:
                    self.note(ctx, "%s: %s of an earlier configuration removed", rec_id, self.what)
                retry.succeeded(o.key)
                self.applied.remove(self.applied_kind, rec_id)
            if not self._stale_done:
                self._stale_done = ok and not kept
            for rec_id, t in retagged.items():
                self.applied.add(self.applied_kind, rec_id, t)
            for o in pended:  # nothing stays pending: made (even if the owner failed) or not
                made = any(requests[i].flags & NLM_F_CREATE and errors[i] is None for i in o.requests)
                if made:
                    self.applied.confirm(self.applied_kind, o.key)  # commit() below may refine it
                else:
                    self.applied.abandon(self.applied_kind, o.key)
            for o in running:
                err = self._failed(o, errors)
                if err is not None:
                    retry.failed(o.key, err)
                    continue
                retry.succeeded(o.key)
                record = self.commit(ctx, o, after, errors)
                if record is not None:
                    assert o.item is not None
                    self.applied.add(self.applied_kind, o.key, tag(record, o.item.spec))

        if requests:
            self.after_pass(ctx, requests, errors)
        retry.forget_except(ids | {STALE_PREFIX + k for k in self.applied.items(self.applied_kind)})
        retry.schedule(ctx)
        if kept:
            self.grace.wake(ctx, kept, self.what)
        failed = sum(1 for e in errors if e is not None and not isinstance(e, NotFound))
        if not self._verbose:
            deletes = sum(1 for r in requests if not r.flags & NLM_F_CREATE)
            ctx.log.info(
                "%d %ss added, %d removed, %d requests failed (one batch)",
                len(requests) - deletes,
                self.what,
                deletes,
                failed,
            )
        ctx.log.debug(
            "pass %d: %d specs, %d writes (%d failed), %.0f ms",
            self.passes,
            len(items),
            len(requests),
            failed,
            (time.monotonic() - t0) * 1000,
        )
