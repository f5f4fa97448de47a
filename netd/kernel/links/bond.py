"""Bonds (``kind: bond``): the BondMasterSpec ↔ IFLA_INFO_DATA tables of netd.md §5.1.

Encoding (:func:`encode`) sends an attribute only in the modes the kernel
accepts it in (the table of §5.1: the kernel refuses e.g. LACP rate outside
802.3ad, PRIMARY outside active-backup/tlb/alb, and UPDELAY/DOWNDELAY/
PEER_NOTIF_DELAY while MII monitoring is off). Decoding (:func:`decode`)
reads back every attribute the kernel reports (LinkStatus shows all of them).

Comparing (:func:`comparable`): the kernel reports every option in every
mode, with its own default for those we did not send, and stores the delays
in MII ticks (reported as ``ticks * miimon``, so 250 ms at miimon 100 reads
back as 200). Both sides are therefore reduced to what the spec can control
in its mode, with the delays rounded down as the kernel does, so an applied
bond compares equal and the steady state writes nothing. ``primary`` is
reported only while that link is enslaved (the kernel keeps the name and
applies it when the link joins): a kernel that reports none is taken as
matching, otherwise a bond whose primary is not a slave would be torn apart
(down, slaves detached) on every pass.

Changes need the bond down and without slaves (mode, fail_over_mac, ad_select
are refused otherwise): ``update_disrupts`` makes the controller do that
first; the slaves are re-attached by their own specs in the same pass.

pyroute2 0.9.7's bond table stops at IFLA_BOND_TLB_DYNAMIC_LB (27): it can
neither send nor read IFLA_BOND_PEER_NOTIF_DELAY (28). :data:`BondData`, the
full table of the kernel's ``IFLA_BOND_*`` numbering, is registered for kind
``bond`` through pyroute2's own plugin hook (``register_link_kind``) when this
module is imported, which the link kinds registry and the LinkStatus decoder
both do before they read a bond.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from pyroute2.netlink import nla
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ifinfmsg.plugins.bond import bond as _pyroute2_bond

from netd.kernel.links.base import KernelLink, LinkKind, Links
from netd.resources.enums import (
    ADSelect,
    ARPAllTargets,
    ARPValidate,
    BondMode,
    BondXmitHashPolicy,
    FailOverMAC,
    LACPRate,
    PrimaryReselect,
)
from netd.resources.link import BondMasterSpec, LinkSpec


class BondData(nla):  # type: ignore[misc]
    """IFLA_INFO_DATA of a bond, in the kernel's numbering (include/uapi/linux/if_link.h)."""

    prefix = "IFLA_"
    nla_map = (
        ("IFLA_BOND_UNSPEC", "none"),
        ("IFLA_BOND_MODE", "uint8"),
        ("IFLA_BOND_ACTIVE_SLAVE", "uint32"),
        ("IFLA_BOND_MIIMON", "uint32"),
        ("IFLA_BOND_UPDELAY", "uint32"),
        ("IFLA_BOND_DOWNDELAY", "uint32"),
        ("IFLA_BOND_USE_CARRIER", "uint8"),
        ("IFLA_BOND_ARP_INTERVAL", "uint32"),
        ("IFLA_BOND_ARP_IP_TARGET", "*ipaddr"),
        ("IFLA_BOND_ARP_VALIDATE", "uint32"),
        ("IFLA_BOND_ARP_ALL_TARGETS", "uint32"),
        ("IFLA_BOND_PRIMARY", "uint32"),
        ("IFLA_BOND_PRIMARY_RESELECT", "uint8"),
        ("IFLA_BOND_FAIL_OVER_MAC", "uint8"),
        ("IFLA_BOND_XMIT_HASH_POLICY", "uint8"),
        ("IFLA_BOND_RESEND_IGMP", "uint32"),
        ("IFLA_BOND_NUM_PEER_NOTIF", "uint8"),
        ("IFLA_BOND_ALL_SLAVES_ACTIVE", "uint8"),
        ("IFLA_BOND_MIN_LINKS", "uint32"),
        ("IFLA_BOND_LP_INTERVAL", "uint32"),
        ("IFLA_BOND_PACKETS_PER_SLAVE", "uint32"),
        ("IFLA_BOND_AD_LACP_RATE", "uint8"),
        ("IFLA_BOND_AD_SELECT", "uint8"),
        ("IFLA_BOND_AD_INFO", "ad_info"),
        ("IFLA_BOND_AD_ACTOR_SYS_PRIO", "uint16"),
        ("IFLA_BOND_AD_USER_PORT_KEY", "uint16"),
        ("IFLA_BOND_AD_ACTOR_SYSTEM", "hex"),
        ("IFLA_BOND_TLB_DYNAMIC_LB", "uint8"),
        ("IFLA_BOND_PEER_NOTIF_DELAY", "uint32"),
        ("IFLA_BOND_AD_LACP_ACTIVE", "uint8"),
        ("IFLA_BOND_MISSED_MAX", "uint8"),
        ("IFLA_BOND_NS_IP6_TARGET", "hex"),
        ("IFLA_BOND_COUPLED_CONTROL", "uint8"),
    )

    ad_info = _pyroute2_bond.ad_info


