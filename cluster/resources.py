"""Resource types of cluster discovery and the KubeSpan identity (kubespan.md §1.2, §3, §5).

Field names and YAML shapes follow the reference's resources (Talos v1.6
``cluster.talos.dev`` / ``kubespan.talos.dev``) so ``netctl get affiliates -o yaml``
reads like ``talosctl get affiliates -o yaml``. Types that hold the cluster
secret, the key derived from it, or the WireGuard private key are marked
``sensitive`` (kubespan.md §1.2, issue 11 part 4): the API reports the flag in
the definition so a reader-role client can be given a redacted copy.
"""

from __future__ import annotations

import base64
import enum
from typing import Annotated, Any

from pydantic import Field, PlainSerializer, PlainValidator

from cosi import ResourceDefinition, State
from netd.netip import Addr, format_addr, parse_addr
from netd.resources.base import IPAddr, IPPrefix, OptAddr, OptPrefix, Spec
from netd.resources.namespaces import CLUSTER, CLUSTER_RAW, KUBESPAN

DISCOVERY_CONFIG_TYPE = "DiscoveryConfigs.cluster.talos.dev"
KUBESPAN_CONFIG_TYPE = "KubeSpanConfigs.kubespan.talos.dev"
AFFILIATE_TYPE = "Affiliates.cluster.talos.dev"
MEMBER_TYPE = "Members.cluster.talos.dev"
KUBESPAN_IDENTITY_TYPE = "KubeSpanIdentities.kubespan.talos.dev"
DISCOVERY_STATUS_TYPE = "DiscoveryServiceStatuses.cluster.talos.dev"

DISCOVERY_CONFIG_ID = "cluster"
KUBESPAN_CONFIG_ID = "kubespan"
KUBESPAN_IDENTITY_ID = "local"
NODE_IDENTITY_ID = "local"

#: Raw affiliates from the discovery service are ``service/<node ID>`` (kubespan.md §4.7).
SERVICE_PREFIX = "service/"
#: The public IP seen by the discovery service: AddressStatus ``cluster``/``service`` (§4.7 step 3).
SERVICE_ADDRESS_ID = "service"
#: The one DiscoveryServiceStatus.
DISCOVERY_STATUS_ID = "service"

NAMESPACE_DESCRIPTIONS: dict[str, str] = {
    CLUSTER_RAW: "Cluster discovery: affiliates as each registry reports them (service/<id>, k8s/<id>).",
    KUBESPAN: "KubeSpan: configuration, WireGuard identity, peers and endpoints.",
}


class MachineType(enum.StrEnum):
    """kubespan.md §4.3 machine_type strings (the resource enum uses the same words)."""

    UNKNOWN = "unknown"
    INIT = "init"
    CONTROLPLANE = "controlplane"
    WORKER = "worker"

    @classmethod
    def parse(cls, value: str) -> MachineType:
        """§4.3: init/controlplane kept, worker/join/empty → worker, anything else → unknown."""
        if value in ("init", "controlplane"):
            return cls(value)
        if value in ("worker", "join", ""):
            return cls.WORKER
        return cls.UNKNOWN


# ---- ip:port endpoints ------------------------------------------------------------------


def format_endpoint(ip: Addr, port: int) -> str:
    """Go's ``netip.AddrPort.String``: ``1.2.3.4:51820``, ``[2001:db8::1]:51820``."""
    text = format_addr(ip)
    return f"[{text}]:{port}" if ip.version == 6 else f"{text}:{port}"


