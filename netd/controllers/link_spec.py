"""LinkSpecController: applies LinkSpecs to the kernel's links (netd.md §5.1).

Physical links (``logical: false``) are never created, deleted, nor brought
down on teardown: only their up/down state, MTU and master follow the spec.
Logical links are created, updated and deleted, in a safe order: parents and
masters before their children and slaves on create, the reverse on delete.
Everything kind-specific (what to create, what to compare, what to update) is
asked of the kind's module in ``netd/kernel/links``.

Ownership. A logical link is deleted (teardown, kind mismatch, restart
clean-up) only if netd created it: every creation is recorded as pending in
``applied.json`` (kind ``link``, key = name, data = ``{"kind": ...}``),
durably, *before* the RTM_NEWLINK (or the start of wireguard-go), confirmed
after it, and forgotten when the link is deleted. A crash between the two
leaves the pending record: the first pass after the start makes it ours if
the link exists and is of the recorded kind (a wireguard-go started just
before the crash: its ``tun`` device, stopped with the link if no spec wants
it), else drops it. A logical link that already existed
when its spec appeared is *adopted*: configured like ours (STP, MTU, up,
master) but not recorded, so its owner (a person, other software) keeps it:
tearing the spec down leaves it in place, and a kind mismatch is reported,
never "fixed" by deleting it. Links no spec names are never touched.

Restart. On its first reconcile after start the controller deletes the
recorded logical links that no current (running, logical) spec wants,
children before parents, and drops their records; a record whose kernel link
is gone, or has become another kind, is only dropped. A link created for an
operator-layer spec (KubeSpan's) is recorded with ``"layer": "operator"`` and
is left alone until the grace period after the start is over
(:mod:`operator_grace`): a spec republished meanwhile adopts it as it is.

Kernel errors (EEXIST, ENODEV, a missing master) are per spec: logged once and
retried with back-off (KernelRetry); link events also retry, so a spec whose
master appears later converges at once.

Unlike the reference, a pass converges in one go where it can: an enslaved
link is brought down, enslaved, and up again in the same pass; bridge STP is
set on the running bridge (the kernel allows it), without detaching ports.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from cosi import Context, Controller, Input, InputKind, Output, OutputKind, Phase
from netd.controllers.operator_grace import Grace, retag, tag
from netd.controllers.retry import KernelRetry
from netd.kernel.applied import Applied
from netd.kernel.links import KernelLink, NotReady, kind_for
from netd.kernel.links.ops import LinkOps
from netd.kernel.netlink import LINK_GROUPS
from netd.kernel.rtnl import KernelError
from netd.kernel.rtnl_events import RtnlEvents
from netd.resources.enums import LinkFlags, LinkType
from netd.resources.link import LINK_REFRESH_TYPE, LINK_SPEC_TYPE, LinkRefresh, LinkSpec
from netd.resources.namespaces import NETWORK

NAME = "network.LinkSpecController"
APPLIED_KIND = "link"

log = logging.getLogger(NAME)


# ---- actions (what a plan asks of the kernel) ------------------------------------------


@dataclass(frozen=True)
class Create:
    name: str


@dataclass(frozen=True)
class Delete:
    name: str


@dataclass(frozen=True)
class Update:
    """Kind attributes (IFLA_INFO_DATA) to the spec's."""

    name: str


@dataclass(frozen=True)
class SetUp:
    name: str
    up: bool


@dataclass(frozen=True)
class SetMtu:
    name: str
    mtu: int


@dataclass(frozen=True)
class SetMulticast:
    name: str
    on: bool


@dataclass(frozen=True)
class SetMaster:
    name: str
    master: int  # ifindex, 0 = detach


Action = Create | Delete | Update | SetUp | SetMtu | SetMulticast | SetMaster


# ---- ordering --------------------------------------------------------------------------


def dependencies(spec: LinkSpec) -> set[str]:
    """Links that must exist before this one: VLAN parent, bond master, bridge."""
    return {n for n in (spec.parent_name, spec.master_name, spec.bridge_slave.master_name) if n} - {spec.name}


