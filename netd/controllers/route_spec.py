"""RouteSpecController: merged RouteSpecs → kernel routes (netd.md §5.3).

Each reconcile lists links and every route (all tables, both families) and
syncs every spec; link and route events (own netlink socket) trigger it.

A kernel route has the spec's *key* when family, destination (prefix length
and address), gateway, table and priority are equal — and, for IPv6, the out
link too (IPv6 RouteIDs contain it and the kernel keeps one route per device).
Among those, a route *matches* the spec when scope (IPv4 only: the kernel
reports every IPv6 route as global), flags under the compare mask, protocol,
out link (when the spec names one), source (when the spec has one) and MTU
are equal. A matching route is adopted (nothing written). Otherwise the
routes with the key that are ours — recorded in ``Applied`` as created by us,
or carrying the spec's protocol — are deleted and the spec's route is added
(create+exclusive). A foreign route (another protocol, never recorded) is
never deleted; if it blocks the add, the EEXIST is retried with back-off.

Specs without a gateway (link-scope, e.g. the ``/32`` route to an off-subnet
gateway that the cmdline and DHCP sources add) are applied before gateway
routes, so a gateway reachable only through such a route works in one pass.
Specs going away are handled first (gateway routes before the link routes
they may need), then — on the first reconcile after a start — the recorded
routes no current spec wants (a changed config), then the running specs.

Normalisations the reference lacks keep steady state write-free: table
``unspec`` means ``main``; an IPv6 spec with priority 0 expects the kernel's
default metric 1024 and one with protocol ``unspec`` the kernel's ``boot``.
Should the kernel still store a route differently from its spec (e.g. a flag
it does not keep), the route it made is accepted (a warning, once) rather than
deleted and added on every pass — which, with route events triggering the
controller, would never stop.

Cost (a machine may carry 10,000 routes): each reconcile dumps the routes
once and indexes them by key; a spec finds its candidates in that index, so a
pass is O(specs + kernel routes) and parses no address (the desired route of
a spec is computed once and cached while the spec and its link index stay the
same). All deletes and adds of a pass go to the kernel as ONE batch
(:class:`netd.kernel.rtnl_batch.RtnlBatch`), in the order above — the kernel
handles them in that order, so a gateway route after the link-scope route it
needs works in the same batch; each request's errno comes back to its spec
(a KernelRetry for that spec only). The Applied records of a pass are written
to disk once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cosi import Context, Controller, Input, InputKind, Phase
from netd.kernel import rtnl
from netd.kernel.applied import Applied
from netd.kernel.rtnl import ROUTE_GROUPS, KernelError, NotFound, Rtnl, RtnlWatch, describe_route
from netd.kernel.rtnl_batch import Request
from netd.kernel.rtnl_codec import RTM_DELROUTE, RouteRecord, new_route
from netd.netip import Addr, format_addr
from netd.resources.enums import ROUTE_FLAGS_COMPARE_MASK, RouteProtocol, RouteType, RoutingTable
from netd.resources.namespaces import NETWORK
from netd.resources.route import ROUTE_SPEC_TYPE, RouteSpec

from .retry import KernelRetry

NAME = "network.RouteSpecController"
APPLIED_KIND = "route"

#: The kernel's metric for an IPv6 route added without one (IP6_RT_PRIO_USER).
IPV6_DEFAULT_METRIC = 1024
_MASK = int(ROUTE_FLAGS_COMPARE_MASK)

#: (family, table, priority, gateway, destination network address, prefix length), the
#: addresses as integers (an ``ipaddress`` object hashes through ``hex()``: slow); a
#: default route has destination None and length 0.
RouteKey = tuple[int, int, int, int | bytes | None, int | bytes | None, int]


def _int(a: Addr | bytes | None) -> int | bytes | None:
    return a if a is None or isinstance(a, bytes) else int(a)


def route_key(r: RouteRecord) -> RouteKey:
    """The key of netd.md §5.3 (family, destination, gateway, table, priority), from the
    record's fields as the kernel reports them: no parsing."""
    plen = r.dst_len
    table = r.table_id if r.table_id is not None else r.table
    return (r.family, table, r.priority or 0, _int(r.gateway), _int(r.dst) if plen else None, plen)


def route_ident(r: RouteRecord) -> tuple[Any, ...]:
    """Everything the controller compares of a route (to tell one route from another)."""
    return (route_key(r), r.oif or 0, r.protocol, r.scope, r.type, r.flags, r.prefsrc, r.mtu or 0)


