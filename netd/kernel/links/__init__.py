"""Link kinds the link spec controller knows, and the netlink operations it uses.

``KINDS`` maps an rtnetlink kind (a LinkSpec's ``kind``) to its
:class:`LinkKind`. To add a kind, write ``netd/kernel/links/<kind>.py`` with a
``LinkKind`` subclass (see ``base.py`` for what to override) and add one line
to ``KINDS``. A kind without an entry is created and deleted by name only
(:class:`GenericKind`).
"""

from __future__ import annotations

from netd.kernel.links.base import KernelLink, LinkKind, Links, NotReady, kernel_link
from netd.kernel.links.bond import BondKind
from netd.kernel.links.bridge import BridgeKind
from netd.kernel.links.generic import GenericKind
from netd.kernel.links.vlan import VLANKind
from netd.kernel.links.wireguard import WireguardKind

KINDS: dict[str, LinkKind] = {
    "bridge": BridgeKind(),
    "wireguard": WireguardKind(),
    "bond": BondKind(),
    "vlan": VLANKind(),
    # "dummy" needs nothing beyond GenericKind
}


def kind_for(kind: str) -> LinkKind:
    """The handler of a logical link kind (GenericKind for kinds without a module)."""
    handler = KINDS.get(kind)
    return handler if handler is not None else GenericKind(kind)


__all__ = [
    "KINDS",
    "BridgeKind",
    "GenericKind",
    "KernelLink",
    "LinkKind",
    "Links",
    "NotReady",
    "WireguardKind",
    "kernel_link",
    "kind_for",
]
