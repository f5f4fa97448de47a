"""The per-kind interface of the link spec controller, and the kernel link it reads.

The controller (``netd/controllers/link_spec.py``) is kind-agnostic: creation,
"is the kernel link the kind the spec asks for", "does it need updating" and
"must it be deleted and recreated" are asked of a :class:`LinkKind` looked up
by ``spec.kind`` in the registry (``netd.kernel.links.kind_for``). Adding a
kind (bond, vlan, dummy, wireguard) is one module with one subclass,
registered in ``netd/kernel/links/__init__.py``.

The pure questions (``matches``, ``desired``/``observed``/``in_sync``,
``must_recreate``, ``create_args``, ``update_disrupts``) work on plain data
(:class:`KernelLink`, whose ``info_data`` is a dict), so they are unit-tested
without a kernel. The two async hooks (``create``, ``update``, ``delete``) do
the I/O through :class:`netd.kernel.links.ops.LinkOps`; their defaults are
enough for any kind configured by rtnetlink alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from netd.resources.enums import LinkFlags, LinkType
from netd.resources.link import LinkSpec

if TYPE_CHECKING:
    from netd.kernel.links.ops import LinkOps


@dataclass(frozen=True)
class KernelLink:
    """What the controller needs of one kernel link (an RTM_NEWLINK message)."""

    name: str
    index: int
    kind: str = ""  # IFLA_INFO_KIND, "" without link info
    type: LinkType = LinkType.ETHER  # ARPHRD (ifi_type)
    flags: int = 0
    mtu: int = 0
    master_index: int = 0  # IFLA_MASTER
    link_index: int = 0  # IFLA_LINK (a VLAN's parent)
    has_linkinfo: bool = False
    slave_kind: str = ""
    #: IFLA_INFO_DATA as {attribute name: value}, e.g. {"IFLA_BR_STP_STATE": 1}.
    info_data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def up(self) -> bool:
        return bool(self.flags & LinkFlags.UP)


def kernel_link(msg: Any) -> KernelLink:
    """A KernelLink from a pyroute2 RTM_NEWLINK message."""
    info = msg.get_attr("IFLA_LINKINFO")
    kind = slave_kind = ""
    data: dict[str, Any] = {}
    if info is not None:
        kind = info.get_attr("IFLA_INFO_KIND") or ""
        slave_kind = info.get_attr("IFLA_INFO_SLAVE_KIND") or ""
        raw = info.get_attr("IFLA_INFO_DATA")
        if raw is not None and not isinstance(raw, (str, bytes)):
            data = {name: value for name, value in raw.get("attrs", [])}
    return KernelLink(
        name=msg.get_attr("IFLA_IFNAME") or "",
        index=msg["index"],
        kind=kind,
        type=LinkType(msg["ifi_type"]),
        flags=msg["flags"],
        mtu=msg.get_attr("IFLA_MTU") or 0,
        master_index=msg.get_attr("IFLA_MASTER") or 0,
        link_index=msg.get_attr("IFLA_LINK") or 0,
        has_linkinfo=info is not None,
        slave_kind=slave_kind,
        info_data=data,
    )


Links = Mapping[str, KernelLink]  # by name


class LinkKind:
    """One rtnetlink link kind as the link spec controller handles it.

    Subclass, set ``kind`` (the IFLA_INFO_KIND the spec's ``kind`` names) and
    override what the kind needs:

    * ``matches(spec, link)``: the kernel link is of the spec's kind and type
      (else an owned link is deleted and recreated). The wireguard module
      accepts a userspace ``tun`` link here (decisions.md).
    * ``must_recreate(spec, link)``: immutable attributes differ (a VLAN's id
      or protocol): delete and recreate an owned link.
    * ``create_args(spec, links)``: pyroute2 ``link("add")`` keyword arguments
      beyond ``ifname``/``kind`` (e.g. ``link=<parent index>``, ``vlan_id``,
      ``br_stp_state``, ``bond_mode``). Raise :class:`NotReady` when a
      dependency (VLAN parent) is missing: the spec is retried on link events.
    * ``desired(spec)`` / ``observed(link)``: the spec's and the kernel's
      mutable attributes in one comparable form (a pydantic model, e.g.
      BridgeMasterSpec, BondMasterSpec.with_defaults()); ``None`` = nothing to
      compare. ``in_sync`` compares them (override for fuzzy equality, e.g.
      wireguard's "listen port 0 means any").
    * ``update_args(spec, link)``: pyroute2 ``link("set", kind=...)`` keyword
      arguments that bring ``observed`` to ``desired``.
    * ``update_disrupts``: the kernel refuses the update on a running master
      with slaves (bond): the controller brings the link down and detaches its
      slaves first (netd.md §5.1 step 3); they are re-attached by their own
      specs in the same pass (masters are ordered before slaves).
    * ``refresh``: a LinkRefresh ID (``wireguard``) the controller bumps after
      each ``update`` of this kind, so LinkStatus re-reads what netlink does
      not announce (netd.md §5.1 step 5).
    * ``create``/``update``/``delete``: async hooks doing the I/O; override
      when rtnetlink is not enough (wireguard's genetlink configuration, a
      userspace wireguard-go process to start/stop).
    """

    kind: str = ""
    update_disrupts: bool = False
    refresh: str = ""

    # ---- pure ------------------------------------------------------------------------

    def matches(self, spec: LinkSpec, link: KernelLink) -> bool:
        if link.kind != self.kind:
            return False
        return spec.type == LinkType.NETROM or link.type == spec.type

    def must_recreate(self, spec: LinkSpec, link: KernelLink) -> bool:
        return False

    def create_args(self, spec: LinkSpec, links: Links) -> dict[str, Any]:
        return {}

    def desired(self, spec: LinkSpec) -> BaseModel | None:
        return None

    def observed(self, link: KernelLink) -> BaseModel | None:
        return None

    def in_sync(self, spec: LinkSpec, link: KernelLink) -> bool:
        return self.desired(spec) == self.observed(link)

    def update_args(self, spec: LinkSpec, link: KernelLink) -> dict[str, Any]:
        return {}

    # ---- I/O ---------------------------------------------------------------------------

    async def create(self, ops: LinkOps, spec: LinkSpec, links: Links) -> None:
        await ops.add(spec.name, self.kind, **self.create_args(spec, links))

    async def update(self, ops: LinkOps, spec: LinkSpec, link: KernelLink, links: Links) -> None:
        await ops.set_kind_data(link.index, self.kind, **self.update_args(spec, link))

    async def delete(self, ops: LinkOps, link: KernelLink) -> None:
        await ops.delete(link.index)


class NotReady(Exception):
    """A dependency of the spec is missing (VLAN parent, master): retried on link events."""
