"""Hostname config: default, cmdline and configuration layers of HostnameSpec (netd.md §4.2)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

from pydantic import BaseModel

from cosi import Context, Input
from netd.netip import format_addr
from netd.resources.enums import ConfigLayer
from netd.resources.hostname import HOSTNAME_SPEC_TYPE, HostnameSpec
from netd.resources.ids import HOSTNAME_ID, LOCAL_IDENTITY_ID, NODE_ADDRESS_DEFAULT_ID, layered_id
from netd.resources.namespaces import CLUSTER, NETWORK
from netd.resources.nodeaddress import NODE_ADDRESS_TYPE, NodeAddress
from netd.resources.runtime_types import IDENTITY_TYPE, Identity

from .sources import (
    LINK_STATUS_INPUT,
    MACHINE_CONFIG_INPUT,
    LayeredConfigController,
    host_links,
    machine_config,
)

log = logging.getLogger("network.HostnameConfigController")

_BASE36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def stable_hostname(node_id: str) -> str:
    """``talos-XXX-YYY`` from the node identity (netd.md §4.2 "Stable hostname")."""
    head = hashlib.sha256(node_id.encode()).digest()[:8]
    n = int.from_bytes(head, "big")
    digits = ""
    while n:
        n, r = divmod(n, 36)
        digits = _BASE36[r] + digits
    zeros = len(head) - len(head.lstrip(b"\0"))
    chars = ("0" * zeros + digits).lower()
    return f"talos-{chars[1:4]}-{chars[4:7]}"


def address_hostname(node_address: NodeAddress | None) -> str:
    """``talos-172-20-0-2`` from the default node address; "" without one."""
    if node_address is None or not node_address.addresses:
        return ""
    text = format_addr(node_address.addresses[0].ip)
    return "talos-" + text.replace(".", "-").replace(":", "")


class HostnameConfigController(LayeredConfigController):
    name = "network.HostnameConfigController"
    spec_type = HOSTNAME_SPEC_TYPE

    def inputs(self) -> Sequence[Input]:
        return [
            MACHINE_CONFIG_INPUT,
            Input(NETWORK, NODE_ADDRESS_TYPE, id=NODE_ADDRESS_DEFAULT_ID),
            Input(CLUSTER, IDENTITY_TYPE, id=LOCAL_IDENTITY_ID),
            LINK_STATUS_INPUT,
        ]

    def desired(self, ctx: Context) -> dict[str, BaseModel] | None:
        want: dict[str, BaseModel] = {}
        mc = machine_config(ctx)
        cfg = mc.config if mc is not None else None
        if cfg is not None:
            if cfg.machine.features.stable_hostname:
                ident = ctx.get(CLUSTER, IDENTITY_TYPE, LOCAL_IDENTITY_ID)
                if ident is None:
                    return None  # wait for the identity; write and clean up nothing meanwhile
                assert isinstance(ident.spec, Identity)
                default = stable_hostname(ident.spec.node_id)
            else:
                na = ctx.get(NETWORK, NODE_ADDRESS_TYPE, NODE_ADDRESS_DEFAULT_ID)
                default = address_hostname(na.spec if na is not None else None)  # type: ignore[arg-type]
            want[layered_id("default", HOSTNAME_ID)] = HostnameSpec(
                hostname=default, layer=ConfigLayer.DEFAULT
            )
        result = self.cmdline.parse(host_links(ctx))
        if result.networking is not None and result.networking.hostname:
            try:
                want[layered_id("cmdline", HOSTNAME_ID)] = HostnameSpec.from_fqdn(
                    result.networking.hostname, ConfigLayer.CMDLINE
                )
            except ValueError as e:
                log.error("kernel command line hostname ignored: %s", e)
        if cfg is not None and cfg.machine.network.hostname:
            try:
                want[layered_id("configuration", HOSTNAME_ID)] = HostnameSpec.from_fqdn(
                    cfg.machine.network.hostname, ConfigLayer.CONFIGURATION
                )
            except ValueError as e:
                log.error("machine.network.hostname ignored: %s", e)
        return want
