"""Which controllers make up a node (netd.md §10), grouped so machined and
``netctl plan`` start the same ones."""

from __future__ import annotations

from cosi import Controller

from .address import AddressConfigController
from .device_config import DeviceConfigController
from .hostname import HostnameConfigController
from .link import LinkConfigController
from .merge import merge_controllers
from .nftables import NfTablesChainConfigController
from .nodeaddress import NodeAddressController
from .operator import OperatorConfigController, OperatorVIPConfigController
from .platform import PlatformConfigController
from .resolver import ResolverConfigController, TimeServerConfigController
from .route import RouteConfigController
from .routing_rule import RoutingRuleConfigController
from .sources import Cmdline


def config_controllers(
    cmdline: str = "",
    platform_config: str | None = None,
    state_dir: str | None = None,
    write_cache: bool = True,
) -> list[Controller]:
    """Sources, device expansion, merges and NodeAddress: everything from inputs to merged specs."""
    parsed = Cmdline(cmdline)
    return [
        DeviceConfigController(),
        AddressConfigController(parsed),
        LinkConfigController(parsed),
        RouteConfigController(parsed),
        RoutingRuleConfigController(),
        HostnameConfigController(parsed),
        ResolverConfigController(parsed),
        TimeServerConfigController(parsed),
        OperatorConfigController(parsed),
        OperatorVIPConfigController(parsed),
        PlatformConfigController(platform_config, state_dir, write_cache),
        NodeAddressController(),
        NfTablesChainConfigController(),
        *merge_controllers(),
    ]
