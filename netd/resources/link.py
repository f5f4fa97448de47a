"""LinkSpec and LinkStatus with their nested specs (netd.md §2.4, §2.5)."""

from __future__ import annotations

import datetime as dt

from pydantic import Field

from cosi import ResourceDefinition
from netd.resources.base import Duration, IPPrefix, OptTime, Spec
from netd.resources.enums import (
    ADSelect,
    ARPAllTargets,
    ARPValidate,
    BondMode,
    BondXmitHashPolicy,
    ConfigLayer,
    Duplex,
    FailOverMAC,
    LACPRate,
    LinkFlags,
    LinkType,
    OperationalState,
    Port,
    PrimaryReselect,
    VLANProtocol,
)
from netd.resources.namespaces import NETWORK

LINK_SPEC_TYPE = "LinkSpecs.net.talos.dev"
LINK_STATUS_TYPE = "LinkStatuses.net.talos.dev"


class VLANSpec(Spec):
    vlan_id: int = Field(default=0, alias="vlanID")
    vlan_protocol: VLANProtocol = VLANProtocol(0)


class BondMasterSpec(Spec):
    OMITEMPTY = frozenset(
        {
            "primary",
            "ad_select",
            "miimon",
            "updelay",
            "downdelay",
            "arp_interval",
            "resend_igmp",
            "min_links",
            "lp_interval",
            "packets_per_slave",
            "num_peer_notif",
            "tlb_logical_lb",
            "all_slaves_active",
            "use_carrier",
            "ad_actor_sys_prio",
            "ad_user_port_key",
            "peer_notify_delay",
        }
    )

    mode: BondMode = BondMode.BALANCE_RR
    xmit_hash_policy: BondXmitHashPolicy = BondXmitHashPolicy.LAYER2
    lacp_rate: LACPRate = LACPRate.SLOW
    arp_validate: ARPValidate = ARPValidate.NONE
    arp_all_targets: ARPAllTargets = ARPAllTargets.ANY
    primary: int = 0  # ifindex of the primary slave
    primary_reselect: PrimaryReselect = PrimaryReselect.ALWAYS
    fail_over_mac: FailOverMAC = FailOverMAC.NONE
    ad_select: ADSelect = ADSelect.STABLE
    miimon: int = 0
    updelay: int = 0
    downdelay: int = 0
    arp_interval: int = 0
    resend_igmp: int = 0
    min_links: int = 0
    lp_interval: int = 0
    packets_per_slave: int = 0
    num_peer_notif: int = 0
    tlb_logical_lb: int = 0
    all_slaves_active: int = 0
    use_carrier: bool = False
    ad_actor_sys_prio: int = 0
    ad_user_port_key: int = 0
    peer_notify_delay: int = 0

    def with_defaults(self) -> BondMasterSpec:
        """The kernel's defaults filled in (netd.md §5.1), so the spec equals what the
        kernel reports back: resendIgmp/lpInterval/packetsPerSlave/numPeerNotif 0→1,
        tlbLogicalLb 1 unless balance-tlb/alb, adActorSysPrio 65535 for 802.3ad."""
        upd: dict[str, int] = {}
        for name in ("resend_igmp", "lp_interval", "packets_per_slave", "num_peer_notif"):
            if getattr(self, name) == 0:
                upd[name] = 1
        if self.mode not in (BondMode.BALANCE_TLB, BondMode.BALANCE_ALB):
            upd["tlb_logical_lb"] = 1
        if self.mode == BondMode.IEEE8023AD:
            upd["ad_actor_sys_prio"] = 65535
        return self.model_copy(update=upd)


class STPSpec(Spec):
    enabled: bool = False


class BridgeMasterSpec(Spec):
    OMITEMPTY = frozenset({"stp"})

    stp: STPSpec = Field(default_factory=STPSpec)


class BridgeSlave(Spec):
    OMITEMPTY = frozenset({"master_name"})

    master_name: str = ""


class WireguardPeer(Spec):
    """A peer. The last three fields are LinkStatus only (the device's session: last
    handshake, bytes received and sent); omitted when zero, so a LinkSpec never shows them."""

    OMITEMPTY = frozenset({"last_handshake_time", "rx_bytes", "tx_bytes"})

    public_key: str = ""
    preshared_key: str = ""
    endpoint: str = ""  # host:port
    persistent_keepalive_interval: Duration = dt.timedelta(0)
    allowed_ips: list[IPPrefix] = Field(default_factory=list, alias="allowedIPs")
    last_handshake_time: OptTime = None
    rx_bytes: int = 0
    tx_bytes: int = 0


