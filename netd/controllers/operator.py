"""Operator config: which DHCPv4/DHCPv6/VIP operators run on which links (netd.md §6.1, §6.2).

The operators themselves (and OperatorSpecController) come with the operators
issue; this module only decides the OperatorSpecs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from pydantic import BaseModel

from cosi import Context, Input
from netd.config.models import Device, DeviceVIPConfig, DHCPOptions
from netd.netip import parse_addr
from netd.resources.enums import ConfigLayer, Operator
from netd.resources.ids import vlan_link_name
from netd.resources.link import LINK_SPEC_TYPE, LinkSpec, LinkStatus
from netd.resources.namespaces import NETWORK_CONFIG
from netd.resources.operator import (
    OPERATOR_SPEC_TYPE,
    DHCP4OperatorSpec,
    DHCP6OperatorSpec,
    OperatorSpec,
    VIPOperatorSpec,
)
from netd.resources.route import DEFAULT_ROUTE_METRIC

from .sources import (
    DEVICE_CONFIG_INPUT,
    LINK_STATUS_INPUT,
    LayeredConfigController,
    devices,
    host_links,
    ignored_devices,
    layered,
)

log = logging.getLogger("network.OperatorConfigController")

# Layers whose LinkSpecs make a link "configured", so it gets no default DHCP (netd.md §4.2).
_EXPLICIT_LAYERS = ("cmdline/", "platform/", "configuration/")


def dhcp4(link: str, layer: ConfigLayer, metric: int = DEFAULT_ROUTE_METRIC) -> OperatorSpec:
    return OperatorSpec(
        operator=Operator.DHCP4,
        link_name=link,
        require_up=True,
        dhcp4=DHCP4OperatorSpec(route_metric=metric),
        layer=layer,
    )


def _device_dhcp(link: str, dhcp: bool, opts: DHCPOptions | None) -> list[OperatorSpec]:
    if not dhcp:
        return []
    o = opts or DHCPOptions()
    out = []
    metric = o.route_metric or DEFAULT_ROUTE_METRIC
    if o.ipv4:
        out.append(dhcp4(link, ConfigLayer.CONFIGURATION, metric))
    if o.ipv6:
        out.append(
            OperatorSpec(
                operator=Operator.DHCP6,
                link_name=link,
                require_up=True,
                dhcp6=DHCP6OperatorSpec(duid=o.duidv6, route_metric=metric),
                layer=ConfigLayer.CONFIGURATION,
            )
        )
    return out


def config_dhcp(devs: Iterable[Device], cmdline_ignored: set[str]) -> list[OperatorSpec]:
    out: list[OperatorSpec] = []
    for d in devs:
        if d.ignore or not d.interface or d.interface in cmdline_ignored:
            continue
        out += _device_dhcp(d.interface, d.dhcp, d.dhcp_options)
        for v in d.vlans:
            out += _device_dhcp(vlan_link_name(d.interface, v.vlan_id), v.dhcp, v.dhcp_options)
    return out


def default_dhcp(
    links: Iterable[tuple[str, LinkStatus]], explicit: set[str], ignored: set[str]
) -> list[OperatorSpec]:
    """DHCPv4 on every physical link nothing configures: with no config at all,
    every NIC gets an address."""
    return [
        dhcp4(name, ConfigLayer.DEFAULT)
        for name, s in links
        if s.physical() and name not in explicit and name not in ignored
    ]


class OperatorConfigController(LayeredConfigController):
    name = "network.OperatorConfigController"
    spec_type = OPERATOR_SPEC_TYPE

    def inputs(self) -> Sequence[Input]:
        return [DEVICE_CONFIG_INPUT, LINK_STATUS_INPUT, Input(NETWORK_CONFIG, LINK_SPEC_TYPE)]

    def desired(self, ctx: Context) -> dict[str, BaseModel]:
        devs = devices(ctx)
        links = host_links(ctx)
        result = self.cmdline.parse(links)  # on a parse error the partial lists still count (§B.8)
        cmdline_ignored = set(result.ignored_links)
        want = layered((dhcp4(link, ConfigLayer.CMDLINE) for link in result.dhcp_links if link), "cmdline")
        want |= layered(config_dhcp(devs, cmdline_ignored), "configuration")
        explicit = set()
        for r in ctx.list(NETWORK_CONFIG, LINK_SPEC_TYPE):
            if r.id.startswith(_EXPLICIT_LAYERS):
                assert isinstance(r.spec, LinkSpec)
                explicit.add(r.spec.name)
        ignored = cmdline_ignored | ignored_devices(devs)
        return layered(default_dhcp(links, explicit, ignored), "default") | want


def _vip(link: str, vip: DeviceVIPConfig | None) -> OperatorSpec | None:
    if vip is None or not vip.ip:
        return None
    if not vip.gratuitous_arp:
        # Equinix Metal / Hetzner Cloud VIPs need the provider's API; this node has none.
        log.error("VIP %s on %s: cloud provider VIPs are not supported, skipped", vip.ip, link)
        return None
    try:
        ip = parse_addr(vip.ip)
    except ValueError as e:
        log.error("VIP %r on %s skipped: %s", vip.ip, link, e)
        return None
    return OperatorSpec(
        operator=Operator.VIP,
        link_name=link,
        require_up=True,
        vip=VIPOperatorSpec(ip=ip, gratuitous_arp=True),
        layer=ConfigLayer.CONFIGURATION,
    )


def config_vips(devs: Iterable[Device]) -> list[OperatorSpec]:
    out: list[OperatorSpec] = []
    for d in devs:
        if d.ignore or not d.interface:
            continue
        cands = [(d.interface, d.vip)] + [(vlan_link_name(d.interface, v.vlan_id), v.vip) for v in d.vlans]
        out += [s for link, vip in cands if (s := _vip(link, vip)) is not None]
    return out


class OperatorVIPConfigController(LayeredConfigController):
    name = "network.OperatorVIPConfigController"
    spec_type = OPERATOR_SPEC_TYPE

    def inputs(self) -> Sequence[Input]:
        return [DEVICE_CONFIG_INPUT]

    def desired(self, ctx: Context) -> dict[str, BaseModel]:
        return layered(config_vips(devices(ctx)), "configuration")
