"""AddressSpec and AddressStatus (netd.md §2.2, §2.3)."""

from __future__ import annotations

import datetime as dt

from pydantic import Field

from cosi import ResourceDefinition
from netd.netip import Prefix
from netd.resources.base import OptAddr, OptPrefix, OptTime, Spec
from netd.resources.enums import AddressFlags, ConfigLayer, Family, Scope
from netd.resources.ids import address_id
from netd.resources.namespaces import NETWORK

ADDRESS_SPEC_TYPE = "AddressSpecs.net.talos.dev"
ADDRESS_STATUS_TYPE = "AddressStatuses.net.talos.dev"


class AddressSpec(Spec):
    """A desired address. ``validUntil``/``preferredUntil`` are our lease extension
    (decisions.md): RFC 3339 UTC, absent = forever."""

    OMITEMPTY = frozenset({"announce_with_arp", "valid_until", "preferred_until", "priority"})

    address: OptPrefix = None
    link_name: str = ""
    family: Family = Family(0)
    scope: Scope = Scope.GLOBAL
    flags: AddressFlags = AddressFlags(0)
    announce_with_arp: bool = Field(default=False, alias="announceWithARP")
    layer: ConfigLayer = ConfigLayer.DEFAULT
    valid_until: OptTime = None
    preferred_until: OptTime = None
    #: Metric of the address's prefix route (IFA_RT_PRIORITY; LinkConfig ``routePriority``,
    #: newer Talos's AddressSpec ``priority``); 0 = the kernel's default.
    priority: int = 0

    @classmethod
    def configured(
        cls, address: Prefix, link_name: str, layer: ConfigLayer, *, announce_with_arp: bool = False
    ) -> AddressSpec:
        """An address as the config sources, DHCP and VIP emit it (netd.md §4.2, §6):
        family by IP, scope global, flags permanent."""
        return cls(
            address=address,
            link_name=link_name,
            family=Family.of(address),
            scope=Scope.GLOBAL,
            flags=AddressFlags.PERMANENT,
            announce_with_arp=announce_with_arp,
            layer=layer,
        )

    def id(self) -> str:
        """The merged ID, AddressID(linkName, address)."""
        return address_id(self.link_name, self.address)

    def lifetimes(self, now: dt.datetime) -> tuple[int | None, int | None]:
        """(valid, preferred) seconds left at ``now`` (None = forever, never below 0)."""

        def left(t: dt.datetime | None) -> int | None:
            return None if t is None else max(0, int((t - now).total_seconds()))

        return left(self.valid_until), left(self.preferred_until)


class AddressStatus(Spec):
    """A kernel address (or a platform external IP on link ``external``)."""

    OMITEMPTY = frozenset({"local", "broadcast", "anycast", "multicast"})

    address: OptPrefix = None
    local: OptAddr = None
    broadcast: OptAddr = None
    anycast: OptAddr = None
    multicast: OptAddr = None
    link_index: int = 0
    link_name: str = ""
    family: Family = Family(0)
    scope: Scope = Scope.GLOBAL
    flags: AddressFlags = AddressFlags(0)

    def id(self) -> str:
        return address_id(self.link_name, self.address)


ADDRESS_SPEC_DEFINITION = ResourceDefinition(
    type=ADDRESS_SPEC_TYPE,
    display_type="AddressSpec",
    default_namespace=NETWORK,
    spec_model=AddressSpec,
)
ADDRESS_STATUS_DEFINITION = ResourceDefinition(
    type=ADDRESS_STATUS_TYPE,
    display_type="AddressStatus",
    default_namespace=NETWORK,
    spec_model=AddressStatus,
    aliases=("address", "addresses"),
    print_columns=(("ADDRESS", "{.address}"), ("LINK", "{.linkName}")),
)