ifinfmsg.ifinfo.register_link_kind(module={"bond": BondData})

_NO_ARP = (BondMode.IEEE8023AD, BondMode.BALANCE_TLB, BondMode.BALANCE_ALB)
_WITH_PRIMARY = (BondMode.ACTIVE_BACKUP, BondMode.BALANCE_TLB, BondMode.BALANCE_ALB)
_TLB = (BondMode.BALANCE_TLB, BondMode.BALANCE_ALB)


def sent(spec: BondMasterSpec) -> list[str]:
    """The BondMasterSpec fields sent to the kernel for this spec (netd.md §5.1), in order."""
    mode = spec.mode
    fields = ["mode", "xmit_hash_policy"]
    if mode == BondMode.IEEE8023AD:
        fields.append("lacp_rate")
    if mode not in _NO_ARP:
        fields.append("arp_validate")
    fields.append("arp_all_targets")
    if mode in _WITH_PRIMARY:
        fields.append("primary")
    fields += ["primary_reselect", "fail_over_mac", "ad_select", "miimon"]
    if spec.miimon:
        fields += ["updelay", "downdelay"]
    if mode not in _NO_ARP:
        fields.append("arp_interval")
    fields += ["resend_igmp", "min_links", "lp_interval"]
    if mode == BondMode.BALANCE_RR:
        fields.append("packets_per_slave")
    fields.append("num_peer_notif")
    if mode in _TLB:
        fields.append("tlb_logical_lb")
    fields += ["all_slaves_active", "use_carrier"]
    if mode == BondMode.IEEE8023AD:
        fields += ["ad_actor_sys_prio", "ad_user_port_key"]
    if spec.miimon:
        fields.append("peer_notify_delay")
    return fields


#: BondMasterSpec field → IFLA_BOND_* attribute.
ATTRS: dict[str, str] = {
    "mode": "IFLA_BOND_MODE",
    "xmit_hash_policy": "IFLA_BOND_XMIT_HASH_POLICY",
    "lacp_rate": "IFLA_BOND_AD_LACP_RATE",
    "arp_validate": "IFLA_BOND_ARP_VALIDATE",
    "arp_all_targets": "IFLA_BOND_ARP_ALL_TARGETS",
    "primary": "IFLA_BOND_PRIMARY",
    "primary_reselect": "IFLA_BOND_PRIMARY_RESELECT",
    "fail_over_mac": "IFLA_BOND_FAIL_OVER_MAC",
    "ad_select": "IFLA_BOND_AD_SELECT",
    "miimon": "IFLA_BOND_MIIMON",
    "updelay": "IFLA_BOND_UPDELAY",
    "downdelay": "IFLA_BOND_DOWNDELAY",
    "arp_interval": "IFLA_BOND_ARP_INTERVAL",
    "resend_igmp": "IFLA_BOND_RESEND_IGMP",
    "min_links": "IFLA_BOND_MIN_LINKS",
    "lp_interval": "IFLA_BOND_LP_INTERVAL",
    "packets_per_slave": "IFLA_BOND_PACKETS_PER_SLAVE",
    "num_peer_notif": "IFLA_BOND_NUM_PEER_NOTIF",
    "tlb_logical_lb": "IFLA_BOND_TLB_DYNAMIC_LB",
    "all_slaves_active": "IFLA_BOND_ALL_SLAVES_ACTIVE",
    "use_carrier": "IFLA_BOND_USE_CARRIER",
    "ad_actor_sys_prio": "IFLA_BOND_AD_ACTOR_SYS_PRIO",
    "ad_user_port_key": "IFLA_BOND_AD_USER_PORT_KEY",
    "peer_notify_delay": "IFLA_BOND_PEER_NOTIF_DELAY",
}


def encode(spec: BondMasterSpec) -> dict[str, int]:
    """IFLA_INFO_DATA of ``spec`` (defaults filled in) as pyroute2 ``link()`` keyword arguments."""
    spec = spec.with_defaults()
    return {ATTRS[f]: int(getattr(spec, f)) for f in sent(spec)}