def parse_endpoint(text: str) -> tuple[Addr, int]:
    """The inverse of :func:`format_endpoint`; ValueError naming the text."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"endpoint {text!r}: want ip:port")
    if host.startswith("[") and host.endswith("]"):
        ip = parse_addr(host[1:-1])
        if ip.version != 6:
            raise ValueError(f"endpoint {text!r}: brackets around an IPv4 address")
    else:
        ip = parse_addr(host)
        if ip.version != 4:
            raise ValueError(f"endpoint {text!r}: IPv6 address without brackets")
    return ip, int(port_text)


def _v_endpoint(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"endpoint {value!r}: want ip:port text")
    ip, port = parse_endpoint(value)
    return format_endpoint(ip, port)


#: ``ip:port`` text, normalised (a bad value is a validation error naming it).
EndpointText = Annotated[str, PlainValidator(_v_endpoint)]


def _v_key_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return base64.b64decode(value, validate=True)
    raise ValueError(f"want bytes or base64 text, got {type(value).__name__}")


#: Raw bytes, rendered as standard base64 (Go's ``[]byte`` in YAML/JSON).
KeyBytes = Annotated[
    bytes,
    PlainValidator(_v_key_bytes),
    PlainSerializer(lambda b: base64.b64encode(b).decode(), when_used="json"),
]


# ---- specs --------------------------------------------------------------------------------


class DiscoveryConfigSpec(Spec):
    """``cluster``/``cluster`` (kubespan.md §1.2). Sensitive: holds the AES key."""

    OMITEMPTY = frozenset({"service_endpoint_insecure"})

    discovery_enabled: bool = False
    registry_kubernetes_enabled: bool = False
    registry_service_enabled: bool = False
    service_endpoint: str = ""
    service_endpoint_insecure: bool = False
    service_encryption_key: KeyBytes = b""
    service_cluster_id: str = Field("", alias="serviceClusterID")


class KubeSpanStaticPeerSpec(Spec):
    """A machine that is not a node, joined to the mesh by a ``KubeSpanPeerConfig`` document
    (issue 13, our extension): a fixed WireGuard peer on every node's ``kubespan`` link."""

    name: str = ""
    public_key: str = ""
    allowed_ips: list[IPPrefix] = Field(default_factory=list, alias="allowedIPs")
    endpoint: str = ""  # ip:port, "" = the outside machine dials in (WireGuard learns it)


class KubeSpanConfigSpec(Spec):
    """``kubespan``/``kubespan`` (kubespan.md §1.2). Sensitive: holds the cluster secret."""

    OMITEMPTY = frozenset({"static_peers"})

    enabled: bool = False
    cluster_id: str = ""
    shared_secret: str = ""
    force_routing: bool = True
    advertise_kubernetes_networks: bool = False
    mtu: int = 1420
    endpoint_filters: list[str] = Field(default_factory=list)
    harvest_extra_endpoints: bool = True
    static_peers: list[KubeSpanStaticPeerSpec] = Field(default_factory=list)


class KubeSpanIdentitySpec(Spec):
    """``kubespan``/``local`` (kubespan.md §3). Sensitive: holds the WireGuard private key."""

    address: OptPrefix = None  # the node's KubeSpan IP as /128
    subnet: OptPrefix = None  # the cluster's KubeSpan /64
    private_key: str = ""
    public_key: str = ""


class KubeSpanAffiliateSpec(Spec):
    public_key: str = ""
    address: OptAddr = None
    additional_addresses: list[IPPrefix] = Field(default_factory=list)
    endpoints: list[EndpointText] = Field(default_factory=list)


class ControlPlaneSpec(Spec):
    port: int = 0  # the API server's port


class AffiliateSpec(Spec):
    """kubespan.md §5.1; in ``cluster`` (merged, id = node ID) and ``cluster-raw`` (per registry)."""

    OMITEMPTY = frozenset({"nodename", "kubespan", "control_plane"})

    node_id: str = ""
    addresses: list[IPAddr] = Field(default_factory=list)
    hostname: str = ""
    nodename: str = ""
    operating_system: str = ""
    machine_type: MachineType = MachineType.UNKNOWN
    kubespan: KubeSpanAffiliateSpec | None = None
    control_plane: ControlPlaneSpec | None = None


class DiscoveryServiceStatusSpec(Spec):
    """``cluster``/``service``: this node's session with the discovery service (not in the
    reference). ``synced`` turns true once the first Watch snapshot arrived: until then the
    member list is not the cluster's, which KubeSpan must know after a restart (it keeps its
    peers instead of dropping those it has not heard of yet, decisions.md "Restarts")."""

    endpoint: str = ""
    synced: bool = False
    affiliates: int = 0
    public_ip: OptAddr = Field(None, alias="publicIP")


