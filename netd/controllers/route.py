"""Route config: the cmdline and configuration layers of RouteSpec (netd.md §4.2)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from pydantic import BaseModel

from cosi import Context
from netd.config.cmdline import CmdlineNetworking
from netd.config.models import Device, Route
from netd.config.routing import parse_table
from netd.netip import parse_addr, parse_prefix
from netd.resources.enums import ConfigLayer, Family, RouteProtocol, RouteType, RoutingTable, Scope
from netd.resources.ids import vlan_link_name
from netd.resources.route import (
    DEFAULT_ROUTE_METRIC,
    ROUTE_SPEC_TYPE,
    RouteSpec,
    config_route_family,
    config_route_type,
)

from .sources import (
    LayeredConfigController,
    devices,
    host_links,
    ignored_devices,
    layered,
)

log = logging.getLogger("network.RouteConfigController")


def cmdline_routes(net: CmdlineNetworking, ignored: set[str]) -> list[RouteSpec]:
    out = []
    for r in net.routes:
        if not r.link or r.link in ignored:
            continue
        out.append(
            RouteSpec(
                family=Family.from_name(r.family),
                dst=r.dst,
                src=r.src,
                gateway=r.gateway,
                out_link_name=r.link,
                table=RoutingTable.MAIN,
                priority=r.metric,
                scope=Scope.LINK if r.scope == "link" else Scope.GLOBAL,
                type=RouteType.UNICAST,
                protocol=RouteProtocol.BOOT,
                layer=ConfigLayer.CMDLINE,
            )
        )
    return out


def config_route(link: str, r: Route) -> RouteSpec:
    """One machine-config route, normalized; the family is computed after normalization.
    ``table`` comes only from a LinkConfig route (routing-rules.md §5); else main."""
    dst = parse_prefix(r.network) if r.network else None
    gw = parse_addr(r.gateway) if r.gateway else None
    src = parse_addr(r.source) if r.source else None
    spec = RouteSpec(
        dst=dst,
        gateway=gw,
        src=src,
        out_link_name=link,
        table=RoutingTable(parse_table(r.table)) if r.table else RoutingTable.MAIN,
        priority=r.metric or DEFAULT_ROUTE_METRIC,
        protocol=RouteProtocol.STATIC,
        type=config_route_type(dst),
        mtu=r.mtu,
        layer=ConfigLayer.CONFIGURATION,
    ).normalized()
    return spec.model_copy(update={"family": config_route_family(spec.dst, spec.gateway)})


def config_routes(devs: Iterable[Device]) -> list[RouteSpec]:
    out: list[RouteSpec] = []
    for d in devs:
        if d.ignore or not d.interface:
            continue
        groups = [(d.interface, d.routes)] + [
            (vlan_link_name(d.interface, v.vlan_id), v.routes) for v in d.vlans
        ]
        for link, routes in groups:
            for r in routes:
                try:
                    out.append(config_route(link, r))
                except ValueError as e:  # validated at load time; never stops the others
                    log.error("route %s via %s on %s skipped: %s", r.network, r.gateway, link, e)
    return out


class RouteConfigController(LayeredConfigController):
    name = "network.RouteConfigController"
    spec_type = ROUTE_SPEC_TYPE

    def desired(self, ctx: Context) -> dict[str, BaseModel]:
        devs = devices(ctx)
        want: dict[str, BaseModel] = {}
        result = self.cmdline.parse(host_links(ctx))
        if result.networking is not None:
            want |= layered(cmdline_routes(result.networking, ignored_devices(devs)), "cmdline")
        want |= layered(config_routes(devs), "configuration")
        return want
