"""Link records (the lean codec's) → LinkStatus.

Pure functions, so the status controllers and ``netctl plan`` share one
translation. The per-kind IFLA_INFO_DATA decoders come from the link-kind
adapters (:mod:`netd.kernel.links`): VLAN and bridge attributes are plain
numbers read here, a bond's table is the bond adapter's (the one place that
still uses pyroute2's attribute classes, for its full IFLA_BOND_* table).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import Any

from netd.kernel.links.bond import decode_info_data as decode_bond_data
from netd.kernel.netlink import NLA_HDR, NLA_TYPE_MASK
from netd.kernel.rtnl_codec import LinkRecord
from netd.kernel.sysfs import device_info
from netd.resources.enums import (
    LinkFlags,
    LinkType,
    OperationalState,
    VLANProtocol,
)
from netd.resources.link import BridgeMasterSpec, LinkStatus, STPSpec, VLANSpec

IFLA_VLAN_ID, IFLA_VLAN_PROTOCOL = 1, 5
IFLA_BR_STP_STATE = 5


def _attrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    pos = 0
    while pos + 4 <= len(data):
        alen, atype = NLA_HDR.unpack_from(data, pos)
        if alen < 4 or pos + alen > len(data):
            return
        yield atype & NLA_TYPE_MASK, data[pos + 4 : pos + alen]
        pos += (alen + 3) & ~3


def _decode_vlan(data: bytes) -> dict[str, Any]:
    vid, proto = 0, 0x8100
    for atype, value in _attrs(data):
        if atype == IFLA_VLAN_ID and len(value) >= 2:
            vid = struct.unpack_from("=H", value)[0]
        elif atype == IFLA_VLAN_PROTOCOL and len(value) >= 2:
            proto = struct.unpack_from("!H", value)[0]  # big-endian on the wire
    return {"vlan": VLANSpec(vlan_id=vid, vlan_protocol=VLANProtocol(proto))}


def _decode_bridge(data: bytes) -> dict[str, Any]:
    stp = 0
    for atype, value in _attrs(data):
        if atype == IFLA_BR_STP_STATE and len(value) >= 4:
            stp = struct.unpack_from("=I", value)[0]
    return {"bridge_master": BridgeMasterSpec(stp=STPSpec(enabled=bool(stp)))}


def _decode_bond(data: bytes) -> dict[str, Any]:
    return {"bond_master": decode_bond_data(data)}


#: Per-kind decoders of IFLA_INFO_DATA → LinkStatus field updates (WireGuard's block
#: needs the device API, not rtnetlink: the link status controller adds it).
KIND_DECODERS: dict[str, Callable[[bytes], dict[str, Any]]] = {
    "vlan": _decode_vlan,
    "bridge": _decode_bridge,
    "bond": _decode_bond,
}


def link_status(rec: LinkRecord, with_sysfs: bool = True) -> tuple[str, LinkStatus]:
    """(name, LinkStatus) of an RTM_NEWLINK record.

    ``linkState`` here is the rtnetlink carrier (for ``netctl plan``, which
    has no ethtool); the LinkStatusController overrides it with ethtool's
    answer, as netd.md §2.5 says.
    """
    name = rec.ifname or ""
    kind = rec.kind or ""
    extra: dict[str, Any] = {}
    decoder = KIND_DECODERS.get(kind)
    if decoder is not None and rec.info_data is not None:
        extra = decoder(rec.info_data)
    info = device_info(name) if with_sysfs and name else None
    return name, LinkStatus(
        index=rec.index,
        type=LinkType(rec.type),
        link_index=rec.link or 0,
        flags=LinkFlags(rec.flags),
        hardware_addr=rec.address or "",
        permanent_addr=rec.perm_address or "",
        broadcast_addr=rec.broadcast or "",
        mtu=rec.mtu or 0,
        queue_disc=rec.qdisc or "",
        master_index=rec.master or 0,
        operational_state=OperationalState(rec.operstate or 0),
        kind=kind,
        slave_kind=rec.slave_kind or "",
        bus_path=info.bus_path if info else "",
        pci_id=info.pci_id if info else "",
        driver=info.driver if info else "",
        link_state=bool(rec.carrier) and bool(rec.flags & LinkFlags.UP),
        **extra,
    )
