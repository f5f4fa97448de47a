"""Address config: the default, cmdline and configuration layers of AddressSpec (netd.md §4.2).

(The merge lives in merge.py; the kernel side comes with the spec and status controllers.)
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

from pydantic import BaseModel

from cosi import Context
from netd.config.cmdline import CmdlineNetworking
from netd.config.models import Device
from netd.netip import Prefix, parse_addr, parse_prefix
from netd.resources.address import ADDRESS_SPEC_TYPE, AddressSpec
from netd.resources.enums import AddressFlags, ConfigLayer, Family, Scope
from netd.resources.ids import vlan_link_name

from .sources import (
    LayeredConfigController,
    devices,
    host_links,
    ignored_devices,
    layered,
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


class AddressConfigController(LayeredConfigController):
    name = "network.AddressConfigController"
    spec_type = ADDRESS_SPEC_TYPE

    def desired(self, ctx: Context) -> dict[str, BaseModel]:
        devs = devices(ctx)
        want = layered(default_addresses(), "default")
        result = self.cmdline.parse(host_links(ctx))
        if result.networking is not None:
            want |= layered(cmdline_addresses(result.networking, ignored_devices(devs)), "cmdline")
        want |= layered(config_addresses(devs), "configuration")
        return want