def index_routes(
    routes: Iterable[RouteRecord], keys: dict[int, tuple[RouteRecord, RouteKey]] | None = None
) -> dict[RouteKey, list[RouteRecord]]:
    """Kernel routes by key, built once per reconcile.

    ``keys`` (id → (record, key)) remembers the keys of the records seen last time
    (an unchanged route is the same record object, see :meth:`Rtnl.routes`); it is
    updated to hold exactly the records of ``routes``."""
    index: dict[RouteKey, list[RouteRecord]] = {}
    old = dict(keys) if keys else {}
    if keys is not None:
        keys.clear()
    for r in routes:
        known = old.get(id(r))
        key = known[1] if known is not None and known[0] is r else route_key(r)
        if keys is not None:
            keys[id(r)] = (r, key)
        bucket = index.get(key)
        if bucket is None:
            index[key] = [r]
        else:
            bucket.append(r)
    return index


def desired_route(spec: RouteSpec, oif: int) -> RouteRecord:
    """The kernel route a spec asks for (``oif`` = index of its out link, 0 = none), as
    the kernel will report it: destination masked (``/0`` = default = none), table
    ``unspec`` = ``main``, IPv6 metric 0 = 1024, IPv6 protocol ``unspec`` = ``boot``."""
    family = int(spec.family)
    v6 = family == socket.AF_INET6
    dst = spec.dst
    if dst is not None and dst.network.prefixlen == 0:
        dst = None
    priority = spec.priority
    if priority == 0 and v6:
        priority = IPV6_DEFAULT_METRIC
    return new_route(
        family,
        dst,
        gateway=spec.gateway,
        table=int(spec.table) or int(RoutingTable.MAIN),
        priority=priority,
        oif=oif,
        src=spec.src,
        scope=int(spec.scope),
        type=int(spec.type) or int(RouteType.UNICAST),
        flags=int(spec.flags),
        protocol=int(spec.protocol) or (int(RouteProtocol.BOOT) if v6 else 0),
        mtu=spec.mtu,
    )


def same_key(want: RouteRecord, k: RouteRecord) -> bool:
    """Family, destination, gateway, table, priority (netd.md §5.3); plus the out link
    for IPv6 when the spec names one."""
    if route_key(want) != route_key(k):
        return False
    return not (want.family == socket.AF_INET6 and want.oif and want.oif != k.oif)


def route_matches(want: RouteRecord, k: RouteRecord) -> bool:
    """A kernel route with the spec's key that the spec adopts as it is."""
    if want.family == socket.AF_INET and want.scope != k.scope:
        return False
    if (want.flags & _MASK) != (k.flags & _MASK):
        return False
    if want.protocol != k.protocol:
        return False
    if want.oif and want.oif != k.oif:
        return False
    if want.prefsrc is not None and want.prefsrc != k.prefsrc:
        return False
    return (want.mtu or 0) == (k.mtu or 0)


@dataclass(frozen=True)
class RoutePlan:
    delete: tuple[RouteRecord, ...] = ()
    add: RouteRecord | None = None

    @property
    def empty(self) -> bool:
        return not self.delete and self.add is None


def plan_route(
    want: RouteRecord, kernel: Sequence[RouteRecord], ours: Callable[[RouteRecord], bool]
) -> RoutePlan:
    """Adopt a matching route, else delete our non-matching routes with the key and add.

    ``kernel``: the kernel routes (the controller passes only the index bucket of
    the spec's key); ``ours(k)``: whether we created ``k`` (the Applied record); a
    route with the spec's protocol counts as ours as well. Foreign routes are left alone.
    """
    candidates = [k for k in kernel if same_key(want, k)]
    if any(route_matches(want, k) for k in candidates):
        return RoutePlan()
    doomed = tuple(k for k in candidates if ours(k) or k.protocol == want.protocol)
    return RoutePlan(delete=doomed, add=want)


def teardown_routes(
    want: RouteRecord, kernel: Sequence[RouteRecord], ours: Callable[[RouteRecord], bool]
) -> list[RouteRecord]:
    """The routes a tearing-down spec removes: the ones with its key that we created.
    A route that was there before and merely matched the spec was adopted: it stays."""
    return [k for k in kernel if same_key(want, k) and ours(k)]


def apply_order(spec: RouteSpec, id_: str) -> tuple[int, str]:
    """Routes without a gateway (link scope) first, then gateway routes; by ID within."""
    return (0 if spec.gateway is None else 1, id_)


# ---- Applied records ---------------------------------------------------------------------