class MemberSpec(Spec):
    """kubespan.md §5.5; id = nodename."""

    OMITEMPTY = frozenset({"control_plane"})

    node_id: str = ""
    addresses: list[IPAddr] = Field(default_factory=list)
    hostname: str = ""
    machine_type: MachineType = MachineType.UNKNOWN
    operating_system: str = ""
    control_plane: ControlPlaneSpec | None = None


# ---- definitions --------------------------------------------------------------------------

DISCOVERY_CONFIG_DEFINITION = ResourceDefinition(
    type=DISCOVERY_CONFIG_TYPE,
    display_type="DiscoveryConfig",
    default_namespace=CLUSTER,
    spec_model=DiscoveryConfigSpec,
    print_columns=(
        ("DISCOVERY", "{.discoveryEnabled}"),
        ("SERVICE", "{.registryServiceEnabled}"),
        ("ENDPOINT", "{.serviceEndpoint}"),
    ),
    sensitive=True,
)
KUBESPAN_CONFIG_DEFINITION = ResourceDefinition(
    type=KUBESPAN_CONFIG_TYPE,
    display_type="KubeSpanConfig",
    default_namespace=KUBESPAN,
    spec_model=KubeSpanConfigSpec,
    print_columns=(("ENABLED", "{.enabled}"), ("MTU", "{.mtu}")),
    sensitive=True,
)
KUBESPAN_IDENTITY_DEFINITION = ResourceDefinition(
    type=KUBESPAN_IDENTITY_TYPE,
    display_type="KubeSpanIdentity",
    default_namespace=KUBESPAN,
    spec_model=KubeSpanIdentitySpec,
    print_columns=(("ADDRESS", "{.address}"), ("PUBLIC KEY", "{.publicKey}")),
    sensitive=True,
)
AFFILIATE_DEFINITION = ResourceDefinition(
    type=AFFILIATE_TYPE,
    display_type="Affiliate",
    default_namespace=CLUSTER,
    spec_model=AffiliateSpec,
    print_columns=(
        ("HOSTNAME", "{.hostname}"),
        ("MACHINE TYPE", "{.machineType}"),
        ("ADDRESSES", "{.addresses}"),
    ),
)
MEMBER_DEFINITION = ResourceDefinition(
    type=MEMBER_TYPE,
    display_type="Member",
    default_namespace=CLUSTER,
    spec_model=MemberSpec,
    print_columns=(
        ("HOSTNAME", "{.hostname}"),
        ("MACHINE TYPE", "{.machineType}"),
        ("OS", "{.operatingSystem}"),
        ("ADDRESSES", "{.addresses}"),
    ),
)

DISCOVERY_STATUS_DEFINITION = ResourceDefinition(
    type=DISCOVERY_STATUS_TYPE,
    display_type="DiscoveryServiceStatus",
    default_namespace=CLUSTER,
    spec_model=DiscoveryServiceStatusSpec,
    print_columns=(
        ("ENDPOINT", "{.endpoint}"),
        ("SYNCED", "{.synced}"),
        ("AFFILIATES", "{.affiliates}"),
        ("PUBLIC IP", "{.publicIP}"),
    ),
)

ALL_DEFINITIONS: list[ResourceDefinition] = [
    DISCOVERY_CONFIG_DEFINITION,
    DISCOVERY_STATUS_DEFINITION,
    KUBESPAN_CONFIG_DEFINITION,
    KUBESPAN_IDENTITY_DEFINITION,
    AFFILIATE_DEFINITION,
    MEMBER_DEFINITION,
]


def register_all(state: State) -> None:
    """Make the cluster types and their new namespaces known (after ``netd.resources.register_all``,
    which registers ``cluster`` itself and the node Identity)."""
    for name, description in NAMESPACE_DESCRIPTIONS.items():
        state.add_namespace(name, description)
    from kubespan.resources import register_all as register_kubespan

    for d in ALL_DEFINITIONS:
        state.register(d)
    register_kubespan(state)
