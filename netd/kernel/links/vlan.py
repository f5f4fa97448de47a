"""VLANs (``kind: vlan``): 802.1Q and 802.1ad on a parent link (netd.md §5.1).

The parent (``parentName``, a physical link or a bond) is the VLAN's
IFLA_LINK, never its master. The VLAN id and protocol are fixed at creation
(the kernel refuses to change the protocol, and a changed id would be another
VLAN): when they differ from the spec an owned VLAN is deleted and created
again (the controller does that on ``must_recreate``). There is nothing else
to compare or update (up, MTU are the controller's).

IFLA_VLAN_PROTOCOL is big-endian on the wire; pyroute2 encodes and decodes it
(``be16``), so here it is the plain number 0x8100/0x88a8. A spec's protocol 0
(the zero value) means 802.1Q, as the kernel does without the attribute.
"""

from __future__ import annotations

from typing import Any

from netd.kernel.links.base import KernelLink, LinkKind, Links, NotReady
from netd.resources.enums import VLANProtocol
from netd.resources.link import LinkSpec, VLANSpec


def protocol(value: int) -> VLANProtocol:
    """The protocol a VLAN gets for ``value`` (0: the kernel's default, 802.1Q)."""
    return VLANProtocol(value or VLANProtocol.IEEE8021Q)


def desired_vlan(spec: LinkSpec) -> VLANSpec:
    return VLANSpec(vlan_id=spec.vlan.vlan_id, vlan_protocol=protocol(spec.vlan.vlan_protocol))


def observed_vlan(link: KernelLink) -> VLANSpec:
    data = link.info_data
    return VLANSpec(
        vlan_id=int(data.get("IFLA_VLAN_ID") or 0),
        vlan_protocol=protocol(int(data.get("IFLA_VLAN_PROTOCOL") or 0)),
    )


def encode(vlan: VLANSpec) -> dict[str, int]:
    """IFLA_INFO_DATA of a VLAN as pyroute2 ``link()`` keyword arguments."""
    return {"vlan_id": vlan.vlan_id, "vlan_protocol": int(protocol(vlan.vlan_protocol))}


class VLANKind(LinkKind):
    kind = "vlan"

    def must_recreate(self, spec: LinkSpec, link: KernelLink) -> bool:
        return desired_vlan(spec) != observed_vlan(link)

    def create_args(self, spec: LinkSpec, links: Links) -> dict[str, Any]:
        parent = links.get(spec.parent_name) if spec.parent_name else None
        if parent is None:
            raise NotReady(f"VLAN {spec.name}: parent link {spec.parent_name or '(none)'} does not exist yet")
        return {"link": parent.index, **encode(desired_vlan(spec))}
