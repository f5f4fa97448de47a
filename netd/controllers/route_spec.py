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

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cosi import Context
from netd.kernel import rtnl
from netd.kernel.applied import Applied
from netd.kernel.netlink import ROUTE_GROUPS
from netd.kernel.rtnl import KernelError, Rtnl, describe_route
from netd.kernel.rtnl_codec import RouteRecord, new_route
from netd.netip import Addr, format_addr
from netd.resources.enums import ROUTE_FLAGS_COMPARE_MASK, RouteProtocol, RouteType, RoutingTable
from netd.resources.route import ROUTE_SPEC_TYPE, RouteSpec

from .kernel_spec import Batch, KernelSpecController, Owner, SpecItem

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


@dataclass
class RouteView:
    """One pass's reading of the kernel: link indexes by name, routes by key."""

    links: dict[str, int]
    index: dict[RouteKey, list[RouteRecord]]


@dataclass
class _Planned:
    want: RouteRecord
    before: list[RouteRecord] = field(default_factory=list)
    adds: bool = False


class RouteSpecController(KernelSpecController[RouteSpec, RouteView]):
    name = NAME
    spec_type = ROUTE_SPEC_TYPE
    spec_model = RouteSpec
    applied_kind = APPLIED_KIND
    groups = ROUTE_GROUPS
    what = "route"

    def __init__(self, applied: Applied) -> None:
        super().__init__(applied)
        # spec ID → (spec, ident of the kernel route made of it that does not match it)
        self._accepted: dict[str, tuple[RouteSpec, tuple[Any, ...]]] = {}
        # spec ID → (spec, oif, desired route, its key): a spec is parsed once, not per pass
        self._wants: dict[str, tuple[RouteSpec, int, RouteRecord, RouteKey]] = {}
        # id(kernel route record) → (record, key): the keys of unchanged routes, kept
        self._keys: dict[int, tuple[RouteRecord, RouteKey]] = {}

    def _want(self, s: SpecItem[RouteSpec], oif: int) -> tuple[RouteRecord, RouteKey]:
        cached = self._wants.get(s.id)
        if cached is not None and cached[1] == oif and (cached[0] is s.spec or cached[0] == s.spec):
            return cached[2], cached[3]
        want = desired_route(s.spec, oif)
        key = route_key(want)
        self._wants[s.id] = (s.spec, oif, want, key)
        return want, key

    def order(self, items: list[SpecItem[RouteSpec]]) -> list[SpecItem[RouteSpec]]:
        items.sort(key=lambda s: apply_order(s.spec, s.id))
        ids = {s.id for s in items}
        for gone in [i for i in self._wants if i not in ids]:
            del self._wants[gone]
        return items

    async def observe(self, kernel: Rtnl) -> RouteView:
        links = {link.name: link.index for link in await kernel.links()}
        return RouteView(links, index_routes(await kernel.routes(), self._keys))

    def _ours(self, data: dict[str, Any] | None, links: dict[str, int]) -> Callable[[RouteRecord], bool]:
        """Whether we created ``k`` (by a spec's record); the record is parsed on the first
        question only (most specs never ask: they match)."""
        if data is None:
            return _never
        parsed: list[ParsedRecord | None] = []

        def check(k: RouteRecord) -> bool:
            if not parsed:
                parsed.append(parse_record(data))
            return parsed[0] is not None and parsed_matches(parsed[0], k, links)

        return check

    def teardown(
        self, item: SpecItem[RouteSpec], obs: RouteView, batch: Batch, owner: Owner[RouteSpec], recorded: bool
    ) -> None:
        spec = item.spec
        oif = obs.links.get(spec.out_link_name, 0) if spec.out_link_name else 0
        if spec.out_link_name and not oif:  # the link and its routes are gone
            return
        want, key = self._want(item, oif)
        data = self.applied.items(APPLIED_KIND).get(item.id) if recorded else None
        for k in teardown_routes(want, obs.index.get(key, ()), self._ours(data, obs.links)):
            batch.delete(owner, id(k), rtnl.delete_route(k))

    def stale(
        self, rec_id: str, data: dict[str, Any], obs: RouteView, batch: Batch, owner: Owner[RouteSpec]
    ) -> None:
        p = parse_record(data)
        if p is not None:
            for k in obs.index.get(p.key, ()):
                if parsed_matches(p, k, obs.links):
                    batch.delete(owner, id(k), rtnl.delete_route(k))

    def plan(
        self,
        ctx: Context,
        item: SpecItem[RouteSpec],
        obs: RouteView,
        batch: Batch,
        recorded: dict[str, Any] | None,
    ) -> Owner[RouteSpec] | str | None:
        spec = item.spec
        oif = 0
        if spec.out_link_name:
            oif = obs.links.get(spec.out_link_name, 0)
            if not oif:
                self.waiting_for_link(ctx, item.id, spec.out_link_name)
                return None
        self._waiting.discard(item.id)
        want, key = self._want(item, oif)
        bucket = obs.index.get(key, ())
        if batch.doomed and bucket:
            bucket = [k for k in bucket if id(k) not in batch.doomed]
        if any(route_matches(want, k) for k in bucket):  # (the bucket has the key)
            return None  # the common case, in sync: adopt
        accepted = self._accepted.get(item.id)
        if (
            accepted is not None
            and accepted[0] == spec
            and any(route_ident(k) == accepted[1] for k in bucket)
        ):
            return None
        plan = plan_route(want, bucket, self._ours(recorded, obs.links))
        if plan.empty:
            return None
        o: Owner[RouteSpec] = Owner(item.id, item=item, data=_Planned(want, adds=plan.add is not None))
        for k in plan.delete:
            batch.delete(o, id(k), rtnl.delete_route(k))
        o.data.before = [k for k in bucket if id(k) not in batch.doomed]
        if plan.add is not None:
            batch.add(o, rtnl.add_route(plan.add))
        return o

    def intent(self, owner: Owner[RouteSpec]) -> dict[str, Any] | None:
        assert owner.item is not None
        return route_record(owner.data.want, owner.item.spec.out_link_name)

    def reclaim(self, item: SpecItem[RouteSpec], obs: RouteView) -> dict[str, Any] | None:
        spec = item.spec
        oif = obs.links.get(spec.out_link_name, 0) if spec.out_link_name else 0
        if spec.out_link_name and not oif:
            return None
        want, key = self._want(item, oif)
        if not any(route_matches(want, k) for k in obs.index.get(key, ())):
            return None
        return route_record(want, spec.out_link_name)

    def exists(self, rec_id: str, data: dict[str, Any], obs: RouteView) -> bool:
        p = parse_record(data)
        return p is not None and any(parsed_matches(p, k, obs.links) for k in obs.index.get(p.key, ()))

    async def observe_after(self, kernel: Rtnl, written: list[Owner[RouteSpec]]) -> Any:
        if not any(o.data.adds for o in written):
            return None
        # What the kernel made of the adds (it may store a route differently).
        return index_routes(await kernel.routes(), self._keys)

    def commit(
        self, ctx: Context, owner: Owner[RouteSpec], after: Any, errors: Sequence[KernelError | None]
    ) -> dict[str, Any] | None:
        assert owner.item is not None
        s, planned = owner.item, owner.data
        want = planned.want
        for i in owner.requests:
            if i != owner.requests[-1] or not planned.adds:
                self.note(ctx, "%s: removed differing route", s.id)
        self._accepted.pop(s.id, None)
        created = want
        if after is not None:
            bucket = after.get(route_key(want), [])
            if not any(same_key(want, k) and route_matches(want, k) for k in bucket):
                # The kernel stores the route differently from the spec (a flag it does not
                # keep, a protocol it rewrites): accept what it made instead of rewriting it
                # forever.
                seen = {route_ident(k) for k in planned.before}
                new = [k for k in bucket if same_key(want, k) and route_ident(k) not in seen]
                if new:
                    created = new[0]
                    self._accepted[s.id] = (s.spec, route_ident(created))
                    ctx.log.warning(
                        "%s: the kernel stores %s differently from the spec; accepted", s.id, created
                    )
        self.note(ctx, "%s: route %s added", s.id, describe_route(want))
        return route_record(created, s.spec.out_link_name)

    def forget(self, spec_id: str) -> None:
        self._accepted.pop(spec_id, None)
        self._wants.pop(spec_id, None)
