"""NodeAddress and NodeAddressFilter (netd.md §2.9, §7.1)."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import Field

from cosi import ResourceDefinition
from netd.netip import Addr, Prefix
from netd.resources.base import IPPrefix, Spec
from netd.resources.namespaces import NETWORK

NODE_ADDRESS_TYPE = "NodeAddresses.net.talos.dev"
NODE_ADDRESS_FILTER_TYPE = "NodeAddressFilters.net.talos.dev"


class NodeAddress(Spec):
    """IDs ``default``, ``current``, ``routed``, ``accumulative`` and ``<kind>-<filter>``."""

    addresses: list[IPPrefix] = Field(default_factory=list)

    def ips(self) -> list[Addr]:
        return [p.ip for p in self.addresses]


def _inside(ip: Addr, net: Prefix) -> bool:
    return ip.version == net.version and ip in net.network


class NodeAddressFilter(Spec):
    include_subnets: list[IPPrefix] = Field(default_factory=list)
    exclude_subnets: list[IPPrefix] = Field(default_factory=list)

    def accepts(self, ip: Addr) -> bool:
        """netd.md §7.1: inside some include subnet (if any), and inside no exclude subnet."""
        if self.include_subnets and not any(_inside(ip, n) for n in self.include_subnets):
            return False
        return not any(_inside(ip, n) for n in self.exclude_subnets)

    def apply(self, prefixes: Iterable[Prefix]) -> list[Prefix]:
        return [p for p in prefixes if self.accepts(p.ip)]


NODE_ADDRESS_DEFINITION = ResourceDefinition(
    type=NODE_ADDRESS_TYPE,
    display_type="NodeAddress",
    default_namespace=NETWORK,
    spec_model=NodeAddress,
    print_columns=(("ADDRESSES", "{.addresses}"),),
)
NODE_ADDRESS_FILTER_DEFINITION = ResourceDefinition(
    type=NODE_ADDRESS_FILTER_TYPE,
    display_type="NodeAddressFilter",
    default_namespace=NETWORK,
    spec_model=NodeAddressFilter,
    print_columns=(("INCLUDE SUBNETS", "{.includeSubnets}"), ("EXCLUDE SUBNETS", "{.excludeSubnets}")),
)
