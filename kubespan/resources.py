"""KubeSpan's own resource types (kubespan.md §6.1, §6.2, §6.4), all in namespace ``kubespan``.

Field names and print columns follow talosctl's, so ``netctl get
kubespanpeerstatuses`` reads like ``talosctl get kubespanpeerstatuses``; the
peer status table adds the last handshake (issue 12). The manager keeps its
working state in the typed values of :mod:`kubespan.peer_state`; these specs
are their published rendering (:func:`peer_status_resource`), so a
resource's second-precision timestamps never feed back into the state machine.
"""

from __future__ import annotations

from pydantic import Field

from cosi import ResourceDefinition, State
from kubespan.harvest import HarvestedEndpoint
from kubespan.peer_state import PeerStatus
from kubespan.peers import PeerSpec
from netd.resources.base import IPAddr, IPPrefix, OptAddr, OptTime, Spec
from netd.resources.namespaces import KUBESPAN

PEER_SPEC_TYPE = "KubeSpanPeerSpecs.kubespan.talos.dev"
PEER_STATUS_TYPE = "KubeSpanPeerStatuses.kubespan.talos.dev"
ENDPOINT_TYPE = "KubeSpanEndpoints.kubespan.talos.dev"


class KubeSpanPeerSpecSpec(Spec):
    """§6.1: id = the peer's public key."""

    address: OptAddr = None
    allowed_ips: list[IPPrefix] = Field(default_factory=list, alias="allowedIPs")
    endpoints: list[str] = Field(default_factory=list)
    label: str = ""

    @classmethod
    def of(cls, p: PeerSpec) -> KubeSpanPeerSpecSpec:
        return cls(
            address=p.address,
            allowed_ips=[_prefix(n) for n in p.allowed_ips],
            endpoints=[str(e) for e in p.endpoints],
            label=p.label,
        )


class KubeSpanPeerStatusSpec(Spec):
    """§6.2: id = the peer's public key."""

    endpoint: str = ""
    label: str = ""
    state: str = "unknown"
    receive_bytes: int = 0
    transmit_bytes: int = 0
    last_handshake_time: OptTime = None
    last_used_endpoint: str = ""
    last_endpoint_change: OptTime = None

    @classmethod
    def of(cls, s: PeerStatus) -> KubeSpanPeerStatusSpec:
        return cls(
            endpoint="" if s.endpoint is None else str(s.endpoint),
            label=s.label,
            state=str(s.state),
            receive_bytes=s.receive_bytes,
            transmit_bytes=s.transmit_bytes,
            last_handshake_time=s.last_handshake_time,
            last_used_endpoint="" if s.last_used_endpoint is None else str(s.last_used_endpoint),
            last_endpoint_change=s.last_endpoint_change,
        )


class KubeSpanEndpointSpec(Spec):
    """§6.4: id = the peer's public key; the endpoint this node sees the peer at."""

    affiliate_id: str = Field("", alias="affiliateID")
    endpoint: str = ""

    @classmethod
    def of(cls, h: HarvestedEndpoint) -> KubeSpanEndpointSpec:
        return cls(affiliate_id=h.affiliate_id, endpoint=str(h.endpoint))


def _prefix(net: object) -> IPPrefix:
    import ipaddress

    return ipaddress.ip_interface(str(net))


PEER_SPEC_DEFINITION = ResourceDefinition(
    type=PEER_SPEC_TYPE,
    display_type="KubeSpanPeerSpec",
    default_namespace=KUBESPAN,
    spec_model=KubeSpanPeerSpecSpec,
    print_columns=(("LABEL", "{.label}"), ("ENDPOINTS", "{.endpoints}")),
)
PEER_STATUS_DEFINITION = ResourceDefinition(
    type=PEER_STATUS_TYPE,
    display_type="KubeSpanPeerStatus",
    default_namespace=KUBESPAN,
    spec_model=KubeSpanPeerStatusSpec,
    print_columns=(
        ("LABEL", "{.label}"),
        ("ENDPOINT", "{.endpoint}"),
        ("STATE", "{.state}"),
        ("RX", "{.receiveBytes}"),
        ("TX", "{.transmitBytes}"),
        ("LAST HANDSHAKE", "{.lastHandshakeTime}"),
    ),
)
ENDPOINT_DEFINITION = ResourceDefinition(
    type=ENDPOINT_TYPE,
    display_type="KubeSpanEndpoint",
    default_namespace=KUBESPAN,
    spec_model=KubeSpanEndpointSpec,
    print_columns=(("ENDPOINT", "{.endpoint}"), ("AFFILIATE ID", "{.affiliateID}")),
)

ALL_DEFINITIONS: list[ResourceDefinition] = [
    PEER_SPEC_DEFINITION,
    PEER_STATUS_DEFINITION,
    ENDPOINT_DEFINITION,
]


def register_all(state: State) -> None:
    """After ``cluster.resources.register_all`` (which adds the ``kubespan`` namespace)."""
    for d in ALL_DEFINITIONS:
        state.register(d)


__all__ = [
    "ENDPOINT_TYPE",
    "PEER_SPEC_TYPE",
    "PEER_STATUS_TYPE",
    "IPAddr",
    "KubeSpanEndpointSpec",
    "KubeSpanPeerSpecSpec",
    "KubeSpanPeerStatusSpec",
    "register_all",
]
