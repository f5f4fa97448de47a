"""The machine configuration: YAML 1.2 loading, models and validation (config.md Part A).

Entry points::

    loaded = load_config(text)            # or load_config_file(path); strict=True: warnings are errors
    loaded.config                         # Config (the v1alpha1 document) or None
    loaded.config.network                 # NetworkConfig (= machine.network, defaults when absent)
    loaded.config.network.interfaces[i]   # Device: .interface, .device_selector, .addresses, .prefixes(),
                                          #   .routes[Route], .bond (Bond), .bridge (Bridge), .vlans[Vlan],
                                          #   .dhcp, .dhcp_options (DHCPOptions), .wireguard, .vip, .ignore
    loaded.config.machine.type / .time.servers / .features.stable_hostname
    loaded.config.network.kubespan        # NetworkKubeSpan (mtu 0 -> 1420 applied)
    loaded.config.cluster.discovery / .network / .id / .secret   (has_machine / has_cluster: given?)
    loaded.default_action / loaded.ingress_default   # NetworkDefaultActionConfig / "accept" | "block"
    loaded.rules                          # [NetworkRuleConfig]: .name, .port_selector.ports [PortRange],
                                          #   .port_selector.protocol, .ingress [IngressRule(subnet, except_)]
    loaded.routing_rules                  # [RoutingRuleConfig] (routing-rules.md §1): .priority, .src, .dst,
                                          #   .table, .action, .iif_name, .oif_name, .fw_mark, .fw_mask
    loaded.link_configs                   # [LinkConfig] (§5): .as_device() -> the equivalent Device
    loaded.kubespan_peers                 # [KubeSpanPeerConfig] (our extension): .name, .public_key,
                                          #   .allowed_ips, .endpoint: a machine that is not a node,
                                          #   a static peer on every node's kubespan link
    loaded.warnings                       # [Problem] (str(p) -> "warning: <doc>: <path>: <message>")

Every problem raises one :class:`ConfigError`; ``.problems`` lists them all
(errors and warnings), ``.lines()`` renders ``<doc>: <yaml.path>: <message>``.
"""

from .errors import ConfigError, Problem, format_path
from .loader import LoadedConfig, OtherDocument, load_config, load_config_file
from .models import (
    STP,
    Bond,
    Bridge,
    ClusterConfig,
    ClusterDiscoveryConfig,
    ClusterNetworkConfig,
    Config,
    Device,
    DeviceVIPConfig,
    DeviceWireguardConfig,
    DeviceWireguardPeer,
    DHCPOptions,
    ExtraHost,
    IngressRule,
    KubeSpanPeerConfig,
    LinkAddressConfig,
    LinkConfig,
    LinkRouteConfig,
    MachineConfig,
    NetworkConfig,
    NetworkDefaultActionConfig,
    NetworkDeviceSelector,
    NetworkKubeSpan,
    NetworkRuleConfig,
    Route,
    RoutingRuleConfig,
    RulePortSelector,
    Vlan,
)
from .types import PortRange
from .validate import parse_go_duration, parse_ip_or_cidr

__all__ = [
    "STP",
    "Bond",
    "Bridge",
    "ClusterConfig",
    "ClusterDiscoveryConfig",
    "ClusterNetworkConfig",
    "Config",
    "ConfigError",
    "DHCPOptions",
    "Device",
    "DeviceVIPConfig",
    "DeviceWireguardConfig",
    "DeviceWireguardPeer",
    "ExtraHost",
    "IngressRule",
    "KubeSpanPeerConfig",
    "LinkAddressConfig",
    "LinkConfig",
    "LinkRouteConfig",
    "LoadedConfig",
    "MachineConfig",
    "NetworkConfig",
    "NetworkDefaultActionConfig",
    "NetworkDeviceSelector",
    "NetworkKubeSpan",
    "NetworkRuleConfig",
    "OtherDocument",
    "PortRange",
    "Problem",
    "Route",
    "RoutingRuleConfig",
    "RulePortSelector",
    "Vlan",
    "format_path",
    "load_config",
    "load_config_file",
    "parse_go_duration",
    "parse_ip_or_cidr",
]
