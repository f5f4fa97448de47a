"""Resource ID formats of netd.md §2 (and the VLAN link naming rule of §4.2)."""

from __future__ import annotations

from netd.config.names import vlan_link_name as vlan_link_name
from netd.netip import Addr, Prefix, format_addr, format_prefix
from netd.resources.enums import ConfigLayer, Family, Operator, RoutingTable

# Singleton IDs.
HOSTNAME_ID = "hostname"
RESOLVERS_ID = "resolvers"
TIMESERVERS_ID = "timeservers"
NETWORK_STATUS_ID = "status"
HARDWARE_ADDR_FIRST_ID = "first"
LINK_REFRESH_WIREGUARD_ID = "wireguard"
DEVICES_ID = "devices"
LOCAL_IDENTITY_ID = "local"
ETC_HOSTS_ID = "hosts"
ETC_RESOLV_CONF_ID = "resolv.conf"
INGRESS_CHAIN_ID = "ingress"

# NodeAddress IDs (netd.md §2.9 / §7.1).
NODE_ADDRESS_DEFAULT_ID = "default"
NODE_ADDRESS_CURRENT_ID = "current"
NODE_ADDRESS_ROUTED_ID = "routed"
NODE_ADDRESS_ACCUMULATIVE_ID = "accumulative"
NODE_ADDRESS_FILTER_NO_K8S = "no-k8s"
NODE_ADDRESS_FILTER_ONLY_K8S = "only-k8s"


def _addr(a: Addr | None) -> str:
    return "" if a is None else format_addr(a)


def _prefix(p: Prefix | None) -> str:
    return "" if p is None else format_prefix(p)


def link_id(name: str) -> str:
    """LinkID(name) = name."""
    return name


def address_id(link: str, prefix: Prefix | None) -> str:
    """``eth0/172.20.0.2/24`` (an empty prefix renders as ``""``)."""
    return f"{link}/{_prefix(prefix)}"


def route_id(
    table: RoutingTable | int,
    family: Family | int,
    dst: Prefix | None,
    gateway: Addr | None,
    priority: int,
    out_link: str = "",
) -> str:
    """``[<table>/][<outLink>/ for inet6]<family>/<gw>/<dst>/<priority>``.

    ``inet4/172.20.0.1//1024``, ``eth0/inet6/fe80::1//1024``,
    ``local/lo/inet6//::1/128/0``, ``RoutingTable(180)/inet4//10.244.0.0/16/1``.
    """
    table = RoutingTable.parse(table)
    family = Family.parse(family)
    out = "" if table == RoutingTable.MAIN else f"{table}/"
    if family == Family.INET6:
        out += f"{out_link}/"
    return f"{out}{family}/{_addr(gateway)}/{_prefix(dst)}/{priority}"


def operator_id(operator: Operator | str, link: str) -> str:
    """``dhcp4/eth0``; also the prefix of that operator's network-config spec IDs."""
    op = Operator.parse(operator)
    return f"{op}/{link}"


def operator_spec_id(operator: Operator | str, link: str, natural_id: str) -> str:
    """An operator-produced network-config ID: ``dhcp4/eth0/eth0/172.20.0.2/24``."""
    return f"{operator_id(operator, link)}/{natural_id}"


def layered_id(layer: ConfigLayer | str, natural_id: str) -> str:
    """``default/lo/127.0.0.1/8``, ``configuration/hostname``."""
    return f"{ConfigLayer.parse(layer)}/{natural_id}"


def split_layered_id(id_: str) -> tuple[ConfigLayer, str]:
    """The layer and natural ID of a layered network-config ID (ValueError if not layered)."""
    layer, sep, rest = id_.partition("/")
    if not sep:
        raise ValueError(f"not a layered id: {id_!r}")
    return ConfigLayer.from_name(layer), rest


def device_config_id(interface: str, index: int, match: int | None = None) -> str:
    """``eth0/000``, or ``eth0/000/001`` for the j-th link a device selector matched."""
    out = f"{interface}/{index:03d}"
    return out if match is None else f"{out}/{match:03d}"


def probe_id(endpoint: str) -> str:
    """TCP probe ID: ``tcp:<endpoint>``."""
    return f"tcp:{endpoint}"


def filtered_node_address_id(kind: str, filter_id: str) -> str:
    """``current-no-k8s`` etc.: a NodeAddress kind with a NodeAddressFilter applied."""
    return f"{kind}-{filter_id}"


def external_address_id(addr: Addr) -> str:
    """Platform external IPs as AddressStatus: ``external/10.3.5.7/32``."""
    return f"external/{format_addr(addr)}/{addr.max_prefixlen}"

