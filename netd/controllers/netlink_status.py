"""The base of the status controllers: the kernel's links, addresses, routes and rules as
resources (netd.md §5.7), kept up to date from rtnetlink deltas.

Event handling (decisions.md "Runtime"): each netlink controller opens ONE
rtnetlink socket joined to the groups it needs (:class:`RtnlEvents`), dumps
the kernel once at start, and from then on applies every event as a delta to
an in-memory model keyed by the kernel's identity of the object, writing only
the resources the event touched. A full resync (dump and reconcile every
resource) happens only at start and when the socket overflowed (ENOBUFS). No
polling, no rate limiter: a burst of events costs one reconcile that applies
them all.

After an overflow the resync cannot miss what arrives during it (issue 16):
the socket stays subscribed, is first read until empty (which ends the
kernel's congestion state, :meth:`RtnlEvents.settle`), then the kernel is
dumped; events arriving from then on queue up and are applied after the dump
(replaying what the dump already shows is harmless); an overflow during the
dump starts another round, until one ends without overflow.

The one exception the kernel forces: it removes IPv4 routes silently (no
RTM_DELROUTE) when their link goes down or is deleted, and when their
preferred source address is deleted. On those link/address events the route
controller re-reads the IPv4 routes (one family, one dump) instead of guessing
what the kernel flushed.

The models keep several kernel objects per resource ID when IDs collide (the
RouteID has no ``tos``, no out-link for IPv4, and the table byte of tables
above 255): deleting one of them then republishes another instead of losing
the resource.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Hashable, Iterable

from pydantic import BaseModel

from cosi import Context, Controller, Output, OutputKind
from cosi.resource import Phase
from netd.kernel import rtnl_codec as codec
from netd.kernel import rtnl_events as ev
from netd.kernel.netlink import AF_BRIDGE
from netd.kernel.rtnl_batch import DumpInterrupted
from netd.kernel.rtnl_codec import AddressRecord, LinkRecord, RouteRecord, RuleRecord
from netd.resources.enums import LinkFlags
from netd.resources.namespaces import NETWORK

#: A dump interrupted this many times (NLM_F_DUMP_INTR: the kernel changed meanwhile)
#: raises DumpInterrupted (netd.kernel.rtnl_batch); the resync waits this long and retries.
DUMP_ATTEMPTS = 5
DUMP_RETRY_DELAY = 0.05


def link_record(message: bytes) -> LinkRecord:
    """The record of one RTM_NEWLINK/RTM_DELLINK message, by the lean codec."""
    body = codec.decode(message)[0].body
    assert isinstance(body, LinkRecord)
    return body


def address_record(message: bytes) -> AddressRecord:
    """The record of one RTM_NEWADDR/RTM_DELADDR message, by the lean codec."""
    body = codec.decode(message)[0].body
    assert isinstance(body, AddressRecord)
    return body


def route_record(message: bytes) -> tuple[int, RouteRecord]:
    """(netlink flags, record) of one RTM_NEWROUTE/RTM_DELROUTE message, by the lean codec."""
    msg = codec.decode(message)[0]
    assert isinstance(msg.body, RouteRecord)
    return msg.flags, msg.body


def rule_record(message: bytes) -> RuleRecord:
    """The record of one RTM_NEWRULE/RTM_DELRULE message, by the lean codec."""
    body = codec.decode(message)[0].body
    assert isinstance(body, RuleRecord)
    return body


# ---- the delta model --------------------------------------------------------------------


class StatusModel:
    """Kernel objects by kernel key, grouped by resource ID.

    Pure bookkeeping (no I/O): ``add``/``remove`` return the IDs whose
    published resource may have changed; :meth:`desired` says what each of
    them should now be (None = destroy). The first object added under an ID
    is the one published while several share it.
    """

    def __init__(self) -> None:
        self._id_of: dict[Hashable, str] = {}
        self._groups: dict[str, dict[Hashable, BaseModel]] = {}

    def __len__(self) -> int:
        return len(self._id_of)

    def keys(self) -> list[Hashable]:
        return list(self._id_of)

    def ids(self) -> set[str]:
        return set(self._groups)

    def get(self, key: Hashable) -> BaseModel | None:
        id_ = self._id_of.get(key)
        return None if id_ is None else self._groups[id_].get(key)

    def add(self, key: Hashable, id_: str, spec: BaseModel) -> set[str]:
        touched = self.remove(key) if self._id_of.get(key) not in (None, id_) else set()
        self._id_of[key] = id_
        self._groups.setdefault(id_, {})[key] = spec
        touched.add(id_)
        return touched

    def remove(self, key: Hashable) -> set[str]:
        id_ = self._id_of.pop(key, None)
        if id_ is None:
            return set()
        group = self._groups[id_]
        group.pop(key, None)
        if not group:
            del self._groups[id_]
        return {id_}

    def clear(self, keys: Iterable[Hashable] | None = None) -> set[str]:
        """Forget the given keys (default: all); the IDs they had."""
        touched: set[str] = set()
        if keys is None:
            touched.update(self._groups)
            self._id_of.clear()
            self._groups.clear()
            return touched
        for k in list(keys):
            touched |= self.remove(k)
        return touched

    def desired(self, id_: str) -> BaseModel | None:
        group = self._groups.get(id_)
        return next(iter(group.values())) if group else None


def publish(ctx: Context, type_: str, model: StatusModel, ids: Iterable[str]) -> None:
    """Write the model's view of ``ids`` to the state: put, or destroy when gone.

    Resources of this type owned by another controller (AddressStatus is a
    shared output: the platform's ``external/*``) are never touched.
    """
    for id_ in ids:
        spec = model.desired(id_)
        cur = ctx.state.get(NETWORK, type_, id_)
        if cur is not None and cur.md.owner != ctx.name:
            continue
        if spec is None:
            if cur is not None:
                if cur.md.phase is Phase.RUNNING and not ctx.teardown(NETWORK, type_, id_):
                    continue
                if not cur.md.finalizers:
                    ctx.destroy(NETWORK, type_, id_)
            continue
        if cur is not None and cur.md.phase is Phase.TEARING_DOWN:
            if cur.md.finalizers:
                continue
            ctx.destroy(NETWORK, type_, id_)
        ctx.put(NETWORK, type_, id_, spec)


def publish_all(ctx: Context, type_: str, model: StatusModel) -> None:
    """After a resync: every ID of the model, and every owned resource the model lacks."""
    ids = model.ids() | {r.md.id for r in ctx.owned(NETWORK, type_)}
    publish(ctx, type_, model, sorted(ids))


# ---- the common netlink controller --------------------------------------------------------


class NetlinkStatusController(Controller):
    """A status controller fed by one rtnetlink event socket.

    ``run`` opens the socket before the first dump (so nothing between dump and
    subscription is lost) and keeps the ordinary wait/reconcile loop, so the
    runtime sees it idle between event bursts (``Runtime.settle``).
    """

    groups = 0
    output_type = ""
    output_kind = OutputKind.EXCLUSIVE

    def __init__(self, rcvbuf: int | None = None) -> None:
        self.rcvbuf = rcvbuf
        self.model = StatusModel()
        self.links: dict[int, str] = {}
        self.link_up: dict[int, bool] = {}
        self.resyncs = 0
        self._events: ev.RtnlEvents | None = None
        self._resync_families: set[int] = set()

    def outputs(self) -> list[Output]:
        return [Output(NETWORK, self.output_type, self.output_kind)]

    @property
    def overflows(self) -> int:
        """How often the event socket overflowed (ENOBUFS) since ``run`` started."""
        return self._events.overflows if self._events is not None else 0

    async def run(self, ctx: Context) -> None:
        self._events = ev.RtnlEvents(self.groups, ctx.trigger, self.rcvbuf)
        self._events.open()
        self._resync_families = {socket.AF_UNSPEC}
        try:
            await super().run(ctx)
        finally:
            self._events.close()
            self._events = None

    async def reconcile(self, ctx: Context) -> None:
        assert self._events is not None
        overflowed, datagrams = self._events.take()
        if overflowed:
            ctx.log.info("netlink socket overflowed (ENOBUFS): full resync")
            self._resync_families.add(socket.AF_UNSPEC)
        if socket.AF_UNSPEC in self._resync_families:
            self._resync_families.clear()
            rounds = 0
            while True:
                rounds += 1
                # The queued events predate the dump, which supersedes them; reading the
                # socket empty ends the kernel's silent dropping before the dump starts.
                await self._events.settle()
                try:
                    await self.resync(ctx, socket.AF_UNSPEC)
                except DumpInterrupted:  # changes kept interrupting the dump: a flood goes on
                    ctx.log.info("dump interrupted by changes %d times: again", DUMP_ATTEMPTS)
                    await asyncio.sleep(DUMP_RETRY_DELAY)
                    continue
                if not self._events.overflowed:
                    break
                ctx.log.info("netlink socket overflowed during the resync: again (round %d)", rounds + 1)
            # What arrived during the dump is queued: the trigger already called applies it.
            return
        touched: set[str] = set()
        for datagram in datagrams:
            for mtype, message in ev.split(datagram):
                touched |= self.apply(mtype, message)
        publish(ctx, self.output_type, self.model, sorted(touched))
        if self._resync_families:
            # A partial resync (one family) after the events, so it has the last word.
            families, self._resync_families = self._resync_families, set()
            await self.resync(ctx, families.pop() if len(families) == 1 else socket.AF_UNSPEC)

    async def resync(self, ctx: Context, family: int) -> None:
        raise NotImplementedError

    def apply(self, mtype: int, message: bytes) -> set[str]:
        """Apply one event to the model; the IDs it touched."""
        raise NotImplementedError

    # Link-name tracking shared by the address and route controllers.

    def track_link(self, rec: LinkRecord, deleted: bool) -> tuple[bool, bool]:
        """Update index → name: (the name changed, the link went down or away).

        A link first seen now counts as a name change: an address or route event
        may have come before its link's (the link appeared between our link dump
        and the address/route dump), and was published without the name.
        """
        index = rec.index
        was_up = self.link_up.get(index, False)
        if deleted:
            self.links.pop(index, None)
            self.link_up.pop(index, None)
            return False, was_up
        old = self.links.get(index)
        name = rec.ifname or ""
        up = bool(rec.flags & LinkFlags.UP)
        self.links[index] = name
        self.link_up[index] = up
        return old != name, was_up and not up

    def load_links(self, dumped: list[tuple[int, bytes]]) -> None:
        self.links.clear()
        self.link_up.clear()
        for _mtype, message in dumped:
            rec = link_record(message)
            if rec.family != AF_BRIDGE:
                self.track_link(rec, deleted=False)


