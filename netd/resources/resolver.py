"""ResolverSpec and ResolverStatus (netd.md §2.7)."""

from __future__ import annotations

from pydantic import Field

from cosi import ResourceDefinition
from netd.resources.base import IPAddr, Spec
from netd.resources.enums import ConfigLayer
from netd.resources.namespaces import NETWORK

RESOLVER_SPEC_TYPE = "ResolverSpecs.net.talos.dev"
RESOLVER_STATUS_TYPE = "ResolverStatuses.net.talos.dev"


class ResolverSpec(Spec):
    dns_servers: list[IPAddr] = Field(default_factory=list)
    layer: ConfigLayer = ConfigLayer.DEFAULT


class ResolverStatus(Spec):
    dns_servers: list[IPAddr] = Field(default_factory=list)


RESOLVER_SPEC_DEFINITION = ResourceDefinition(
    type=RESOLVER_SPEC_TYPE,
    display_type="ResolverSpec",
    default_namespace=NETWORK,
    spec_model=ResolverSpec,
)
RESOLVER_STATUS_DEFINITION = ResourceDefinition(
    type=RESOLVER_STATUS_TYPE,
    display_type="ResolverStatus",
    default_namespace=NETWORK,
    spec_model=ResolverStatus,
    aliases=("resolvers",),
    print_columns=(("RESOLVERS", "{.dnsServers}"),),
)
