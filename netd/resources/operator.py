"""OperatorSpec (netd.md §2.8): DHCP4, DHCP6 and VIP operators."""

from __future__ import annotations

from pydantic import Field

from cosi import ResourceDefinition
from netd.resources.base import OptAddr, Spec
from netd.resources.enums import ConfigLayer, Operator
from netd.resources.ids import operator_id
from netd.resources.namespaces import NETWORK

OPERATOR_SPEC_TYPE = "OperatorSpecs.net.talos.dev"


class DHCP4OperatorSpec(Spec):
    OMITEMPTY = frozenset({"skip_hostname_request"})

    route_metric: int = 0
    skip_hostname_request: bool = False


class DHCP6OperatorSpec(Spec):
    OMITEMPTY = frozenset({"duid", "skip_hostname_request"})

    duid: str = Field(default="", alias="DUID")
    route_metric: int = 0
    skip_hostname_request: bool = False


class VIPEquinixMetalSpec(Spec):
    project_id: str = Field(default="", alias="projectID")
    device_id: str = Field(default="", alias="deviceID")
    api_token: str = ""


class VIPHCloudSpec(Spec):
    device_id: int = Field(default=0, alias="deviceID")
    network_id: int = Field(default=0, alias="networkID")
    api_token: str = ""


class VIPOperatorSpec(Spec):
    OMITEMPTY = frozenset({"equinix_metal", "hcloud"})

    ip: OptAddr = None
    gratuitous_arp: bool = Field(default=False, alias="gratuitousARP")
    equinix_metal: VIPEquinixMetalSpec = Field(default_factory=VIPEquinixMetalSpec)
    hcloud: VIPHCloudSpec = Field(default_factory=VIPHCloudSpec)


class OperatorSpec(Spec):
    OMITEMPTY = frozenset({"dhcp4", "dhcp6", "vip"})

    operator: Operator = Operator.DHCP4
    link_name: str = ""
    require_up: bool = False
    dhcp4: DHCP4OperatorSpec = Field(default_factory=DHCP4OperatorSpec)
    dhcp6: DHCP6OperatorSpec = Field(default_factory=DHCP6OperatorSpec)
    vip: VIPOperatorSpec = Field(default_factory=VIPOperatorSpec)
    layer: ConfigLayer = ConfigLayer.DEFAULT

    def id(self) -> str:
        """OperatorID(operator, linkName): ``dhcp4/eth0``."""
        return operator_id(self.operator, self.link_name)

    def same_operator(self, other: OperatorSpec) -> bool:
        """Equality for restart purposes: everything but ``layer`` (netd.md §2.8)."""
        return self.model_dump(exclude={"layer"}) == other.model_dump(exclude={"layer"})


OPERATOR_SPEC_DEFINITION = ResourceDefinition(
    type=OPERATOR_SPEC_TYPE,
    display_type="OperatorSpec",
    default_namespace=NETWORK,
    spec_model=OperatorSpec,
    # A name, so that it wins over OperatorStatuses' initials (talosctl's ``get os``).
    aliases=("os",),
    sensitive=True,
)