def route_record(r: RouteRecord, link: str) -> dict[str, Any]:
    return {
        "family": r.family,
        "dst": f"{r.dst}/{r.dst_len}" if r.dst is not None and r.dst_len else "",
        "gateway": format_addr(r.gateway) if r.gateway is not None else "",
        "table": r.full_table,
        "priority": r.priority or 0,
        "link": link,
        "protocol": r.protocol,
        "type": r.type,
    }


@dataclass(frozen=True)
class ParsedRecord:
    """An Applied route record, parsed once: the key, the out link name, protocol, type."""

    key: RouteKey
    link: str
    protocol: int
    type: int


def parse_record(data: dict[str, Any]) -> ParsedRecord | None:
    try:
        dst = ipaddress.ip_network(data["dst"], strict=False) if data.get("dst") else None
        gw = ipaddress.ip_address(data["gateway"]) if data.get("gateway") else None
        family, table, priority = int(data["family"]), int(data["table"]), int(data["priority"])
        protocol, type_ = int(data["protocol"]), int(data["type"])
    except (KeyError, TypeError, ValueError):
        return None
    plen = dst.prefixlen if dst is not None else 0
    net = dst.network_address if dst is not None and plen else None
    key = (family, table, priority, _int(gw), _int(net), plen)
    return ParsedRecord(key, str(data.get("link", "")), protocol, type_)


def parsed_matches(p: ParsedRecord, k: RouteRecord, links: dict[str, int]) -> bool:
    if (p.protocol, p.type) != (k.protocol, k.type) or p.key != route_key(k):
        return False
    if p.link:
        return links.get(p.link) == (k.oif or 0)
    return True


def record_matches(data: dict[str, Any], k: RouteRecord, links: dict[str, int]) -> bool:
    """Whether kernel route ``k`` is the one a record describes (key, out link, protocol, type)."""
    p = parse_record(data)
    return p is not None and parsed_matches(p, k, links)


def _never(k: RouteRecord) -> bool:
    return False


#: A pass with more writes than this logs one summary line instead of one per route.
LOG_EACH_MAX = 50


@dataclass
class _Spec:
    id: str
    spec: RouteSpec
    tearing_down: bool


@dataclass
class _Owner:
    """What one spec (or one stale record) put in the batch, and how it went."""

    key: str
    spec: _Spec | None = None
    want: RouteRecord | None = None
    before: list[RouteRecord] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    adds: bool = False


