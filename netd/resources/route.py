"""RouteSpec and RouteStatus (netd.md §2.6)."""

from __future__ import annotations

from cosi import ResourceDefinition
from netd.netip import Addr, Prefix
from netd.resources.base import OptAddr, OptPrefix, Spec
from netd.resources.enums import (
    ConfigLayer,
    Family,
    RouteFlags,
    RouteProtocol,
    RouteType,
    RoutingTable,
    Scope,
)
from netd.resources.ids import route_id
from netd.resources.namespaces import NETWORK

ROUTE_SPEC_TYPE = "RouteSpecs.net.talos.dev"
ROUTE_STATUS_TYPE = "RouteStatuses.net.talos.dev"

#: Default route metric (netd.md §11).
DEFAULT_ROUTE_METRIC = 1024


def config_route_family(dst: Prefix | None, gateway: Addr | None) -> Family:
    """Family of a machine-config route, computed after normalization (netd.md §4.2):
    inet6 if the gateway is IPv6, else inet6 if dst is IPv6, else inet4 (so ``::/0``
    without a gateway becomes inet4, as in v1.6.8)."""
    if gateway is not None and gateway.version == 6:
        return Family.INET6
    if dst is not None and dst.version == 6:
        return Family.INET6
    return Family.INET4


def config_route_type(dst: Prefix | None) -> RouteType:
    """``multicast`` for a multicast destination, else ``unicast`` (netd.md §4.2)."""
    return RouteType.MULTICAST if dst is not None and dst.ip.is_multicast else RouteType.UNICAST


class RouteSpec(Spec):
    """A desired route. ``dst`` None = default route; ``gateway`` None = on-link."""

    OMITEMPTY = frozenset({"out_link_name", "priority", "mtu"})

    family: Family = Family(0)
    dst: OptPrefix = None
    src: OptAddr = None
    gateway: OptAddr = None
    out_link_name: str = ""
    table: RoutingTable = RoutingTable.UNSPEC
    priority: int = 0
    scope: Scope = Scope.GLOBAL
    type: RouteType = RouteType.UNSPEC
    flags: RouteFlags = RouteFlags(0)
    protocol: RouteProtocol = RouteProtocol.UNSPEC
    layer: ConfigLayer = ConfigLayer.DEFAULT
    mtu: int = 0

    def id(self) -> str:
        """RouteID(table, family, dst, gateway, priority, outLinkName)."""
        return route_id(self.table, self.family, self.dst, self.gateway, self.priority, self.out_link_name)

    def normalized(self) -> RouteSpec:
        """The normalization of netd.md §2.6 (config sources and DHCP, not platform):
        a ``0.0.0.0/0``/``::/0`` destination becomes empty, an unspecified gateway or
        source becomes empty, then scope = link without gateway, host for a loopback
        destination, else global."""
        dst, gw, src = self.dst, self.gateway, self.src
        if dst is not None and dst.network.prefixlen == 0 and dst.ip.is_unspecified:
            dst = None
        if gw is not None and gw.is_unspecified:
            gw = None
        if src is not None and src.is_unspecified:
            src = None
        if gw is None:
            scope = Scope.LINK
        elif dst is not None and dst.ip.is_loopback:
            scope = Scope.HOST
        else:
            scope = Scope.GLOBAL
        return self.model_copy(update={"dst": dst, "gateway": gw, "src": src, "scope": scope})


class RouteStatus(Spec):
    """A kernel route (any table, any family)."""

    OMITEMPTY = frozenset({"out_link_index", "out_link_name", "mtu"})

    family: Family = Family(0)
    dst: OptPrefix = None
    src: OptAddr = None
    gateway: OptAddr = None
    out_link_index: int = 0
    out_link_name: str = ""
    table: RoutingTable = RoutingTable.UNSPEC
    priority: int = 0
    scope: Scope = Scope.GLOBAL
    type: RouteType = RouteType.UNSPEC
    flags: RouteFlags = RouteFlags(0)
    protocol: RouteProtocol = RouteProtocol.UNSPEC
    mtu: int = 0

    def id(self) -> str:
        return route_id(self.table, self.family, self.dst, self.gateway, self.priority, self.out_link_name)


ROUTE_SPEC_DEFINITION = ResourceDefinition(
    type=ROUTE_SPEC_TYPE,
    display_type="RouteSpec",
    default_namespace=NETWORK,
    spec_model=RouteSpec,
)
ROUTE_STATUS_DEFINITION = ResourceDefinition(
    type=ROUTE_STATUS_TYPE,
    display_type="RouteStatus",
    default_namespace=NETWORK,
    spec_model=RouteStatus,
    aliases=("route", "routes"),
    print_columns=(
        ("DESTINATION", "{.dst}"),
        ("GATEWAY", "{.gateway}"),
        ("LINK", "{.outLinkName}"),
        ("METRIC", "{.priority}"),
    ),
)