def spec_key(spec: LinkSpec) -> tuple[str, int, str]:
    """The reference's order (netd.md §5.1 step 2): bond slaves right after their bond,
    in slaveIndex order; everything else by name."""
    if spec.master_name:
        return (spec.master_name, spec.slave_index, spec.name)
    return (spec.name, 0, "")


def topological(
    names: Iterable[str], deps: Mapping[str, set[str]], key: Callable[[str], tuple[object, ...]]
) -> list[str]:
    """``names`` with every name after its dependencies (those among ``names``);
    ties broken by ``key``. A dependency cycle cannot be honoured: its members
    follow in ``key`` order, after everything else."""
    todo = set(names)
    pending = {n: {d for d in deps.get(n, set()) if d in todo and d != n} for n in todo}
    users: dict[str, set[str]] = {n: set() for n in todo}
    for n, ds in pending.items():
        for d in ds:
            users[d].add(n)
    heap = [(key(n), n) for n, ds in pending.items() if not ds]
    heapq.heapify(heap)
    out: list[str] = []
    while heap:
        _, n = heapq.heappop(heap)
        out.append(n)
        for u in users[n]:
            pending[u].discard(n)
            if not pending[u]:
                heapq.heappush(heap, (key(u), u))
    done = set(out)
    out.extend(sorted((n for n in todo if n not in done), key=key))
    return out


def order_specs(specs: Sequence[LinkSpec]) -> list[LinkSpec]:
    """Create/update order: parents and masters first, then by the reference's key."""
    by_name = {s.name: s for s in specs}
    deps = {s.name: dependencies(s) for s in specs}
    return [by_name[n] for n in topological(by_name, deps, lambda n: spec_key(by_name[n]))]


def kernel_dependencies(links: Mapping[str, KernelLink]) -> dict[str, set[str]]:
    """What each kernel link hangs on: its IFLA_LINK parent and its master."""
    by_index = {link.index: name for name, link in links.items()}
    return {
        name: {by_index[i] for i in (link.link_index, link.master_index) if i in by_index and i != link.index}
        for name, link in links.items()
    }


def deletion_order(
    names: Iterable[str], links: Mapping[str, KernelLink], specs: Mapping[str, LinkSpec] | None = None
) -> list[str]:
    """Children and slaves before their parents and masters (kernel relations, and the
    specs' when given), ties by name."""
    deps = kernel_dependencies(links)
    for name, spec in (specs or {}).items():
        deps.setdefault(name, set()).update(dependencies(spec))
    order = topological(names, deps, lambda n: (n,))
    return order[::-1]


# ---- the diff (pure) ---------------------------------------------------------------------


def desired_master(spec: LinkSpec, links: Mapping[str, KernelLink]) -> tuple[int, str | None]:
    """(master ifindex, problem): the bridge wins over the bond when both are named and
    exist (netd.md §5.1 step 8). A named master that does not exist is a problem
    (retried) and the current master stays."""
    wanted = [n for n in (spec.bridge_slave.master_name, spec.master_name) if n]
    for name in wanted:
        if name in links:
            return links[name].index, None
    if wanted:
        return -1, f"master {wanted[0]} does not exist yet"
    return 0, None