class WireguardSpec(Spec):
    """``privateKey`` only in LinkSpec, ``publicKey`` only in LinkStatus."""

    OMITEMPTY = frozenset({"private_key", "public_key"})

    private_key: str = ""
    public_key: str = ""
    listen_port: int = 0
    firewall_mark: int = 0
    peers: list[WireguardPeer] = Field(default_factory=list)

    def sorted(self) -> WireguardSpec:
        """Peers by public key, allowed IPs by address then prefix length (netd.md §5.1)."""
        peers = [
            p.model_copy(
                update={
                    "allowed_ips": sorted(
                        p.allowed_ips, key=lambda x: (x.version, int(x.ip), x.network.prefixlen)
                    )
                }
            )
            for p in sorted(self.peers, key=lambda p: p.public_key)
        ]
        return self.model_copy(update={"peers": peers})

    def matches(self, existing: WireguardSpec) -> bool:
        """Whether the kernel state ``existing`` satisfies this desired spec (netd.md §5.1 step 5):
        listen port 0 and an empty peer endpoint mean "any"."""
        want, have = self.sorted(), existing.sorted()
        if want.private_key != have.private_key or want.firewall_mark != have.firewall_mark:
            return False
        if want.listen_port not in (0, have.listen_port) or len(want.peers) != len(have.peers):
            return False
        for a, b in zip(want.peers, have.peers, strict=True):
            if (a.public_key, a.preshared_key, a.persistent_keepalive_interval, a.allowed_ips) != (
                b.public_key,
                b.preshared_key,
                b.persistent_keepalive_interval,
                b.allowed_ips,
            ):
                return False
            if a.endpoint and a.endpoint != b.endpoint:
                return False
        return True

    def merged(self, other: WireguardSpec) -> WireguardSpec:
        """Link merge of a higher layer's wireguard spec into this one (netd.md §4.3)."""
        if other.is_zero():
            return self
        if self.is_zero():
            return other.model_copy(deep=True)
        upd: dict[str, object] = {}
        if other.listen_port:
            upd["listen_port"] = other.listen_port
        if other.firewall_mark:
            upd["firewall_mark"] = other.firewall_mark
        if other.private_key:
            upd["private_key"] = other.private_key
        known = {p.public_key for p in self.peers}
        peers = list(self.peers)
        for p in other.peers:
            if p.public_key not in known:  # once per key, also within ``other``
                known.add(p.public_key)
                peers.append(p)
        upd["peers"] = peers
        return self.model_copy(update=upd)


class LinkSpec(Spec):
    """A desired link; ``masterName``/``slaveIndex`` are the inlined bond-slave pair."""

    OMITEMPTY = frozenset(
        {
            "parent_name",
            "master_name",
            "slave_index",
            "bridge_slave",
            "vlan",
            "bond_master",
            "bridge_master",
            "wireguard",
        }
    )
    OMITNONE = frozenset({"multicast"})

    name: str = ""
    logical: bool = False
    up: bool = False
    mtu: int = 0
    kind: str = ""
    type: LinkType = LinkType.NETROM
    parent_name: str = ""
    master_name: str = ""
    slave_index: int = 0
    bridge_slave: BridgeSlave = Field(default_factory=BridgeSlave)
    vlan: VLANSpec = Field(default_factory=VLANSpec)
    bond_master: BondMasterSpec = Field(default_factory=BondMasterSpec)
    bridge_master: BridgeMasterSpec = Field(default_factory=BridgeMasterSpec)
    wireguard: WireguardSpec = Field(default_factory=WireguardSpec)
    #: IFF_MULTICAST wanted (LinkConfig ``multicast``); None = left as the kernel has it.
    multicast: bool | None = None
    layer: ConfigLayer = ConfigLayer.DEFAULT

    def id(self) -> str:
        return self.name

    def merged(self, higher: LinkSpec) -> LinkSpec:
        """Fold a higher-layer spec of the same link into this one (netd.md §4.3): each
        field (or unit) is overridden only by a non-zero value; wireguard specs merge;
        the layer is the higher spec's."""
        upd: dict[str, object] = {}
        for name in ("logical", "up", "mtu", "kind", "type", "parent_name"):
            value = getattr(higher, name)
            if value:
                upd[name] = value
        if higher.master_name or higher.slave_index:
            upd["master_name"], upd["slave_index"] = higher.master_name, higher.slave_index
        for name in ("vlan", "bond_master", "bridge_master", "bridge_slave"):
            value = getattr(higher, name)
            if not value.is_zero():
                upd[name] = value.model_copy(deep=True)
        if higher.multicast is not None:
            upd["multicast"] = higher.multicast
        upd["wireguard"] = self.wireguard.merged(higher.wireguard)
        upd["layer"] = higher.layer
        return self.model_copy(update=upd)