def decode(attrs: Mapping[str, Any]) -> BondMasterSpec:
    """A BondMasterSpec of the kernel's IFLA_INFO_DATA (``{attribute name: value}``).

    Every reported attribute is kept (LinkStatus shows them as they are); an
    attribute the kernel did not send is the field's zero value.
    """

    def num(name: str) -> int:
        v = attrs.get(name)
        return int(v) if isinstance(v, int) else 0

    def enum(cls: Any, name: str) -> Any:
        try:
            return cls(num(name))
        except ValueError:  # a value newer than our enum: reported as the zero value
            return cls(0)

    return BondMasterSpec(
        mode=enum(BondMode, "IFLA_BOND_MODE"),
        xmit_hash_policy=enum(BondXmitHashPolicy, "IFLA_BOND_XMIT_HASH_POLICY"),
        lacp_rate=enum(LACPRate, "IFLA_BOND_AD_LACP_RATE"),
        arp_validate=enum(ARPValidate, "IFLA_BOND_ARP_VALIDATE"),
        arp_all_targets=enum(ARPAllTargets, "IFLA_BOND_ARP_ALL_TARGETS"),
        primary=num("IFLA_BOND_PRIMARY"),
        primary_reselect=enum(PrimaryReselect, "IFLA_BOND_PRIMARY_RESELECT"),
        fail_over_mac=enum(FailOverMAC, "IFLA_BOND_FAIL_OVER_MAC"),
        ad_select=enum(ADSelect, "IFLA_BOND_AD_SELECT"),
        miimon=num("IFLA_BOND_MIIMON"),
        updelay=num("IFLA_BOND_UPDELAY"),
        downdelay=num("IFLA_BOND_DOWNDELAY"),
        arp_interval=num("IFLA_BOND_ARP_INTERVAL"),
        resend_igmp=num("IFLA_BOND_RESEND_IGMP"),
        min_links=num("IFLA_BOND_MIN_LINKS"),
        lp_interval=num("IFLA_BOND_LP_INTERVAL"),
        packets_per_slave=num("IFLA_BOND_PACKETS_PER_SLAVE"),
        num_peer_notif=num("IFLA_BOND_NUM_PEER_NOTIF"),
        tlb_logical_lb=num("IFLA_BOND_TLB_DYNAMIC_LB"),
        all_slaves_active=num("IFLA_BOND_ALL_SLAVES_ACTIVE"),
        use_carrier=bool(num("IFLA_BOND_USE_CARRIER")),
        ad_actor_sys_prio=num("IFLA_BOND_AD_ACTOR_SYS_PRIO"),
        ad_user_port_key=num("IFLA_BOND_AD_USER_PORT_KEY"),
        peer_notify_delay=num("IFLA_BOND_PEER_NOTIF_DELAY"),
    )


def decode_info_data(data: bytes) -> BondMasterSpec:
    """A BondMasterSpec of a bond's raw IFLA_INFO_DATA payload (decoded by the full
    IFLA_BOND_* table above)."""
    msg = BondData(struct.pack("=HH", 4 + len(data), 2) + data)
    msg.decode()
    return decode({name: value for name, value in msg.get("attrs", [])})


def comparable(spec: BondMasterSpec) -> BondMasterSpec:
    """What of ``spec`` the kernel stores in its mode: unsent fields at their zero value,
    the delays rounded down to whole MII ticks. Applied to the desired spec (after
    defaults) and to the decoded kernel bond alike, so they compare equal once applied."""
    keep = set(sent(spec))
    zero = BondMasterSpec()
    upd: dict[str, Any] = {f: getattr(zero, f) for f in ATTRS if f not in keep}
    if spec.miimon:
        for f in ("updelay", "downdelay", "peer_notify_delay"):
            upd[f] = getattr(spec, f) // spec.miimon * spec.miimon
    return spec.model_copy(update=upd)


class BondKind(LinkKind):
    kind = "bond"
    update_disrupts = True

    def create_args(self, spec: LinkSpec, links: Links) -> dict[str, Any]:
        return encode(spec.bond_master)

    def desired(self, spec: LinkSpec) -> BondMasterSpec:
        return comparable(spec.bond_master.with_defaults())

    def observed(self, link: KernelLink) -> BondMasterSpec:
        return comparable(decode(link.info_data))

    def in_sync(self, spec: LinkSpec, link: KernelLink) -> bool:
        want, have = self.desired(spec), self.observed(link)
        if have.primary == 0:  # not reported while the primary is no slave (see above)
            have = have.model_copy(update={"primary": want.primary})
        return want == have

    def update_args(self, spec: LinkSpec, link: KernelLink) -> dict[str, Any]:
        return encode(spec.bond_master)
