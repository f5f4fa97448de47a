"""Merge controllers: network-config layered specs → merged specs in ``network`` (netd.md §4.3).

Each merge is a pure function from the network-config specs (with their
network-config IDs) to the final specs keyed by natural ID. The functions sort
their input by network-config ID themselves (byte-wise, as ``State.list``
does), so the result never depends on the order the specs arrive in
(decisions.md). Precedence uses each spec's ``layer`` field, not the ID prefix:
operator-produced IDs (``dhcp4/eth0/...``) carry no layer, and the DHCP4 MTU
link spec is layer ``default`` although an operator wrote it (netd.md §4.2).

:class:`MergeController` runs one merge function: it writes every final spec
into ``network`` and tears down / destroys the merged specs it owns that are no
longer in the final set. A final spec whose previous incarnation is still
tearing down (phase conflict) is dropped from the round; Address, Link, Route
and Operator merges then fail the reconcile once cleanup is done (the runtime
restarts them with back-off), Hostname, Resolver and TimeServer merges re-queue
themselves after :data:`REQUEUE_DELAY`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Generic, Protocol, TypeVar

from cosi import Context, Controller, Input, InputKind, Output, OutputKind, PhaseConflictError
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
    RoutingRuleSpec,
    TimeServerSpec,
)
from netd.resources.base import Spec
from netd.resources.enums import ConfigLayer
from netd.resources.ids import HOSTNAME_ID, RESOLVERS_ID, TIMESERVERS_ID, link_id

S = TypeVar("S", bound=Spec)


class _LayeredSpec(Protocol):
    layer: ConfigLayer


L = TypeVar("L", bound=_LayeredSpec)

#: A merge function: (network-config ID, spec) pairs → final specs by natural ID.
MergeFn = Callable[[Iterable[tuple[str, S]]], dict[str, S]]

#: Delay before a Hostname/Resolver/TimeServer merge retries after a phase conflict (seconds).
REQUEUE_DELAY = 0.1

ADDRESS_MERGE = "network.AddressMergeController"
LINK_MERGE = "network.LinkMergeController"
ROUTE_MERGE = "network.RouteMergeController"
HOSTNAME_MERGE = "network.HostnameMergeController"
RESOLVER_MERGE = "network.ResolverMergeController"
TIME_SERVER_MERGE = "network.TimeServerMergeController"
OPERATOR_MERGE = "network.OperatorMergeController"
ROUTING_RULE_MERGE = "network.RoutingRuleMergeController"


def _by_id(specs: Iterable[tuple[str, L]]) -> list[tuple[str, L]]:
    """Sorted by network-config ID; Python's str order is UTF-8 byte order, like ``State.list``."""
    return sorted(specs, key=lambda item: item[0])


# ---- pure merge functions --------------------------------------------------------------


def _merge_keyed(specs: Iterable[tuple[str, L]], key: Callable[[L], str]) -> dict[str, L]:
    """Every distinct key kept; on a collision the higher layer wins, and among equal
    layers the one later in network-config ID order. The winner is copied verbatim."""
    out: dict[str, L] = {}
    for _, spec in _by_id(specs):
        k = key(spec)
        cur = out.get(k)
        if cur is None or spec.layer >= cur.layer:
            out[k] = spec
    return dict(sorted(out.items()))


def merge_addresses(specs: Iterable[tuple[str, AddressSpec]]) -> dict[str, AddressSpec]:
    """AddressSpecs by AddressID(link, prefix) (netd.md §4.3)."""
    return _merge_keyed(specs, AddressSpec.id)


def merge_routes(specs: Iterable[tuple[str, RouteSpec]]) -> dict[str, RouteSpec]:
    """RouteSpecs by RouteID(table, family, dst, gateway, priority, outLink for inet6):
    routes to one destination with a different gateway or metric are all kept."""
    return _merge_keyed(specs, RouteSpec.id)


def merge_operators(specs: Iterable[tuple[str, OperatorSpec]]) -> dict[str, OperatorSpec]:
    """OperatorSpecs by OperatorID(operator, link)."""
    return _merge_keyed(specs, OperatorSpec.id)


