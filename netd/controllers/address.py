"""Address config: the default, cmdline and configuration layers of AddressSpec (netd.md §4.2).

(The merge lives in merge.py; the kernel side comes with the spec and status controllers.)
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Sequence

from pydantic import BaseModel

from cosi import Context, Input
from netd.config.cmdline import CmdlineNetworking
from netd.config.models import Device
from netd.netip import Prefix, format_prefix, parse_addr, parse_prefix
from netd.resources.address import ADDRESS_SPEC_TYPE, AddressSpec
from netd.resources.enums import AddressFlags, ConfigLayer, Family, Scope
from netd.resources.ids import vlan_link_name
from netd.resources.machine_config import MachineConfigSpec

from .sources import (
    MACHINE_CONFIG_INPUT,
    LayeredConfigController,
    devices,
    host_links,
    ignored_devices,
    layered,
    machine_config,
)

log = logging.getLogger("network.AddressConfigController")

LOOPBACK = ipaddress.IPv4Interface("127.0.0.1/8")


def default_addresses() -> list[AddressSpec]:
    """``127.0.0.1/8`` on ``lo`` (the reference does not add ``::1``: the kernel does)."""
    return [
        AddressSpec(
            address=LOOPBACK,
            link_name="lo",
            family=Family.INET4,
            scope=Scope.HOST,
            flags=AddressFlags.PERMANENT,
            layer=ConfigLayer.DEFAULT,
        )
    ]


def cmdline_addresses(net: CmdlineNetworking, ignored: set[str]) -> list[AddressSpec]:
    return [
        AddressSpec.configured(a.prefix, a.link, ConfigLayer.CMDLINE)
        for a in net.addresses
        if a.link and a.link not in ignored
    ]


def parse_config_address(text: str) -> Prefix:
    """A device address: a prefix, or a bare IP meaning its full-length prefix."""
    if "/" in text:
        return parse_prefix(text)
    ip = parse_addr(text)
    return ipaddress.ip_interface((ip, ip.max_prefixlen))


def _addresses(link: str, texts: Iterable[str]) -> list[AddressSpec]:
    out = []
    for text in texts:
        try:
            prefix = parse_config_address(text)
        except ValueError as e:  # validated at load time; kept so a bad entry never stops the rest
            log.error("address %r on %s skipped: %s", text, link, e)
            continue
        out.append(AddressSpec.configured(prefix, link, ConfigLayer.CONFIGURATION))
    return out


def config_addresses(devs: Iterable[Device]) -> list[AddressSpec]:
    """Every address of every non-ignored device and its VLANs (bare VLAN IPs apply
    as /32 or /128: decisions.md)."""
    out: list[AddressSpec] = []
    for d in devs:
        if d.ignore or not d.interface:
            continue
        out += _addresses(d.interface, d.addresses or ([d.cidr] if d.cidr else []))
        for v in d.vlans:
            out += _addresses(
                vlan_link_name(d.interface, v.vlan_id), v.addresses or ([v.cidr] if v.cidr else [])
            )
    return out


def route_priorities(mc: MachineConfigSpec | None) -> dict[tuple[str, str], int]:
    """(link, address) → prefix route metric, from LinkConfig ``addresses[].routePriority``
    (routing-rules.md §5); the v1.6 device entries have no such key."""
    out: dict[tuple[str, str], int] = {}
    for link in mc.link_configs if mc is not None else ():
        for a in link.addresses:
            if a.route_priority:
                try:
                    out[(link.name, format_prefix(parse_config_address(a.address)))] = a.route_priority
                except ValueError:
                    continue  # refused at load time
    return out


def with_priorities(specs: list[AddressSpec], priorities: dict[tuple[str, str], int]) -> list[AddressSpec]:
    if not priorities:
        return specs
    out = []
    for s in specs:
        p = priorities.get((s.link_name, format_prefix(s.address))) if s.address is not None else None
        out.append(s.model_copy(update={"priority": p}) if p else s)
    return out


class AddressConfigController(LayeredConfigController):
    name = "network.AddressConfigController"
    spec_type = ADDRESS_SPEC_TYPE

    def inputs(self) -> Sequence[Input]:
        return [*super().inputs(), MACHINE_CONFIG_INPUT]

    def desired(self, ctx: Context) -> dict[str, BaseModel]:
        devs = devices(ctx)
        want = layered(default_addresses(), "default")
        result = self.cmdline.parse(host_links(ctx))
        if result.networking is not None:
            want |= layered(cmdline_addresses(result.networking, ignored_devices(devs)), "cmdline")
        configured = with_priorities(config_addresses(devs), route_priorities(machine_config(ctx)))
        want |= layered(configured, "configuration")
        return want
