"""Networking resource types: spec models, IDs, enums and resource definitions.

``ALL_DEFINITIONS`` lists every type of netd.md §2.1 plus DevicesStatus and the
node Identity; :func:`register_all` makes them (and their namespaces) known to
a :class:`cosi.State`.
"""

from __future__ import annotations

from cosi import ResourceDefinition, State
from netd.resources.address import (
    ADDRESS_SPEC_DEFINITION,
    ADDRESS_SPEC_TYPE,
    ADDRESS_STATUS_DEFINITION,
    ADDRESS_STATUS_TYPE,
    AddressSpec,
    AddressStatus,
)
from netd.resources.base import Spec, is_zero
from netd.resources.device_config import (
    DEVICE_CONFIG_SPEC_DEFINITION,
    DEVICE_CONFIG_SPEC_TYPE,
    DeviceConfigSpec,
)
from netd.resources.files import (
    ETC_FILE_SPEC_DEFINITION,
    ETC_FILE_SPEC_TYPE,
    ETC_FILE_STATUS_DEFINITION,
    ETC_FILE_STATUS_TYPE,
    EtcFileSpec,
    EtcFileStatus,
)
from netd.resources.hardware import HARDWARE_ADDR_DEFINITION, HARDWARE_ADDR_TYPE, HardwareAddr
from netd.resources.hostname import (
    HOSTNAME_SPEC_DEFINITION,
    HOSTNAME_SPEC_TYPE,
    HOSTNAME_STATUS_DEFINITION,
    HOSTNAME_STATUS_TYPE,
    HostnameSpec,
    HostnameStatus,
)
from netd.resources.link import (
    LINK_REFRESH_DEFINITION,
    LINK_REFRESH_TYPE,
    LINK_SPEC_DEFINITION,
    LINK_SPEC_TYPE,
    LINK_STATUS_DEFINITION,
    LINK_STATUS_TYPE,
    BondMasterSpec,
    BridgeMasterSpec,
    BridgeSlave,
    LinkRefresh,
    LinkSpec,
    LinkStatus,
    STPSpec,
    VLANSpec,
    WireguardPeer,
    WireguardSpec,
)
from netd.resources.machine_config import (
    MACHINE_CONFIG_DEFINITION,
    MACHINE_CONFIG_ID,
    MACHINE_CONFIG_TYPE,
    MachineConfigSpec,
)
from netd.resources.namespaces import CLUSTER, CONFIG, DESCRIPTIONS, FILES, NETWORK, NETWORK_CONFIG, RUNTIME
from netd.resources.nftables import (
    NFTABLES_CHAIN_DEFINITION,
    NFTABLES_CHAIN_TYPE,
    NfTablesChain,
    NfTablesRule,
)
from netd.resources.nodeaddress import (
    NODE_ADDRESS_DEFINITION,
    NODE_ADDRESS_FILTER_DEFINITION,
    NODE_ADDRESS_FILTER_TYPE,
    NODE_ADDRESS_TYPE,
    NodeAddress,
    NodeAddressFilter,
)
from netd.resources.operator import OPERATOR_SPEC_DEFINITION, OPERATOR_SPEC_TYPE, OperatorSpec
from netd.resources.operator_status import (
    OPERATOR_STATUS_DEFINITION,
    OPERATOR_STATUS_TYPE,
    OperatorStatusSpec,
)
from netd.resources.probe import (
    PROBE_SPEC_DEFINITION,
    PROBE_SPEC_TYPE,
    PROBE_STATUS_DEFINITION,
    PROBE_STATUS_TYPE,
    ProbeSpec,
    ProbeStatus,
)
from netd.resources.resolver import (
    RESOLVER_SPEC_DEFINITION,
    RESOLVER_SPEC_TYPE,
    RESOLVER_STATUS_DEFINITION,
    RESOLVER_STATUS_TYPE,
    ResolverSpec,
    ResolverStatus,
)
from netd.resources.route import (
    ROUTE_SPEC_DEFINITION,
    ROUTE_SPEC_TYPE,
    ROUTE_STATUS_DEFINITION,
    ROUTE_STATUS_TYPE,
    RouteSpec,
    RouteStatus,
)
from netd.resources.routing_rule import (
    ROUTING_RULE_SPEC_DEFINITION,
    ROUTING_RULE_SPEC_TYPE,
    ROUTING_RULE_STATUS_DEFINITION,
    ROUTING_RULE_STATUS_TYPE,
    RoutingRuleSpec,
    RoutingRuleStatus,
)
from netd.resources.runtime_types import (
    DEVICES_STATUS_DEFINITION,
    DEVICES_STATUS_TYPE,
    IDENTITY_DEFINITION,
    IDENTITY_TYPE,
    DevicesStatus,
    Identity,
)
from netd.resources.status import NETWORK_STATUS_DEFINITION, NETWORK_STATUS_TYPE, NetworkStatus
from netd.resources.timeserver import (
    TIME_SERVER_SPEC_DEFINITION,
    TIME_SERVER_SPEC_TYPE,
    TIME_SERVER_STATUS_DEFINITION,
    TIME_SERVER_STATUS_TYPE,
    TimeServerSpec,
    TimeServerStatus,
)

