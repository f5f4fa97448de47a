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
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from cosi import Context, Controller, Input, InputKind, Phase
from netd.kernel.applied import Applied
from netd.kernel.rtnl import ROUTE_GROUPS, KernelError, KernelRoute, NotFound, Rtnl, describe_route, watch
from netd.netip import Prefix, format_addr
from netd.resources.enums import ROUTE_FLAGS_COMPARE_MASK, RouteProtocol, RouteType, RoutingTable
from netd.resources.namespaces import NETWORK
from netd.resources.route import ROUTE_SPEC_TYPE, RouteSpec

from .retry import KernelRetry

NAME = "network.RouteSpecController"
APPLIED_KIND = "route"

#: The kernel's metric for an IPv6 route added without one (IP6_RT_PRIO_USER).
IPV6_DEFAULT_METRIC = 1024
RT_SCOPE_NOWHERE = 255


def _masked(dst: Prefix | None) -> Prefix | None:
    """The destination as the kernel stores it (host bits cleared); ``/0`` = default = None."""
    if dst is None or dst.network.prefixlen == 0:
        return None
    return ipaddress.ip_interface((dst.network.network_address, dst.network.prefixlen))


def desired_route(spec: RouteSpec, oif: int) -> KernelRoute:
    """The kernel route a spec asks for (``oif`` = index of its out link, 0 = none)."""
    family = int(spec.family)
    table = int(spec.table) or int(RoutingTable.MAIN)
    priority = spec.priority
    if priority == 0 and family == socket.AF_INET6:
        priority = IPV6_DEFAULT_METRIC
    return KernelRoute(
        family=family,
        dst=_masked(spec.dst),
        gateway=spec.gateway,
        table=table,
        priority=priority,
        oif=oif,
        src=spec.src,
        scope=int(spec.scope),
        type=int(spec.type) or int(RouteType.UNICAST),
        flags=int(spec.flags),
        protocol=int(spec.protocol) or (int(RouteProtocol.BOOT) if family == socket.AF_INET6 else 0),
        mtu=spec.mtu,
    )


def same_key(want: KernelRoute, k: KernelRoute) -> bool:
    """Family, destination, gateway, table, priority (netd.md §5.3); plus the out link
    for IPv6 when the spec names one."""
    if (want.family, want.table, want.priority, want.gateway) != (k.family, k.table, k.priority, k.gateway):
        return False
    if _masked(want.dst) != _masked(k.dst):
        return False
    return not (want.family == socket.AF_INET6 and want.oif and want.oif != k.oif)


def route_matches(want: KernelRoute, k: KernelRoute) -> bool:
    """A kernel route with the spec's key that the spec adopts as it is."""
    mask = int(ROUTE_FLAGS_COMPARE_MASK)
    if want.family == socket.AF_INET and want.scope != k.scope:
        return False
    if (want.flags & mask) != (k.flags & mask):
        return False
    if want.protocol != k.protocol:
        return False
    if want.oif and want.oif != k.oif:
        return False
    if want.src is not None and want.src != k.src:
        return False
    return want.mtu == k.mtu


@dataclass(frozen=True)
class RoutePlan:
    delete: tuple[KernelRoute, ...] = ()
    add: KernelRoute | None = None

    @property
    def empty(self) -> bool:
        return not self.delete and self.add is None


def plan_route(
    want: KernelRoute, kernel: Sequence[KernelRoute], ours: Callable[[KernelRoute], bool]
) -> RoutePlan:
    """Adopt a matching route, else delete our non-matching routes with the key and add.

    ``ours(k)``: whether we created ``k`` (the Applied record); a route with the
    spec's protocol counts as ours as well. Foreign routes are left alone.
    """
    candidates = [k for k in kernel if same_key(want, k)]
    if any(route_matches(want, k) for k in candidates):
        return RoutePlan()
    doomed = tuple(k for k in candidates if ours(k) or k.protocol == want.protocol)
    return RoutePlan(delete=doomed, add=want)


def teardown_routes(
    want: KernelRoute, kernel: Sequence[KernelRoute], ours: Callable[[KernelRoute], bool]
) -> list[KernelRoute]:
    """The routes a tearing-down spec removes: the ones with its key that we created.
    A route that was there before and merely matched the spec was adopted: it stays."""
    return [k for k in kernel if same_key(want, k) and ours(k)]


