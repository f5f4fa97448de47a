"""Pydantic models of the networking subset of the Talos v1.6 machine config (config.md Part A).

Attributes are snake_case; the documented camelCase YAML keys are the aliases.
The models check the *shape* of values (types, integer ranges); the rules of
config.md (addresses, bond modes, cross-device checks, ...) live in
:mod:`netd.config.validate`, which reports every problem with its YAML path.

Values are kept as written (addresses stay text), with these documented
substitutions applied in the model so consumers see the effective value:
``Route.metric`` and ``DHCPOptions.route_metric`` 0 -> 1024,
``NetworkKubeSpan.mtu`` unset/0 -> 1420, ``ClusterNetworkConfig.dns_domain``
"" -> ``cluster.local``, empty ``pod_subnets``/``service_subnets`` -> the
defaults, discovery ``endpoint`` "" -> ``https://discovery.talos.dev/``.
Bond values stay raw (0 means unset); the link-spec builder applies the
"0 -> 1" and "forced" adjustments of config.md §A.8.
Booleans whose default is true when unset (``useCarrier``, ``stp.enabled``,
``dhcpOptions.ipv4``, ``harvestExtraEndpoints``) default to True.

Unknown keys are detected before the models run (netd.config.allowlist), so
the models themselves ignore extra keys.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from netd.netip import Prefix

from .types import Int64, Port, StrList, UInt8, UInt16, UInt32, YBool, YStr

DEFAULT_ROUTE_METRIC = 1024
DEFAULT_KUBESPAN_MTU = 1420
DEFAULT_DNS_DOMAIN = "cluster.local"
DEFAULT_POD_SUBNETS = ("10.244.0.0/16",)
DEFAULT_SERVICE_SUBNETS = ("10.96.0.0/12",)
DEFAULT_DISCOVERY_ENDPOINT = "https://discovery.talos.dev/"

BOND_MODES = (
    "balance-rr",
    "active-backup",
    "balance-xor",
    "broadcast",
    "802.3ad",
    "balance-tlb",
    "balance-alb",
)
BOND_XMIT_HASH_POLICIES = ("layer2", "layer3+4", "layer2+3", "encap2+3", "encap3+4")
BOND_LACP_RATES = ("slow", "fast")
BOND_ARP_VALIDATE = ("none", "active", "backup", "all")
BOND_ARP_ALL_TARGETS = ("any", "all")
BOND_PRIMARY_RESELECT = ("always", "better", "failure")
BOND_FAIL_OVER_MAC = ("none", "active", "follow")
BOND_AD_SELECT = ("stable", "bandwidth", "count")
FIREWALL_PROTOCOLS = ("tcp", "udp", "icmp", "icmpv6")
DEFAULT_ACTIONS = ("accept", "block")
ROUTING_RULE_ACTIONS = ("unicast", "blackhole", "unreachable", "prohibit")
#: Model fields beyond the v1.6 keys, set only when a LinkConfig document is turned
#: into a Device (routing-rules.md §5); the v1.6 allow-list rejects them in YAML.
BEYOND_V16: dict[str, frozenset[str]] = {
    "Device": frozenset({"up", "multicast"}),
    "Route": frozenset({"table"}),
}
MACHINE_TYPES = ("controlplane", "init", "worker", "join")


def _prefixes(addresses: list[str], cidr: str) -> list[Prefix]:
    from .validate import parse_ip_or_cidr

    return [parse_ip_or_cidr(a) for a in (addresses or ([cidr] if cidr else []))]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        populate_by_name=True,
        frozen=True,
        arbitrary_types_allowed=False,
    )

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        # `key: ~` or `key:` means "unset", as with Go's decoder.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data


# --------------------------------------------------------------------------- machine.network


class NetworkDeviceSelector(_Model):
    bus_path: YStr = Field("", alias="busPath")
    hardware_addr: YStr = Field("", alias="hardwareAddr")
    pci_id: YStr = Field("", alias="pciID")
    driver: YStr = Field("", alias="driver")

    def is_empty(self) -> bool:
        return not (self.bus_path or self.hardware_addr or self.pci_id or self.driver)


class Route(_Model):
    network: YStr = ""
    gateway: YStr = ""
    source: YStr = ""
    metric: UInt32 = DEFAULT_ROUTE_METRIC
    mtu: UInt32 = 0
    table: YStr | None = None
    """Only from a LinkConfig route (routing-rules.md §5); v1.6's ``routes[]`` has no
    ``table`` (the v1.6 allow-list rejects the key). None = main."""

    @field_validator("metric")
    @classmethod
    def _metric_default(cls, v: int) -> int:
        return v or DEFAULT_ROUTE_METRIC


class Bond(_Model):
    interfaces: StrList = []
    device_selectors: list[NetworkDeviceSelector] = Field([], alias="deviceSelectors")
    arp_ip_target: StrList = Field([], alias="arpIPTarget")
    mode: YStr = ""
    xmit_hash_policy: YStr = Field("", alias="xmitHashPolicy")
    lacp_rate: YStr = Field("", alias="lacpRate")
    ad_actor_system: YStr = Field("", alias="adActorSystem")
    arp_validate: YStr = Field("", alias="arpValidate")
    arp_all_targets: YStr = Field("", alias="arpAllTargets")
    primary: YStr = ""
    primary_reselect: YStr = Field("", alias="primaryReselect")
    fail_over_mac: YStr = Field("", alias="failOverMac")
    ad_select: YStr = Field("", alias="adSelect")
    miimon: UInt32 = 0
    updelay: UInt32 = 0
    downdelay: UInt32 = 0
    arp_interval: UInt32 = Field(0, alias="arpInterval")
    resend_igmp: UInt32 = Field(0, alias="resendIgmp")
    min_links: UInt32 = Field(0, alias="minLinks")
    lp_interval: UInt32 = Field(0, alias="lpInterval")
    packets_per_slave: UInt32 = Field(0, alias="packetsPerSlave")
    num_peer_notif: UInt8 = Field(0, alias="numPeerNotif")
    tlb_dynamic_lb: UInt8 = Field(0, alias="tlbDynamicLb")
    all_slaves_active: UInt8 = Field(0, alias="allSlavesActive")
    use_carrier: YBool = Field(True, alias="useCarrier")
    ad_actor_sys_prio: UInt16 = Field(0, alias="adActorSysPrio")
    ad_user_port_key: UInt16 = Field(0, alias="adUserPortKey")
    peer_notify_delay: UInt32 = Field(0, alias="peerNotifyDelay")

    @property
    def effective_mode(self) -> str:
        """The mode name (``balance-rr`` when empty or unknown)."""
        return self.mode if self.mode in BOND_MODES else "balance-rr"


class STP(_Model):
    enabled: YBool = True


class Bridge(_Model):
    interfaces: StrList = []
    stp: STP = STP()


class DHCPOptions(_Model):
    route_metric: UInt32 = Field(DEFAULT_ROUTE_METRIC, alias="routeMetric")
    ipv4: YBool = True
    ipv6: YBool = False
    duidv6: YStr = ""

    @field_validator("route_metric")
    @classmethod
    def _metric_default(cls, v: int) -> int:
        return v or DEFAULT_ROUTE_METRIC


class VIPEquinixMetalConfig(_Model):
    api_token: YStr = Field("", alias="apiToken")


class VIPHCloudConfig(_Model):
    api_token: YStr = Field("", alias="apiToken")


class DeviceVIPConfig(_Model):
    ip: YStr = ""
    equinix_metal: VIPEquinixMetalConfig | None = Field(None, alias="equinixMetal")
    hcloud: VIPHCloudConfig | None = None

    @property
    def gratuitous_arp(self) -> bool:
        return self.equinix_metal is None and self.hcloud is None


class DeviceWireguardPeer(_Model):
    public_key: YStr = Field("", alias="publicKey")
    endpoint: YStr = ""
    persistent_keepalive_interval: YStr = Field("", alias="persistentKeepaliveInterval")
    """Go duration text (``25s``); an integer is nanoseconds. See ``keepalive_seconds``."""
    allowed_ips: StrList = Field([], alias="allowedIPs")

    @property
    def keepalive_seconds(self) -> float:
        from .validate import parse_go_duration

        return parse_go_duration(self.persistent_keepalive_interval or "0")


class DeviceWireguardConfig(_Model):
    private_key: YStr = Field("", alias="privateKey")
    listen_port: Int64 = Field(0, alias="listenPort")
    firewall_mark: Int64 = Field(0, alias="firewallMark")
    peers: list[DeviceWireguardPeer] = []


class Vlan(_Model):
    addresses: StrList = []
    cidr: YStr = ""
    routes: list[Route] = []
    dhcp: YBool = False
    vlan_id: UInt16 = Field(0, alias="vlanId")
    mtu: UInt32 = 0
    vip: DeviceVIPConfig | None = None
    dhcp_options: DHCPOptions | None = Field(None, alias="dhcpOptions")

    def prefixes(self) -> list[Prefix]:
        """``addresses`` (or the deprecated ``cidr``) parsed; bare IPs are /32 or /128."""
        return _prefixes(self.addresses, self.cidr)


class Device(_Model):
    """One ``machine.network.interfaces[]`` entry."""

    interface: YStr = ""
    device_selector: NetworkDeviceSelector | None = Field(None, alias="deviceSelector")
    addresses: StrList = []
    cidr: YStr = ""
    routes: list[Route] = []
    bond: Bond | None = None
    bridge: Bridge | None = None
    vlans: list[Vlan] = []
    mtu: UInt32 = 0
    dhcp: YBool = False
    ignore: YBool = False
    dummy: YBool = False
    dhcp_options: DHCPOptions | None = Field(None, alias="dhcpOptions")
    wireguard: DeviceWireguardConfig | None = None
    vip: DeviceVIPConfig | None = None
    up: YBool | None = None
    """Only from a LinkConfig (routing-rules.md §5; v1.6 has no such key). None = up."""
    multicast: YBool | None = None
    """Only from a LinkConfig: the link's IFF_MULTICAST flag. None = as the kernel has it."""

    def prefixes(self) -> list[Prefix]:
        """``addresses`` (or the deprecated ``cidr``) parsed; bare IPs are /32 or /128."""
        return _prefixes(self.addresses, self.cidr)