class RouteSpecController(Controller):
    name = NAME

    def __init__(self, applied: Applied) -> None:
        self.applied = applied
        self.rtnl: Rtnl | None = None
        self._watch: RtnlWatch | None = None
        self.retry: KernelRetry | None = None
        self._stale_done = False
        self._waiting: set[str] = set()
        # spec ID → (spec, ident of the kernel route made of it that does not match it)
        self._accepted: dict[str, tuple[RouteSpec, tuple[Any, ...]]] = {}
        # spec ID → (spec, oif, desired route, its key): a spec is parsed once, not per pass
        self._wants: dict[str, tuple[RouteSpec, int, RouteRecord, RouteKey]] = {}
        # id(kernel route record) → (record, key): the keys of unchanged routes, kept
        self._keys: dict[int, tuple[RouteRecord, RouteKey]] = {}
        self._verbose = True  # log each write (few of them in this pass) or a summary
        self.passes = 0

    def _note(self, ctx: Context, msg: str, *args: Any) -> None:
        """One line per write when a pass writes little; at debug level in a big pass
        (10,000 lines cost more than the writes), which logs a summary instead."""
        if self._verbose:
            ctx.log.info(msg, *args)
        else:
            ctx.log.debug(msg, *args)

    def inputs(self) -> Sequence[Input]:
        return [Input(NETWORK, ROUTE_SPEC_TYPE, InputKind.STRONG)]

    async def run(self, ctx: Context) -> None:
        self._watch = RtnlWatch(ROUTE_GROUPS, ctx.trigger)
        watcher = asyncio.create_task(self._watch.run(), name=f"{self.name}.watch")
        try:
            await super().run(ctx)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            self._watch = None
            if self.rtnl is not None:
                self.rtnl.close()
                self.rtnl = None

    def _want(self, s: _Spec, oif: int) -> tuple[RouteRecord, RouteKey]:
        cached = self._wants.get(s.id)
        if cached is not None and cached[1] == oif and (cached[0] is s.spec or cached[0] == s.spec):
            return cached[2], cached[3]
        want = desired_route(s.spec, oif)
        key = route_key(want)
        self._wants[s.id] = (s.spec, oif, want, key)
        return want, key

    async def reconcile(self, ctx: Context) -> None:
        if self.retry is None:
            self.retry = KernelRetry(ctx.log)
        if self.rtnl is None:
            self.rtnl = Rtnl()
        t0 = time.monotonic()
        self.passes += 1
        retry, kernel = self.retry, self.rtnl
        specs: list[_Spec] = []
        for r in ctx.list(NETWORK, ROUTE_SPEC_TYPE):
            assert isinstance(r.spec, RouteSpec)
            tearing = r.md.phase is Phase.TEARING_DOWN
            if not tearing and self.name not in r.md.finalizers:
                ctx.add_finalizer(NETWORK, ROUTE_SPEC_TYPE, r.md.id, self.name)
            specs.append(_Spec(r.md.id, r.spec, tearing))
        specs.sort(key=lambda s: apply_order(s.spec, s.id))
        ids = {s.id for s in specs}
        for gone in [i for i in self._wants if i not in ids]:
            del self._wants[gone]
        if self._watch is not None:
            self._watch.drain()  # what it has queued, the dumps below reflect
        links = {link.name: link.index for link in await kernel.links()}
        routes = await kernel.routes()
        index = index_routes(routes, self._keys)
        recorded = self.applied.items(APPLIED_KIND)
        requests: list[Request] = []
        owners: list[_Owner] = []
        doomed: set[int] = set()  # id() of the kernel routes this batch deletes

        def ours(key: str) -> Callable[[RouteRecord], bool]:
            """Whether we created ``k`` (by the record of spec ``key``); the record is
            parsed on the first question only (most specs never ask: they match)."""
            data = recorded.get(key)
            if data is None:
                return _never
            parsed: list[ParsedRecord | None] = []

            def check(k: RouteRecord) -> bool:
                if not parsed:
                    parsed.append(parse_record(data))
                return parsed[0] is not None and parsed_matches(parsed[0], k, links)

            return check

        def delete(o: _Owner, k: RouteRecord) -> None:
            if id(k) not in doomed:
                doomed.add(id(k))
                o.requests.append(len(requests))
                requests.append(rtnl.delete_route(k))

        released: list[_Spec] = []
        # 1. Specs going away (gateway routes before the link routes they may need).
        for s in reversed(specs):
            if not s.tearing_down:
                continue
            oif = links.get(s.spec.out_link_name, 0) if s.spec.out_link_name else 0
            if s.spec.out_link_name and not oif:  # the link and its routes are gone
                released.append(s)
                continue
            want, key = self._want(s, oif)
            o = _Owner(s.id, spec=s)
            for k in teardown_routes(want, index.get(key, ()), ours(s.id)):
                delete(o, k)
            owners.append(o)

        # 2. Once per start: routes recorded by an earlier run that no spec wants.
        stale: list[_Owner] = []
        if not self._stale_done:
            for rec_id, data in sorted(recorded.items()):
                if rec_id in ids:
                    continue
                o = _Owner(f"stale {rec_id}")
                p = parse_record(data)
                if p is not None:
                    for k in index.get(p.key, ()):
                        if parsed_matches(p, k, links):
                            delete(o, k)
                stale.append(o)

        # 3. Running specs, link-scope routes first.
        running: list[_Owner] = []
        for s in specs:
            if s.tearing_down:
                continue
            oif = 0
            if s.spec.out_link_name:
                oif = links.get(s.spec.out_link_name, 0)
                if not oif:
                    if s.id not in self._waiting:
                        self._waiting.add(s.id)
                        ctx.log.info("%s: waiting for link %s", s.id, s.spec.out_link_name)
                    retry.succeeded(s.id)
                    continue
            self._waiting.discard(s.id)
            want, key = self._want(s, oif)
            bucket = index.get(key, ())
            if doomed and bucket:
                bucket = [k for k in bucket if id(k) not in doomed]
            if any(route_matches(want, k) for k in bucket):  # (the bucket has the key)
                retry.succeeded(s.id)  # the common case, in sync: adopt
                continue
            accepted = self._accepted.get(s.id)
            if (
                accepted is not None
                and accepted[0] == s.spec
                and any(route_ident(k) == accepted[1] for k in bucket)
            ):
                retry.succeeded(s.id)
                continue
            plan = plan_route(want, bucket, ours(s.id))
            if plan.empty:
                retry.succeeded(s.id)
                continue
            o = _Owner(s.id, spec=s, want=want, adds=plan.add is not None)
            for k in plan.delete:
                delete(o, k)
            o.before = [k for k in bucket if id(k) not in doomed]
            if plan.add is not None:
                o.requests.append(len(requests))
                requests.append(rtnl.add_route(plan.add))
            running.append(o)

        self._verbose = len(requests) <= LOG_EACH_MAX
        errors = await kernel.write(requests) if requests else []
        after: dict[RouteKey, list[RouteRecord]] | None = None
        if any(o.adds and not self._failed(o, errors) for o in running):
            # What the kernel made of the adds (it may store a route differently).
            after = index_routes(await kernel.routes(), self._keys)

        with self.applied.batch():
            for s in released:
                self._release(ctx, retry, s)
            for o in owners:
                err = self._failed(o, errors)
                if err is not None:
                    retry.failed(o.key, err)
                    continue
                assert o.spec is not None
                for i in o.requests:
                    self._note(ctx, "%s: route %s removed", o.key, describe_route(requests[i].record))
                self._release(ctx, retry, o.spec)
            ok = True
            for o in stale:
                err = self._failed(o, errors)
                if err is not None:
                    retry.failed(o.key, err)
                    ok = False
                    continue
                if o.requests:
                    self._note(ctx, "%s: route of an earlier configuration removed", o.key[len("stale ") :])
                retry.succeeded(o.key)
                self.applied.remove(APPLIED_KIND, o.key[len("stale ") :])
            if not self._stale_done:
                self._stale_done = ok
            for o in running:
                self._applied(ctx, retry, o, errors, requests, after)

        retry.forget_except(ids | {f"stale {k}" for k in self.applied.items(APPLIED_KIND)})
        retry.schedule(ctx)
        failed = sum(1 for e in errors if e is not None and not isinstance(e, NotFound))
        if not self._verbose:
            adds = sum(1 for r in requests if r.type != RTM_DELROUTE)
            ctx.log.info(
                "%d routes added, %d removed, %d requests failed (one batch)",
                adds,
                len(requests) - adds,
                failed,
            )
        ctx.log.debug(
            "pass %d: %d specs, %d kernel routes, %d writes (%d failed), %.0f ms",
            self.passes,
            len(specs),
            len(routes),
            len(requests),
            failed,
            (time.monotonic() - t0) * 1000,
        )

    @staticmethod
    def _failed(o: _Owner, errors: Sequence[KernelError | None]) -> KernelError | None:
        """The first error of the owner's requests; a delete of a route already gone is fine."""
        for i in o.requests:
            err = errors[i]
            if err is not None and not isinstance(err, NotFound):
                return err
        return None

    def _release(self, ctx: Context, retry: KernelRetry, s: _Spec) -> None:
        retry.succeeded(s.id)
        self.applied.remove(APPLIED_KIND, s.id)
        self._waiting.discard(s.id)
        self._accepted.pop(s.id, None)
        self._wants.pop(s.id, None)
        ctx.remove_finalizer(NETWORK, ROUTE_SPEC_TYPE, s.id, self.name)

    def _applied(
        self,
        ctx: Context,
        retry: KernelRetry,
        o: _Owner,
        errors: Sequence[KernelError | None],
        requests: Sequence[Request],
        after: dict[RouteKey, list[RouteRecord]] | None,
    ) -> None:
        assert o.spec is not None and o.want is not None
        s, want = o.spec, o.want
        err = self._failed(o, errors)
        for i in o.requests:
            if requests[i].type == RTM_DELROUTE and (err is None or errors[i] is None):
                self._note(ctx, "%s: removed differing route %s", s.id, describe_route(requests[i].record))
        if err is not None:
            retry.failed(s.id, err)
            return
        retry.succeeded(s.id)
        self._accepted.pop(s.id, None)
        created = want
        if after is not None:
            bucket = after.get(route_key(want), [])
            if not any(same_key(want, k) and route_matches(want, k) for k in bucket):
                # The kernel stores the route differently from the spec (a flag it does not
                # keep, a protocol it rewrites): accept what it made instead of rewriting it
                # forever.
                seen = {route_ident(k) for k in o.before}
                new = [k for k in bucket if same_key(want, k) and route_ident(k) not in seen]
                if new:
                    created = new[0]
                    self._accepted[s.id] = (s.spec, route_ident(created))
                    ctx.log.warning(
                        "%s: the kernel stores %s differently from the spec; accepted", s.id, created
                    )
        self.applied.add(APPLIED_KIND, s.id, route_record(created, s.spec.out_link_name))
        self._note(ctx, "%s: route %s added", s.id, describe_route(want))