def apply_order(spec: RouteSpec, id_: str) -> tuple[int, str]:
    """Routes without a gateway (link scope) first, then gateway routes; by ID within."""
    return (0 if spec.gateway is None else 1, id_)


# ---- Applied records ---------------------------------------------------------------------


def route_record(r: KernelRoute, link: str) -> dict[str, Any]:
    return {
        "family": r.family,
        "dst": f"{r.dst.network}" if r.dst is not None else "",
        "gateway": format_addr(r.gateway) if r.gateway is not None else "",
        "table": r.table,
        "priority": r.priority,
        "link": link,
        "protocol": r.protocol,
        "type": r.type,
    }


def record_matches(data: dict[str, Any], k: KernelRoute, links: dict[str, int]) -> bool:
    """Whether kernel route ``k`` is the one a record describes (key, out link, protocol, type)."""
    try:
        dst = ipaddress.ip_interface(data["dst"]) if data.get("dst") else None
        gw = ipaddress.ip_address(data["gateway"]) if data.get("gateway") else None
        family, table, priority = int(data["family"]), int(data["table"]), int(data["priority"])
        protocol, type_ = int(data["protocol"]), int(data["type"])
    except (KeyError, TypeError, ValueError):
        return False
    if (family, table, priority, gw, protocol, type_) != (
        k.family,
        k.table,
        k.priority,
        k.gateway,
        k.protocol,
        k.type,
    ):
        return False
    if _masked(dst) != _masked(k.dst):
        return False
    link = str(data.get("link", ""))
    if link:
        return links.get(link) == k.oif
    return True


@dataclass
class _Spec:
    id: str
    spec: RouteSpec
    tearing_down: bool