class ExtraHost(_Model):
    ip: YStr = ""
    aliases: StrList = []


class KubeSpanFilters(_Model):
    endpoints: StrList = []
    """Empty (absent or ``[]``) means no filtering."""


class NetworkKubeSpan(_Model):
    enabled: YBool = False
    advertise_kubernetes_networks: YBool = Field(False, alias="advertiseKubernetesNetworks")
    allow_down_peer_bypass: YBool = Field(False, alias="allowDownPeerBypass")
    harvest_extra_endpoints: YBool = Field(True, alias="harvestExtraEndpoints")
    mtu: UInt32 = DEFAULT_KUBESPAN_MTU
    filters: KubeSpanFilters = KubeSpanFilters()

    @field_validator("mtu")
    @classmethod
    def _mtu_default(cls, v: int) -> int:
        return v or DEFAULT_KUBESPAN_MTU

    @property
    def force_routing(self) -> bool:
        return not self.allow_down_peer_bypass


class NetworkConfig(_Model):
    hostname: YStr = ""
    interfaces: list[Device] = []
    nameservers: StrList = []
    extra_host_entries: list[ExtraHost] = Field([], alias="extraHostEntries")
    kubespan: NetworkKubeSpan = NetworkKubeSpan()
    disable_search_domain: YBool = Field(False, alias="disableSearchDomain")