#: Every definition, in the order of netd.md §2.1, then DevicesStatus and Identity.
ALL_DEFINITIONS: list[ResourceDefinition] = [
    ADDRESS_SPEC_DEFINITION,
    ADDRESS_STATUS_DEFINITION,
    LINK_SPEC_DEFINITION,
    LINK_STATUS_DEFINITION,
    ROUTE_SPEC_DEFINITION,
    ROUTE_STATUS_DEFINITION,
    ROUTING_RULE_SPEC_DEFINITION,
    ROUTING_RULE_STATUS_DEFINITION,
    HOSTNAME_SPEC_DEFINITION,
    HOSTNAME_STATUS_DEFINITION,
    RESOLVER_SPEC_DEFINITION,
    RESOLVER_STATUS_DEFINITION,
    TIME_SERVER_SPEC_DEFINITION,
    TIME_SERVER_STATUS_DEFINITION,
    OPERATOR_SPEC_DEFINITION,
    OPERATOR_STATUS_DEFINITION,
    NODE_ADDRESS_DEFINITION,
    NODE_ADDRESS_FILTER_DEFINITION,
    NETWORK_STATUS_DEFINITION,
    DEVICE_CONFIG_SPEC_DEFINITION,
    HARDWARE_ADDR_DEFINITION,
    NFTABLES_CHAIN_DEFINITION,
    PROBE_SPEC_DEFINITION,
    PROBE_STATUS_DEFINITION,
    LINK_REFRESH_DEFINITION,
    ETC_FILE_SPEC_DEFINITION,
    ETC_FILE_STATUS_DEFINITION,
    DEVICES_STATUS_DEFINITION,
    IDENTITY_DEFINITION,
]

#: Namespaces networking uses, with descriptions.
NAMESPACES: dict[str, str] = dict(DESCRIPTIONS)


def register_all(state: State) -> None:
    """Register every networking resource definition and namespace with ``state``."""
    for name, description in NAMESPACES.items():
        state.add_namespace(name, description)
    for d in ALL_DEFINITIONS:
        state.register(d)
    # The machine config is an input of networking, not one of its types.
    state.register(MACHINE_CONFIG_DEFINITION)


def definition_for(model: type[Spec]) -> ResourceDefinition:
    """The definition whose spec model is ``model`` (KeyError if none)."""
    for d in ALL_DEFINITIONS:
        if d.spec_model is model:
            return d
    raise KeyError(model.__name__)


__all__ = [
    "ADDRESS_SPEC_TYPE",
    "ADDRESS_STATUS_TYPE",
    "ALL_DEFINITIONS",
    "CLUSTER",
    "CONFIG",
    "DEVICES_STATUS_TYPE",
    "DEVICE_CONFIG_SPEC_TYPE",
    "ETC_FILE_SPEC_TYPE",
    "ETC_FILE_STATUS_TYPE",
    "FILES",
    "HARDWARE_ADDR_TYPE",
    "HOSTNAME_SPEC_TYPE",
    "HOSTNAME_STATUS_TYPE",
    "IDENTITY_TYPE",
    "LINK_REFRESH_TYPE",
    "LINK_SPEC_TYPE",
    "LINK_STATUS_TYPE",
    "MACHINE_CONFIG_ID",
    "MACHINE_CONFIG_TYPE",
    "NAMESPACES",
    "NETWORK",
    "NETWORK_CONFIG",
    "NETWORK_STATUS_TYPE",
    "NFTABLES_CHAIN_TYPE",
    "NODE_ADDRESS_FILTER_TYPE",
    "NODE_ADDRESS_TYPE",
    "OPERATOR_SPEC_TYPE",
    "OPERATOR_STATUS_TYPE",
    "PROBE_SPEC_TYPE",
    "PROBE_STATUS_TYPE",
    "RESOLVER_SPEC_TYPE",
    "RESOLVER_STATUS_TYPE",
    "ROUTE_SPEC_TYPE",
    "ROUTE_STATUS_TYPE",
    "ROUTING_RULE_SPEC_TYPE",
    "ROUTING_RULE_STATUS_TYPE",
    "RUNTIME",
    "TIME_SERVER_SPEC_TYPE",
    "TIME_SERVER_STATUS_TYPE",
    "AddressSpec",
    "AddressStatus",
    "BondMasterSpec",
    "BridgeMasterSpec",
    "BridgeSlave",
    "DeviceConfigSpec",
    "DevicesStatus",
    "EtcFileSpec",
    "EtcFileStatus",
    "HardwareAddr",
    "HostnameSpec",
    "HostnameStatus",
    "Identity",
    "LinkRefresh",
    "LinkSpec",
    "LinkStatus",
    "MachineConfigSpec",
    "NetworkStatus",
    "NfTablesChain",
    "NfTablesRule",
    "NodeAddress",
    "NodeAddressFilter",
    "OperatorSpec",
    "OperatorStatusSpec",
    "ProbeSpec",
    "ProbeStatus",
    "ResolverSpec",
    "ResolverStatus",
    "RouteSpec",
    "RouteStatus",
    "RoutingRuleSpec",
    "RoutingRuleStatus",
    "STPSpec",
    "Spec",
    "TimeServerSpec",
    "TimeServerStatus",
    "VLANSpec",
    "WireguardPeer",
    "WireguardSpec",
    "definition_for",
    "is_zero",
    "register_all",
]