class RouteSpecController(Controller):
    name = NAME

    def __init__(self, applied: Applied) -> None:
        self.applied = applied
        self.rtnl: Rtnl | None = None
        self.retry: KernelRetry | None = None
        self._stale_done = False
        self._waiting: set[str] = set()
        # spec ID → (spec, the kernel route made of it that does not match it)
        self._accepted: dict[str, tuple[RouteSpec, KernelRoute]] = {}

    def inputs(self) -> Sequence[Input]:
        return [Input(NETWORK, ROUTE_SPEC_TYPE, InputKind.STRONG)]

    async def run(self, ctx: Context) -> None:
        watcher = asyncio.create_task(watch(ROUTE_GROUPS, ctx.trigger), name=f"{self.name}.watch")
        try:
            await super().run(ctx)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            if self.rtnl is not None:
                self.rtnl.close()
                self.rtnl = None

    def _ours(self, id_: str, links: dict[str, int]) -> Callable[[KernelRoute], bool]:
        data = self.applied.items(APPLIED_KIND).get(id_)
        if data is None:
            return lambda k: False
        return lambda k: record_matches(data, k, links)

    async def reconcile(self, ctx: Context) -> None:
        if self.retry is None:
            self.retry = KernelRetry(ctx.log)
        if self.rtnl is None:
            self.rtnl = Rtnl()
        retry, rtnl = self.retry, self.rtnl
        specs: list[_Spec] = []
        for r in ctx.list(NETWORK, ROUTE_SPEC_TYPE):
            assert isinstance(r.spec, RouteSpec)
            tearing = r.md.phase is Phase.TEARING_DOWN
            if not tearing and self.name not in r.md.finalizers:
                ctx.add_finalizer(NETWORK, ROUTE_SPEC_TYPE, r.md.id, self.name)
            specs.append(_Spec(r.md.id, r.spec, tearing))
        specs.sort(key=lambda s: apply_order(s.spec, s.id))
        links = {link.name: link.index for link in await rtnl.links()}
        routes = await rtnl.routes()

        # 1. Specs going away (gateway routes before the link routes they may need).
        for s in reversed(specs):
            if s.tearing_down and await self._teardown(ctx, rtnl, retry, s, links, routes):
                ctx.remove_finalizer(NETWORK, ROUTE_SPEC_TYPE, s.id, self.name)

        # 2. Once per start: routes recorded by an earlier run that no spec wants.
        if not self._stale_done:
            ids = {s.id for s in specs}
            ok = True
            for key, data in sorted(self.applied.items(APPLIED_KIND).items()):
                if key not in ids:
                    ok = await self._remove_stale(ctx, rtnl, retry, key, data, links, routes) and ok
            self._stale_done = ok

        # 3. Running specs, link-scope routes first.
        for s in specs:
            if not s.tearing_down:
                await self._apply(ctx, rtnl, retry, s, links, routes)

        retry.forget_except({s.id for s in specs} | {f"stale {k}" for k in self.applied.items(APPLIED_KIND)})
        retry.schedule(ctx)

    async def _delete(self, rtnl: Rtnl, routes: list[KernelRoute], k: KernelRoute) -> None:
        with contextlib.suppress(NotFound):
            await rtnl.delete_route(replace(k, scope=RT_SCOPE_NOWHERE))
        if k in routes:
            routes.remove(k)

    async def _apply(
        self,
        ctx: Context,
        rtnl: Rtnl,
        retry: KernelRetry,
        s: _Spec,
        links: dict[str, int],
        routes: list[KernelRoute],
    ) -> None:
        spec = s.spec
        oif = 0
        if spec.out_link_name:
            idx = links.get(spec.out_link_name)
            if idx is None:
                if s.id not in self._waiting:
                    self._waiting.add(s.id)
                    ctx.log.info("%s: waiting for link %s", s.id, spec.out_link_name)
                retry.succeeded(s.id)
                return
            oif = idx
        self._waiting.discard(s.id)
        want = desired_route(spec, oif)
        accepted = self._accepted.get(s.id)
        if accepted is not None and accepted[0] == spec and accepted[1] in routes:
            retry.succeeded(s.id)
            return
        plan = plan_route(want, routes, self._ours(s.id, links))
        if plan.empty:
            retry.succeeded(s.id)
            return
        try:
            for k in plan.delete:
                await self._delete(rtnl, routes, k)
                ctx.log.info("%s: removed differing route %s", s.id, describe_route(k))
            if plan.add is not None:
                await rtnl.add_route(plan.add)
        except KernelError as e:
            retry.failed(s.id, e)
            return
        retry.succeeded(s.id)
        self._accepted.pop(s.id, None)
        before = set(routes)
        routes[:] = await rtnl.routes()
        created = want
        if not any(same_key(want, k) and route_matches(want, k) for k in routes):
            # The kernel stores the route differently from the spec (a flag it does not keep,
            # a protocol it rewrites): accept what it made instead of rewriting it forever.
            new = [k for k in routes if same_key(want, k) and k not in before]
            if new:
                created = new[0]
                self._accepted[s.id] = (spec, created)
                ctx.log.warning("%s: the kernel stores %s differently from the spec; accepted", s.id, created)
        self.applied.add(APPLIED_KIND, s.id, route_record(created, spec.out_link_name))
        ctx.log.info("%s: route %s added", s.id, describe_route(want))

    async def _teardown(
        self,
        ctx: Context,
        rtnl: Rtnl,
        retry: KernelRetry,
        s: _Spec,
        links: dict[str, int],
        routes: list[KernelRoute],
    ) -> bool:
        spec = s.spec
        oif = 0
        if spec.out_link_name:
            idx = links.get(spec.out_link_name)
            if idx is None:  # the link and its routes are gone
                self.applied.remove(APPLIED_KIND, s.id)
                retry.succeeded(s.id)
                return True
            oif = idx
        want = desired_route(spec, oif)
        try:
            for k in teardown_routes(want, routes, self._ours(s.id, links)):
                await self._delete(rtnl, routes, k)
                ctx.log.info("%s: route %s removed", s.id, describe_route(k))
        except KernelError as e:
            retry.failed(s.id, e)
            return False
        retry.succeeded(s.id)
        self.applied.remove(APPLIED_KIND, s.id)
        self._waiting.discard(s.id)
        self._accepted.pop(s.id, None)
        return True

    async def _remove_stale(
        self,
        ctx: Context,
        rtnl: Rtnl,
        retry: KernelRetry,
        key: str,
        data: dict[str, Any],
        links: dict[str, int],
        routes: list[KernelRoute],
    ) -> bool:
        try:
            for k in [k for k in routes if record_matches(data, k, links)]:
                await self._delete(rtnl, routes, k)
                ctx.log.info("%s: route of an earlier configuration removed", key)
        except KernelError as e:
            retry.failed(f"stale {key}", e)
            return False
        retry.succeeded(f"stale {key}")
        self.applied.remove(APPLIED_KIND, key)
        return True