# --------------------------------------------------------------------------- other machine keys read


class TimeConfig(_Model):
    disabled: YBool = False
    servers: StrList = []
    boot_timeout: YStr = Field("", alias="bootTimeout")


class FeaturesConfig(_Model):
    stable_hostname: YBool = Field(False, alias="stableHostname")


class MachineConfig(_Model):
    type: YStr = ""
    network: NetworkConfig = NetworkConfig()
    time: TimeConfig = TimeConfig()
    features: FeaturesConfig = FeaturesConfig()

    @property
    def is_control_plane(self) -> bool:
        return self.type in ("controlplane", "init")


# --------------------------------------------------------------------------- cluster


class FlannelCNIConfig(_Model):
    extra_args: StrList = Field([], alias="extraArgs")


class CNIConfig(_Model):
    name: YStr = ""
    urls: StrList = []
    flannel: FlannelCNIConfig | None = None


class ClusterNetworkConfig(_Model):
    cni: CNIConfig | None = None
    dns_domain: YStr = Field(DEFAULT_DNS_DOMAIN, alias="dnsDomain")
    pod_subnets: StrList = Field(list(DEFAULT_POD_SUBNETS), alias="podSubnets")
    service_subnets: StrList = Field(list(DEFAULT_SERVICE_SUBNETS), alias="serviceSubnets")

    @field_validator("dns_domain")
    @classmethod
    def _dns_default(cls, v: str) -> str:
        return v or DEFAULT_DNS_DOMAIN

    @field_validator("pod_subnets")
    @classmethod
    def _pods_default(cls, v: list[str]) -> list[str]:
        return v or list(DEFAULT_POD_SUBNETS)

    @field_validator("service_subnets")
    @classmethod
    def _services_default(cls, v: list[str]) -> list[str]:
        return v or list(DEFAULT_SERVICE_SUBNETS)