def merge_routing_rules(specs: Iterable[tuple[str, RoutingRuleSpec]]) -> dict[str, RoutingRuleSpec]:
    """RoutingRuleSpecs by ``<family>/<priority 05d>`` (routing-rules.md §2): one rule per
    family and priority, the higher layer wins (configuration over operator, netd.md §4.3).
    KubeSpan's operator-layer rules take a free priority at or below the reserved 32500
    (kubespan.md §7.3), so a config rule is not expected to shadow them."""
    return _merge_keyed(specs, RoutingRuleSpec.id)


def merge_links(specs: Iterable[tuple[str, LinkSpec]]) -> dict[str, LinkSpec]:
    """LinkSpecs by link name: the specs of a link sorted by layer ascending (equal
    layers in network-config ID order, decisions.md) and folded with
    :meth:`LinkSpec.merged`, so a zero value in a higher layer never undoes a lower one."""
    groups: dict[str, list[LinkSpec]] = {}
    for _, spec in _by_id(specs):
        groups.setdefault(link_id(spec.name), []).append(spec)
    out: dict[str, LinkSpec] = {}
    for name in sorted(groups):
        ordered = sorted(groups[name], key=lambda s: s.layer)  # stable: keeps ID order per layer
        acc = ordered[0]
        for higher in ordered[1:]:
            acc = acc.merged(higher)
        out[name] = acc
    return out


def merge_hostname(specs: Iterable[tuple[str, HostnameSpec]]) -> dict[str, HostnameSpec]:
    """The singleton ``hostname``: the spec of the highest layer among those with a
    non-empty hostname; among equal layers the first in ID order. None → ``{}``."""
    final: HostnameSpec | None = None
    for _, spec in _by_id(specs):
        if not spec.hostname:
            continue
        if final is None or spec.layer > final.layer:
            final = spec
    return {} if final is None else {HOSTNAME_ID: final}


def merge_resolvers(specs: Iterable[tuple[str, ResolverSpec]]) -> dict[str, ResolverSpec]:
    """The singleton ``resolvers``: the highest layer present wins; the DNS servers of
    all specs on that layer are concatenated in ID order. A spec with no servers
    counts as absent (like an empty hostname). None → ``{}``."""
    present = [spec for _, spec in _by_id(specs) if spec.dns_servers]
    if not present:
        return {}
    top = max(spec.layer for spec in present)
    servers = [a for spec in present if spec.layer == top for a in spec.dns_servers]
    return {RESOLVERS_ID: ResolverSpec(dns_servers=servers, layer=top)}


def merge_time_servers(specs: Iterable[tuple[str, TimeServerSpec]]) -> dict[str, TimeServerSpec]:
    """The singleton ``timeservers``: as :func:`merge_resolvers`."""
    present = [spec for _, spec in _by_id(specs) if spec.time_servers]
    if not present:
        return {}
    top = max(spec.layer for spec in present)
    servers = [t for spec in present if spec.layer == top for t in spec.time_servers]
    return {TIMESERVERS_ID: TimeServerSpec(time_servers=servers, layer=top)}


# ---- controllers -----------------------------------------------------------------------


class MergeConflictError(Exception):
    """Merged specs could not be written because their old versions are still tearing down."""