def plan_link(
    spec: LinkSpec, links: Mapping[str, KernelLink], owned: bool
) -> tuple[list[Action], str | None]:
    """The kernel changes that bring one running spec's link to the spec, and a problem to
    retry (or None). After a Create or Delete the caller re-reads the links and plans again."""
    link = links.get(spec.name)
    if spec.logical:
        handler = kind_for(spec.kind)
        if link is None:
            return [Create(spec.name)], None
        if not handler.matches(spec, link) or handler.must_recreate(spec, link):
            if not owned:
                have = link.kind or "without link info"
                return [], (
                    f"link {spec.name} exists ({have}, type {link.type}) but differs from the spec "
                    f"(kind {spec.kind}); not created by netd, so it is left alone"
                )
            return [Delete(spec.name), Create(spec.name)], None
    elif link is None:
        return [], None  # a physical link appears by itself (link events retry)
    actions: list[Action] = []
    up = link.up
    if spec.logical and not handler.in_sync(spec, link):
        if handler.update_disrupts:
            if up:
                actions.append(SetUp(spec.name, False))
                up = False
            actions.extend(
                SetMaster(n, 0) for n, lk in sorted(links.items()) if lk.master_index == link.index
            )
        actions.append(Update(spec.name))
    master, problem = desired_master(spec, links)
    if master >= 0 and master != link.master_index:
        if up:
            actions.append(SetUp(spec.name, False))
            up = False
        actions.append(SetMaster(spec.name, master))
    if spec.up != up:
        actions.append(SetUp(spec.name, spec.up))
    if spec.mtu and spec.mtu != link.mtu:
        actions.append(SetMtu(spec.name, spec.mtu))
    if spec.multicast is not None and spec.multicast != bool(link.flags & LinkFlags.MULTICAST):
        actions.append(SetMulticast(spec.name, spec.multicast))
    return actions, problem


def plan_teardown(spec: LinkSpec, links: Mapping[str, KernelLink], owned: bool) -> list[Action]:
    """A torn-down spec: delete the link only if it is logical, ours and still its kind."""
    link = links.get(spec.name)
    if not spec.logical or not owned or link is None:
        return []
    if not kind_for(spec.kind).matches(spec.model_copy(update={"type": LinkType.NETROM}), link):
        return []  # replaced by something else since: not ours any more
    return [Delete(spec.name)]


def stale_records(records: Mapping[str, Mapping[str, object]], wanted: set[str]) -> list[str]:
    """Recorded links that no running logical spec wants (restart clean-up)."""
    return sorted(name for name in records if name not in wanted)


def recorded_matches(record: Mapping[str, object], link: KernelLink) -> bool:
    """The kernel link is still of the recorded kind (else someone replaced it: not ours)."""
    kind = str(record.get("kind", ""))
    return kind_for(kind).matches(LinkSpec(name=link.name, kind=kind, logical=True), link)


# ---- the controller --------------------------------------------------------------------------


