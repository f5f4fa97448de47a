"""The machine configuration: YAML 1.2 loading, models and validation (config.md Part A).

Entry points: :func:`load_config` (text) and :func:`load_config_file` (path), both
returning a :class:`LoadedConfig` or raising :class:`ConfigError` with every problem.
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
    MachineConfig,
    NetworkConfig,
    NetworkDefaultActionConfig,
    NetworkDeviceSelector,
    NetworkKubeSpan,
    NetworkRuleConfig,
    Route,
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
    "RulePortSelector",
    "Vlan",
    "format_path",
    "load_config",
    "load_config_file",
    "parse_go_duration",
    "parse_ip_or_cidr",
]