class MergeController(Controller, Generic[S]):
    """Merges one spec type from ``network-config`` into ``network`` (netd.md §4.3).

    Inputs: the type in ``network-config`` (weak) and in ``network`` (destroy-ready,
    to finish deletions once the spec controller drops its finalizer). Output: the
    type in ``network`` (shared: only resources owned by this controller are touched).
    """

    def __init__(
        self,
        name: str,
        resource_type: str,
        spec_model: type[S],
        merge: MergeFn[S],
        *,
        requeue_on_conflict: bool = False,
    ) -> None:
        self.name = name
        self.resource_type = resource_type
        self.spec_model = spec_model
        self.merge = merge
        self.requeue_on_conflict = requeue_on_conflict

    def inputs(self) -> Sequence[Input]:
        return (
            Input(NETWORK_CONFIG, self.resource_type, InputKind.WEAK),
            Input(NETWORK, self.resource_type, InputKind.DESTROY_READY),
        )

    def outputs(self) -> Sequence[Output]:
        return (Output(NETWORK, self.resource_type, OutputKind.SHARED),)

    def collect(self, ctx: Context) -> list[tuple[str, S]]:
        """The network-config specs of the type as (ID, spec), sorted by ID."""
        out: list[tuple[str, S]] = []
        for r in ctx.list(NETWORK_CONFIG, self.resource_type):
            if isinstance(r.spec, self.spec_model):
                out.append((r.id, r.spec))
            else:
                ctx.log.error(
                    "%s(%s/%s) has a %s spec, not %s: skipped",
                    self.resource_type,
                    NETWORK_CONFIG,
                    r.id,
                    type(r.spec).__name__,
                    self.spec_model.__name__,
                )
        return out

    async def reconcile(self, ctx: Context) -> None:
        final = self.merge(self.collect(ctx))
        conflicts: list[str] = []
        for id_, spec in final.items():
            try:
                ctx.put(NETWORK, self.resource_type, id_, spec)
            except PhaseConflictError:
                conflicts.append(id_)  # the old one is still tearing down: retried later
        for id_ in conflicts:
            del final[id_]
        for r in ctx.owned(NETWORK, self.resource_type):
            if r.id not in final and ctx.teardown(NETWORK, self.resource_type, r.id):
                ctx.destroy(NETWORK, self.resource_type, r.id)
        if not conflicts:
            return
        if self.requeue_on_conflict:
            ctx.requeue_after(REQUEUE_DELAY)
            return
        raise MergeConflictError(
            f"{len(conflicts)} {self.resource_type} still tearing down in {NETWORK}: {', '.join(conflicts)}"
        )


def address_merge_controller() -> MergeController[AddressSpec]:
    return MergeController(ADDRESS_MERGE, ADDRESS_SPEC_TYPE, AddressSpec, merge_addresses)


def link_merge_controller() -> MergeController[LinkSpec]:
    return MergeController(LINK_MERGE, LINK_SPEC_TYPE, LinkSpec, merge_links)


def route_merge_controller() -> MergeController[RouteSpec]:
    return MergeController(ROUTE_MERGE, ROUTE_SPEC_TYPE, RouteSpec, merge_routes)


def hostname_merge_controller() -> MergeController[HostnameSpec]:
    return MergeController(
        HOSTNAME_MERGE, HOSTNAME_SPEC_TYPE, HostnameSpec, merge_hostname, requeue_on_conflict=True
    )


def resolver_merge_controller() -> MergeController[ResolverSpec]:
    return MergeController(
        RESOLVER_MERGE, RESOLVER_SPEC_TYPE, ResolverSpec, merge_resolvers, requeue_on_conflict=True
    )


def time_server_merge_controller() -> MergeController[TimeServerSpec]:
    return MergeController(
        TIME_SERVER_MERGE,
        TIME_SERVER_SPEC_TYPE,
        TimeServerSpec,
        merge_time_servers,
        requeue_on_conflict=True,
    )


def operator_merge_controller() -> MergeController[OperatorSpec]:
    return MergeController(OPERATOR_MERGE, OPERATOR_SPEC_TYPE, OperatorSpec, merge_operators)


def routing_rule_merge_controller() -> MergeController[RoutingRuleSpec]:
    return MergeController(ROUTING_RULE_MERGE, ROUTING_RULE_SPEC_TYPE, RoutingRuleSpec, merge_routing_rules)


def merge_controllers() -> list[Controller]:
    """Fresh instances of the merge controllers: the seven of netd.md §10 and the
    routing rules' (routing-rules.md §2)."""
    return [
        address_merge_controller(),
        link_merge_controller(),
        route_merge_controller(),
        hostname_merge_controller(),
        resolver_merge_controller(),
        time_server_merge_controller(),
        operator_merge_controller(),
        routing_rule_merge_controller(),
    ]