def format_hardware_addr(raw: bytes) -> str:
    """A MAC (or any link-layer address) as lower-case colon hex; ``""`` when empty."""
    return ":".join(f"{b:02x}" for b in raw)


class LinkStatus(Spec):
    """A kernel link as observed."""

    OMITEMPTY = frozenset(
        {
            "master_index",
            "bus_path",
            "pci_id",
            "driver",
            "driver_version",
            "firmware_version",
            "product_id",
            "vendor_id",
            "product",
            "vendor",
            "speed_mbit",
            "vlan",
            "bridge_master",
            "bond_master",
            "wireguard",
        }
    )

    index: int = 0
    type: LinkType = LinkType.NETROM
    link_index: int = 0
    flags: LinkFlags = LinkFlags(0)
    hardware_addr: str = ""
    permanent_addr: str = ""
    broadcast_addr: str = ""
    mtu: int = 0
    queue_disc: str = ""
    master_index: int = 0
    operational_state: OperationalState = OperationalState.UNKNOWN
    kind: str = ""
    slave_kind: str = ""
    bus_path: str = ""
    pci_id: str = Field(default="", alias="pciID")
    driver: str = ""
    driver_version: str = ""
    firmware_version: str = ""
    product_id: str = Field(default="", alias="productID")
    vendor_id: str = Field(default="", alias="vendorID")
    product: str = ""
    vendor: str = ""
    link_state: bool = False
    speed_mbit: int = 0
    port: Port = Port.TWISTED_PAIR
    duplex: Duplex = Duplex.HALF
    vlan: VLANSpec = Field(default_factory=VLANSpec)
    bridge_master: BridgeMasterSpec = Field(default_factory=BridgeMasterSpec)
    bond_master: BondMasterSpec = Field(default_factory=BondMasterSpec)
    wireguard: WireguardSpec = Field(default_factory=WireguardSpec)

    def physical(self) -> bool:
        """A link is physical iff its type is ``ether`` and it has no kind (netd.md §2.5)."""
        return self.type == LinkType.ETHER and self.kind == ""


LINK_SPEC_DEFINITION = ResourceDefinition(
    type=LINK_SPEC_TYPE,
    display_type="LinkSpec",
    default_namespace=NETWORK,
    spec_model=LinkSpec,
    sensitive=True,
)
LINK_STATUS_DEFINITION = ResourceDefinition(
    type=LINK_STATUS_TYPE,
    display_type="LinkStatus",
    default_namespace=NETWORK,
    spec_model=LinkStatus,
    aliases=("link", "links"),
    print_columns=(
        ("TYPE", "{.type}"),
        ("KIND", "{.kind}"),
        ("HW ADDR", "{.hardwareAddr}"),
        ("OPER STATE", "{.operationalState}"),
        ("LINK STATE", "{.linkState}"),
    ),
)


LINK_REFRESH_TYPE = "LinkRefreshes.net.talos.dev"


class LinkRefresh(Spec):
    """ID ``wireguard``: bumped after each wireguard reconfiguration (netd.md §2.14)."""

    generation: int = 0

    def bumped(self) -> LinkRefresh:
        return LinkRefresh(generation=self.generation + 1)


LINK_REFRESH_DEFINITION = ResourceDefinition(
    type=LINK_REFRESH_TYPE,
    display_type="LinkRefresh",
    default_namespace=NETWORK,
    spec_model=LinkRefresh,
)