class LinkSpecController(Controller):
    name = NAME

    def __init__(self, applied: Applied) -> None:
        self.applied = applied
        self.retry = KernelRetry(log)
        self._ops: LinkOps | None = None
        self._stale: set[str] | None = None  # recorded links to remove after start; None = not computed
        self.grace = Grace()
        self._resolved = False
        self._reclaimed = False

    def inputs(self) -> Sequence[Input]:
        return (Input(NETWORK, LINK_SPEC_TYPE, InputKind.STRONG),)

    def outputs(self) -> Sequence[Output]:
        return (Output(NETWORK, LINK_REFRESH_TYPE, OutputKind.SHARED),)

    async def run(self, ctx: Context) -> None:
        """Own two sockets: one for requests (used by reconcile, in this task) and the
        link event source, which triggers reconciles."""
        events = RtnlEvents(LINK_GROUPS, ctx.trigger, keep=False)
        async with LinkOps() as ops:
            self._ops = ops
            watcher = asyncio.create_task(events.run(), name=f"{NAME}.events")
            try:
                await super().run(ctx)
            finally:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
                self.grace.close()
                self._ops = None

    def _owned(self, name: str) -> bool:
        return (APPLIED_KIND, name) in self.applied

    async def reconcile(self, ctx: Context) -> None:
        ops = self._ops
        if ops is None:
            raise RuntimeError("LinkSpecController.reconcile outside run()")
        self.grace.start()
        resources = ctx.list(NETWORK, LINK_SPEC_TYPE)
        running: list[LinkSpec] = []
        tearing: dict[str, LinkSpec] = {}
        for r in resources:
            spec = r.spec
            assert isinstance(spec, LinkSpec)
            if r.md.phase is Phase.RUNNING:
                if NAME not in r.md.finalizers:
                    ctx.add_finalizer(NETWORK, LINK_SPEC_TYPE, r.md.id, NAME)
                running.append(spec)
            elif NAME in r.md.finalizers:
                tearing[r.md.id] = spec
        links = await ops.dump()
        if not self._resolved:  # once per start: creations a crash left unconfirmed
            self._resolved = True
            ours, dropped = self.applied.resolve(
                APPLIED_KIND, lambda name, rec: name in links and recorded_matches(rec, links[name])
            )
            if ours or dropped:
                log.info(
                    "%d link creation(s) interrupted by a crash: %d made it (ours)", ours + dropped, ours
                )

        # 1. torn-down specs, children before parents
        for name in deletion_order(tearing, links, tearing):
            spec = tearing[name]
            key = f"link {name} (teardown)"
            try:
                if await self._execute(
                    ctx, ops, plan_teardown(spec, links, self._owned(name)), {name: spec}, links
                ):
                    links = await ops.dump()
            except (KernelError, OSError, NotReady) as e:
                self.retry.failed(key, e)
                continue
            self.retry.succeeded(key)
            self.applied.remove(APPLIED_KIND, name)  # deleted, gone, or replaced: not ours any more
            ctx.remove_finalizer(NETWORK, LINK_SPEC_TYPE, name, NAME)

        # 2. after a start: recorded links no current spec wants
        wanted = {s.name for s in running if s.logical}
        if self._stale is None:
            self._stale = set(stale_records(self.applied.items(APPLIED_KIND), wanted))
        self._stale -= wanted
        kept = 0
        if self._stale:
            links, kept = await self._remove_stale(ops, links)

        # 3. running specs, parents and masters first
        for spec in order_specs(running):
            key = f"link {spec.name}"
            try:
                links, problem = await self._sync(ctx, ops, spec, links)
            except (KernelError, OSError, NotReady) as e:
                self.retry.failed(key, e)
                links = await ops.dump()  # a plan may have stopped half-way
                continue
            if problem is not None:
                self.retry.failed(key, problem)
            else:
                self.retry.succeeded(key)
        records = self.applied.items(APPLIED_KIND)
        reclaiming = self.applied.corrupt is not None and not self._reclaimed
        self._reclaimed = True
        for spec in running:  # a link adopted while its spec's layer changed: the record follows
            rec = records.get(spec.name)
            if rec is not None and (t := retag(rec, spec)) is not None:
                self.applied.add(APPLIED_KIND, spec.name, t)
            elif rec is None and reclaiming and spec.logical:
                # applied.json was unreadable: a logical link a current spec matches is ours
                link = links.get(spec.name)
                if link is not None and kind_for(spec.kind).matches(spec, link):
                    self.applied.add(APPLIED_KIND, spec.name, tag({"kind": spec.kind}, spec))
        keys = {f"link {s.name}" for s in running} | {f"link {n} (teardown)" for n in tearing}
        keys |= {f"link {n} (stale)" for n in self._stale}
        self.retry.forget_except(keys)
        self.retry.schedule(ctx)
        if kept:
            self.grace.wake(ctx, kept, "link")

    async def _remove_stale(
        self, ops: LinkOps, links: dict[str, KernelLink]
    ) -> tuple[dict[str, KernelLink], int]:
        """Remove the stale links (but those of operator-layer specs during the grace);
        returns the current links and how many stale links the grace kept."""
        assert self._stale is not None
        records = self.applied.items(APPLIED_KIND)
        kept = 0
        for name in deletion_order(self._stale, links):
            key = f"link {name} (stale)"
            if self.grace.deferred(records.get(name, {})):
                kept += 1
                continue
            link = links.get(name)
            try:
                if link is not None and recorded_matches(records.get(name, {}), link):
                    kind = str(records.get(name, {}).get("kind", ""))
                    log.info("removing link %s (%s): created by netd, no longer configured", name, kind)
                    await kind_for(kind).delete(ops, link)
                    links = await ops.dump()
            except (KernelError, OSError) as e:
                self.retry.failed(key, e)
                continue
            self.retry.succeeded(key)
            self.applied.remove(APPLIED_KIND, name)
            self._stale.discard(name)
        return links, kept

    async def _sync(
        self, ctx: Context, ops: LinkOps, spec: LinkSpec, links: dict[str, KernelLink]
    ) -> tuple[dict[str, KernelLink], str | None]:
        """Plan and apply until the plan is empty (a create or delete needs a fresh dump
        to plan the rest); returns the current links and the remaining problem."""
        problem: str | None = None
        for _ in range(4):
            actions, problem = plan_link(spec, links, self._owned(spec.name))
            if not actions:
                return links, problem
            await self._execute(ctx, ops, actions, {spec.name: spec}, links)
            links = await ops.dump()
        return links, problem or f"link {spec.name} does not converge"

    async def _execute(
        self,
        ctx: Context,
        ops: LinkOps,
        actions: Sequence[Action],
        specs: Mapping[str, LinkSpec],
        links: Mapping[str, KernelLink],
    ) -> bool:
        """Apply the actions in order; True if any was applied. Creations are announced
        (pending, durably) first and confirmed after; deletions forgotten after."""
        for a in actions:
            link = links.get(a.name)
            if isinstance(a, Create):
                spec = specs[a.name]
                self.applied.pend(APPLIED_KIND, a.name, tag({"kind": spec.kind}, spec))
                try:
                    await kind_for(spec.kind).create(ops, spec, links)
                except (KernelError, NotReady):  # refused (EEXIST from a racing foreign link…) or
                    # not possible yet (a VLAN's parent missing): nothing was created, so not ours
                    self.applied.abandon(APPLIED_KIND, a.name)
                    raise
                except OSError:  # a backend failure (wireguard-go): made or not, the kernel says
                    # (cancelled: stays pending, resolved at the next start)
                    if a.name in await ops.dump():
                        self.applied.confirm(APPLIED_KIND, a.name)
                    else:
                        self.applied.abandon(APPLIED_KIND, a.name)
                    raise
                self.applied.confirm(APPLIED_KIND, a.name)
                log.info("created link %s (%s)", a.name, spec.kind)
                return True  # the rest needs a fresh dump
            if link is None:
                raise NotReady(f"link {a.name} disappeared")
            if isinstance(a, Delete):
                spec = specs[a.name]
                handler = kind_for(spec.kind)
                if not handler.matches(spec.model_copy(update={"type": LinkType.NETROM}), link):
                    handler = kind_for(link.kind)  # a link of another kind: deleted as that kind
                await handler.delete(ops, link)
                log.info("deleted link %s (%s)", a.name, link.kind)
                self.applied.remove(APPLIED_KIND, a.name)
                links = {n: lk for n, lk in links.items() if n != a.name}
            elif isinstance(a, Update):
                spec = specs[a.name]
                handler = kind_for(spec.kind)
                await handler.update(ops, spec, link, links)
                log.info("updated link %s (%s attributes)", a.name, spec.kind)
                if handler.refresh:
                    cur = ctx.get(NETWORK, LINK_REFRESH_TYPE, handler.refresh)
                    old = cur.spec if cur is not None and isinstance(cur.spec, LinkRefresh) else LinkRefresh()
                    ctx.put(NETWORK, LINK_REFRESH_TYPE, handler.refresh, old.bumped())
            elif isinstance(a, SetUp):
                log.info("link %s: %s", a.name, "up" if a.up else "down")
                await ops.set_up(link.index, a.up)
            elif isinstance(a, SetMtu):
                log.info("link %s: mtu %d", a.name, a.mtu)
                await ops.set_mtu(link.index, a.mtu)
            elif isinstance(a, SetMulticast):
                log.info("link %s: multicast %s", a.name, "on" if a.on else "off")
                await ops.set_multicast(link.index, a.on)
            elif isinstance(a, SetMaster):
                log.info("link %s: master index %d", a.name, a.master)
                await ops.set_master(link.index, a.master)
        return bool(actions)