class RegistryKubernetesConfig(_Model):
    disabled: YBool = False


class RegistryServiceConfig(_Model):
    disabled: YBool = False
    endpoint: YStr = DEFAULT_DISCOVERY_ENDPOINT

    @field_validator("endpoint")
    @classmethod
    def _endpoint_default(cls, v: str) -> str:
        return v or DEFAULT_DISCOVERY_ENDPOINT


class DiscoveryRegistriesConfig(_Model):
    kubernetes: RegistryKubernetesConfig = RegistryKubernetesConfig()
    service: RegistryServiceConfig = RegistryServiceConfig()


class ClusterDiscoveryConfig(_Model):
    enabled: YBool = False
    registries: DiscoveryRegistriesConfig = DiscoveryRegistriesConfig()

    @property
    def kubernetes_registry_enabled(self) -> bool:
        return self.enabled and not self.registries.kubernetes.disabled

    @property
    def service_registry_enabled(self) -> bool:
        return self.enabled and not self.registries.service.disabled


class ControlPlaneConfig(_Model):
    endpoint: YStr = ""


class ClusterConfig(_Model):
    id: YStr = ""
    secret: YStr = ""
    control_plane: ControlPlaneConfig | None = Field(None, alias="controlPlane")
    network: ClusterNetworkConfig = ClusterNetworkConfig()
    discovery: ClusterDiscoveryConfig = ClusterDiscoveryConfig()


# --------------------------------------------------------------------------- documents


class Config(_Model):
    """The v1alpha1 document (only the keys networking reads are modelled).

    ``machine`` and ``cluster`` are always objects (all defaults when absent);
    ``has_machine`` / ``has_cluster`` tell whether the sections were given.
    """

    version: YStr = ""
    debug: YBool = False
    persist: YBool = False
    machine: MachineConfig = MachineConfig()
    cluster: ClusterConfig = ClusterConfig()

    @property
    def has_machine(self) -> bool:
        return "machine" in self.model_fields_set

    @property
    def has_cluster(self) -> bool:
        return "cluster" in self.model_fields_set

    @property
    def network(self) -> NetworkConfig:
        """``machine.network`` (all defaults when absent)."""
        return self.machine.network


class RulePortSelector(_Model):
    ports: list[Port] = []
    protocol: YStr = ""


class IngressRule(_Model):
    subnet: YStr = ""
    except_: YStr = Field("", alias="except")


class NetworkRuleConfig(_Model):
    """``kind: NetworkRuleConfig``: one ingress firewall rule."""

    api_version: YStr = Field("v1alpha1", alias="apiVersion")
    kind: Literal["NetworkRuleConfig"] = "NetworkRuleConfig"
    name: YStr = ""
    port_selector: RulePortSelector = Field(RulePortSelector(), alias="portSelector")
    ingress: list[IngressRule] = []


