"""The status controllers of a node (netd.md §10), one module per resource:
:mod:`.link_status`, :mod:`.address_status`, :mod:`.route_status`,
:mod:`.rule_status`, :mod:`.hardware_addr`, :mod:`.network_status`; their
common delta machinery is :mod:`.netlink_status`."""

from __future__ import annotations

from cosi import Controller
from netd.kernel.pci import pci_info

from .address_status import AddressStatusController
from .hardware_addr import HardwareAddrController, first_physical
from .link_status import LinkStatusController, wireguard_status
from .netlink_status import NetlinkStatusController, StatusModel
from .network_status import StatusController, network_status
from .route_status import RouteStatusController
from .rule_status import RoutingRuleStatusController


def status_controllers(rcvbuf: int | None = None) -> list[Controller]:
    """The status controllers of a node (netd.md §10)."""
    return [
        LinkStatusController(rcvbuf),
        AddressStatusController(rcvbuf),
        RouteStatusController(rcvbuf),
        RoutingRuleStatusController(rcvbuf),
        HardwareAddrController(),
        StatusController(),
    ]


__all__ = [
    "AddressStatusController",
    "HardwareAddrController",
    "LinkStatusController",
    "NetlinkStatusController",
    "RouteStatusController",
    "RoutingRuleStatusController",
    "StatusController",
    "StatusModel",
    "first_physical",
    "network_status",
    "pci_info",
    "status_controllers",
    "wireguard_status",
]
