"""Resolver and time server config: default, cmdline and configuration layers (netd.md §4.2)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pydantic import BaseModel

from cosi import Context, Input
from netd.netip import Addr, parse_addr
from netd.resources.enums import ConfigLayer
from netd.resources.ids import RESOLVERS_ID, TIMESERVERS_ID, layered_id
from netd.resources.resolver import RESOLVER_SPEC_TYPE, ResolverSpec
from netd.resources.timeserver import TIME_SERVER_SPEC_TYPE, TimeServerSpec

from .sources import (
    LINK_STATUS_INPUT,
    MACHINE_CONFIG_INPUT,
    LayeredConfigController,
    host_links,
    machine_config,
)

log = logging.getLogger("network.ResolverConfigController")

DEFAULT_RESOLVERS = ("1.1.1.1", "8.8.8.8")  # netd.md §11, in this order
DEFAULT_TIME_SERVERS = ("pool.ntp.org",)


def config_nameservers(texts: Sequence[str]) -> list[Addr]:
    out = []
    for t in texts:
        try:
            out.append(parse_addr(t))
        except ValueError as e:
            log.error("nameserver %r skipped: %s", t, e)
    return out


class ResolverConfigController(LayeredConfigController):
    name = "network.ResolverConfigController"
    spec_type = RESOLVER_SPEC_TYPE

    def inputs(self) -> Sequence[Input]:
        return [MACHINE_CONFIG_INPUT, LINK_STATUS_INPUT]

    def desired(self, ctx: Context) -> dict[str, BaseModel]:
        want: dict[str, BaseModel] = {
            layered_id("default", RESOLVERS_ID): ResolverSpec(
                dns_servers=[parse_addr(a) for a in DEFAULT_RESOLVERS], layer=ConfigLayer.DEFAULT
            )
        }
        result = self.cmdline.parse(host_links(ctx))
        if result.networking is not None and result.networking.resolvers:
            want[layered_id("cmdline", RESOLVERS_ID)] = ResolverSpec(
                dns_servers=result.networking.resolvers, layer=ConfigLayer.CMDLINE
            )
        mc = machine_config(ctx)
        if mc is not None and mc.config is not None:
            servers = config_nameservers(mc.config.machine.network.nameservers)
            if servers:
                want[layered_id("configuration", RESOLVERS_ID)] = ResolverSpec(
                    dns_servers=servers, layer=ConfigLayer.CONFIGURATION
                )
        return want


class TimeServerConfigController(LayeredConfigController):
    name = "network.TimeServerConfigController"
    spec_type = TIME_SERVER_SPEC_TYPE

    def inputs(self) -> Sequence[Input]:
        return [MACHINE_CONFIG_INPUT, LINK_STATUS_INPUT]

    def desired(self, ctx: Context) -> dict[str, BaseModel]:
        want: dict[str, BaseModel] = {
            layered_id("default", TIMESERVERS_ID): TimeServerSpec(
                time_servers=list(DEFAULT_TIME_SERVERS), layer=ConfigLayer.DEFAULT
            )
        }
        result = self.cmdline.parse(host_links(ctx))
        if result.networking is not None and result.networking.time_servers:
            want[layered_id("cmdline", TIMESERVERS_ID)] = TimeServerSpec(
                time_servers=list(result.networking.time_servers), layer=ConfigLayer.CMDLINE
            )
        mc = machine_config(ctx)
        if mc is not None and mc.config is not None and mc.config.machine.time.servers:
            want[layered_id("configuration", TIMESERVERS_ID)] = TimeServerSpec(
                time_servers=list(mc.config.machine.time.servers), layer=ConfigLayer.CONFIGURATION
            )
        return want