class NetworkDefaultActionConfig(_Model):
    """``kind: NetworkDefaultActionConfig``: the ingress policy for traffic no rule matched."""

    api_version: YStr = Field("v1alpha1", alias="apiVersion")
    kind: Literal["NetworkDefaultActionConfig"] = "NetworkDefaultActionConfig"
    ingress: YStr = "accept"

    @field_validator("ingress")
    @classmethod
    def _action(cls, v: str) -> str:
        if v not in DEFAULT_ACTIONS:
            raise ValueError(f'must be "accept" or "block", not "{v}"')
        return v


# --------------------------------------------------------------------------- policy routing


class RoutingRuleConfig(_Model):
    """``kind: RoutingRuleConfig`` (routing-rules.md §1): one policy routing rule.

    Values stay as written; :func:`netd.config.routing.check_routing_rule` checks
    them and the ``priority``/``table_number`` helpers give the parsed values.
    """

    api_version: YStr = Field("v1alpha1", alias="apiVersion")
    kind: Literal["RoutingRuleConfig"] = "RoutingRuleConfig"
    name: YStr = ""
    src: YStr = ""
    dst: YStr = ""
    table: YStr = ""
    action: YStr = "unicast"
    iif_name: YStr = Field("", alias="iifName")
    oif_name: YStr = Field("", alias="oifName")
    fw_mark: UInt32 = Field(0, alias="fwMark")
    fw_mask: UInt32 = Field(0, alias="fwMask")

    @property
    def priority(self) -> int:
        """The rule priority: the document's name (valid once the config is loaded)."""
        return int(self.name)

    @property
    def has_fw_mark(self) -> bool:
        return "fw_mark" in self.model_fields_set


class LinkAddressConfig(_Model):
    address: YStr = ""
    route_priority: UInt32 = Field(0, alias="routePriority")


class LinkRouteConfig(_Model):
    destination: YStr = ""
    gateway: YStr = ""
    source: YStr = ""
    metric: UInt32 = 0
    mtu: UInt32 = 0
    table: YStr = ""


class LinkConfig(_Model):
    """``kind: LinkConfig`` (routing-rules.md §5): one link's settings, addresses and routes."""

    api_version: YStr = Field("v1alpha1", alias="apiVersion")
    kind: Literal["LinkConfig"] = "LinkConfig"
    name: YStr = ""
    up: YBool = True
    mtu: UInt32 = 0
    addresses: list[LinkAddressConfig] = []
    routes: list[LinkRouteConfig] = []
    multicast: YBool | None = None

    def as_device(self) -> Device:
        """The ``machine.network.interfaces[]`` entry this document stands for, so the
        link, address and route config controllers treat both the same way (same ids,
        same defaults); only ``up`` and the routes' ``table`` go beyond v1.6."""
        return Device(
            interface=self.name,
            mtu=self.mtu,
            addresses=[a.address for a in self.addresses],
            routes=[
                Route(
                    network=r.destination,
                    gateway=r.gateway,
                    source=r.source,
                    metric=r.metric,
                    mtu=r.mtu,
                    table=r.table or None,
                )
                for r in self.routes
            ],
            up=self.up,
            multicast=self.multicast,
        )


# --------------------------------------------------------------------------- KubeSpan static peers


class KubeSpanPeerConfig(_Model):
    """``kind: KubeSpanPeerConfig`` (our extension, issue 13): a machine that is not a node
    (a laptop, a CI runner) as a static WireGuard peer on every node's ``kubespan`` link.

    Values stay as written; :func:`netd.config.kubespan_peer.check_kubespan_peer` checks
    them (``publicKey`` a WireGuard key, ``allowedIPs`` prefixes, ``endpoint`` ip:port).
    ``netctl kubespan showconf`` writes one.
    """

    api_version: YStr = Field("v1alpha1", alias="apiVersion")
    kind: Literal["KubeSpanPeerConfig"] = "KubeSpanPeerConfig"
    name: YStr = ""
    public_key: YStr = Field("", alias="publicKey")
    allowed_ips: StrList = Field([], alias="allowedIPs")
    endpoint: YStr = ""
