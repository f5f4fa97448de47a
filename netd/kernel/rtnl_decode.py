"""rtnetlink messages → LinkStatus / AddressStatus (as pyroute2 decodes them) and RouteStatus specs.

Pure functions over the message objects, so the status controllers and
``netctl plan`` share one translation.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from netd.kernel.links.bond import decode as decode_bond  # also registers the full IFLA_BOND_* table
from netd.kernel.sysfs import device_info
from netd.netip import Addr, Prefix
from netd.resources.address import AddressStatus
from netd.resources.enums import (
    AddressFlags,
    Family,
    LinkFlags,
    LinkType,
    OperationalState,
    RouteFlags,
    RouteProtocol,
    RouteType,
    RoutingTable,
    Scope,
    VLANProtocol,
)
from netd.resources.link import BridgeMasterSpec, LinkStatus, STPSpec, VLANSpec
from netd.resources.route import RouteStatus

# IFLA_OPERSTATE values are RFC 2863 operStatus - 1 … the kernel's IF_OPER_* order,
# which is exactly our OperationalState numbering.
_OPERSTATE_NAMES = {
    "UNKNOWN": 0, "NOTPRESENT": 1, "DOWN": 2, "LOWERLAYERDOWN": 3, "TESTING": 4, "DORMANT": 5, "UP": 6,
}


def _linkinfo(msg: Any) -> tuple[str, str, Any]:
    info = msg.get_attr("IFLA_LINKINFO")
    if info is None:
        return "", "", None
    return info.get_attr("IFLA_INFO_KIND") or "", info.get_attr("IFLA_INFO_SLAVE_KIND") or "", info.get_attr(
        "IFLA_INFO_DATA"
    )


def _operstate(value: Any) -> OperationalState:
    if isinstance(value, int):
        return OperationalState(value)
    return OperationalState(_OPERSTATE_NAMES.get(str(value).upper(), 0))


def _decode_vlan(data: Any) -> dict[str, Any]:
    return {
        "vlan": VLANSpec(
            vlan_id=data.get_attr("IFLA_VLAN_ID") or 0,
            vlan_protocol=VLANProtocol(data.get_attr("IFLA_VLAN_PROTOCOL") or 0x8100),
        )
    }


def _decode_bridge(data: Any) -> dict[str, Any]:
    return {"bridge_master": BridgeMasterSpec(stp=STPSpec(enabled=bool(data.get_attr("IFLA_BR_STP_STATE"))))}


def _decode_bond(data: Any) -> dict[str, Any]:
    return {"bond_master": decode_bond({name: value for name, value in data.get("attrs", [])})}


#: Per-kind decoders of IFLA_INFO_DATA → LinkStatus field updates. Bond
#: (``bond_master``) and WireGuard (``wireguard``, which needs the device API,
#: not rtnetlink) are to be added here by the issue that brings those kinds.
KIND_DECODERS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "vlan": _decode_vlan,
    "bridge": _decode_bridge,
    "bond": _decode_bond,
}


def link_status(msg: Any, with_sysfs: bool = True) -> tuple[str, LinkStatus]:
    """(name, LinkStatus) of an RTM_NEWLINK message.

    ``linkState`` here is the rtnetlink carrier (for ``netctl plan``, which
    has no ethtool); the LinkStatusController overrides it with ethtool's
    answer, as netd.md §2.5 says.
    """
    name = msg.get_attr("IFLA_IFNAME") or ""
    kind, slave_kind, data = _linkinfo(msg)
    extra: dict[str, Any] = {}
    decoder = KIND_DECODERS.get(kind)
    if decoder is not None and data is not None:
        extra = decoder(data)
    info = device_info(name) if with_sysfs and name else None
    status = LinkStatus(
        index=msg["index"],
        type=LinkType(msg["ifi_type"]),
        link_index=msg.get_attr("IFLA_LINK") or 0,
        flags=LinkFlags(msg["flags"]),
        hardware_addr=msg.get_attr("IFLA_ADDRESS") or "",
        permanent_addr=msg.get_attr("IFLA_PERM_ADDRESS") or "",
        broadcast_addr=msg.get_attr("IFLA_BROADCAST") or "",
        mtu=msg.get_attr("IFLA_MTU") or 0,
        queue_disc=msg.get_attr("IFLA_QDISC") or "",
        master_index=msg.get_attr("IFLA_MASTER") or 0,
        operational_state=_operstate(msg.get_attr("IFLA_OPERSTATE") or 0),
        kind=kind,
        slave_kind=slave_kind,
        bus_path=info.bus_path if info else "",
        pci_id=info.pci_id if info else "",
        driver=info.driver if info else "",
        link_state=bool(msg.get_attr("IFLA_CARRIER")) and bool(msg["flags"] & LinkFlags.UP),
        **extra,
    )
    return name, status


def address_status(msg: Any, link_name: str) -> AddressStatus:
    """AddressStatus of an RTM_NEWADDR message on the named link."""
    family = Family(msg["family"])
    addr_text = msg.get_attr("IFA_ADDRESS") or msg.get_attr("IFA_LOCAL")
    local = msg.get_attr("IFA_LOCAL")
    flags = msg.get_attr("IFA_FLAGS")
    if flags is None:
        flags = msg["flags"]
    return AddressStatus(
        address=ipaddress.ip_interface(f"{local or addr_text}/{msg['prefixlen']}"),
        local=ipaddress.ip_address(local) if local and local != addr_text else None,
        broadcast=msg.get_attr("IFA_BROADCAST") or None,
        link_index=msg["index"],
        link_name=link_name,
        family=family,
        scope=Scope(msg["scope"]),
        flags=AddressFlags(flags),
    )


# ---- routes ---------------------------------------------------------------------------
#
# Routes come by the ten thousand, and pyroute2's generic decoder costs ~40 µs a
# message; a route needs a dozen fixed fields, so it gets a struct-based parser.

_NLMSGHDR = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTA = struct.Struct("=HH")
_U32 = struct.Struct("=I")

RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_METRICS, RTA_TABLE = 1, 4, 5, 6, 7, 8, 15
RTAX_MTU = 2
_NLA_TYPE_MASK = 0x3FFF


@dataclass(frozen=True, slots=True)
class RouteMsg:
    """The fields of an RTM_NEWROUTE/RTM_DELROUTE message that RouteStatus needs.

    ``table`` is the rtmsg header byte (what RouteStatus reports, netd.md §2.6);
    ``table_id`` is RTA_TABLE, the full 32-bit table (tells tables above 255 apart).
    """

    msg_type: int
    nl_flags: int
    family: int
    dst_len: int
    tos: int
    table: int
    protocol: int
    scope: int
    type: int
    flags: int
    dst: bytes = b""
    gateway: bytes = b""
    prefsrc: bytes = b""
    oif: int = 0
    priority: int = 0
    table_id: int = 0
    mtu: int = 0

    def kernel_key(self) -> tuple[int, int, bytes, int, int, int, int, bytes, int]:
        """What tells two kernel routes apart (also in tables > 255)."""
        return (
            self.family, self.table_id, self.dst, self.dst_len, self.tos, self.priority, self.oif,
            self.gateway, self.type,
        )

    def replace_key(self) -> tuple[int, int, bytes, int, int, int]:
        """What a route replace (NLM_F_REPLACE) matches on: the kernel sends no
        RTM_DELROUTE for the route it replaced."""
        return (self.family, self.table_id, self.dst, self.dst_len, self.tos, self.priority)


def parse_route(data: bytes | memoryview, offset: int = 0) -> RouteMsg:
    """Decode one netlink route message starting at ``offset`` (header included)."""
    length, msg_type, nl_flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
    family, dst_len, _src_len, tos, table, protocol, scope, rtype, rflags = _RTMSG.unpack_from(
        data, offset + 16
    )
    attrs: dict[str, Any] = {}
    pos = offset + 16 + _RTMSG.size
    end = offset + length
    while pos + 4 <= end:
        alen, atype = _RTA.unpack_from(data, pos)
        if alen < 4:
            break
        atype &= _NLA_TYPE_MASK
        vstart, vend = pos + 4, pos + alen
        if atype == RTA_DST:
            attrs["dst"] = bytes(data[vstart:vend])
        elif atype == RTA_GATEWAY:
            attrs["gateway"] = bytes(data[vstart:vend])
        elif atype == RTA_PREFSRC:
            attrs["prefsrc"] = bytes(data[vstart:vend])
        elif atype == RTA_OIF:
            attrs["oif"] = _U32.unpack_from(data, vstart)[0]
        elif atype == RTA_PRIORITY:
            attrs["priority"] = _U32.unpack_from(data, vstart)[0]
        elif atype == RTA_TABLE:
            attrs["table_id"] = _U32.unpack_from(data, vstart)[0]
        elif atype == RTA_METRICS:
            mpos = vstart
            while mpos + 4 <= vend:
                mlen, mtype = _RTA.unpack_from(data, mpos)
                if mlen < 4:
                    break
                if mtype & _NLA_TYPE_MASK == RTAX_MTU and mlen >= 8:
                    attrs["mtu"] = _U32.unpack_from(data, mpos + 4)[0]
                mpos += (mlen + 3) & ~3
        pos += (alen + 3) & ~3
    attrs.setdefault("table_id", table)
    return RouteMsg(msg_type, nl_flags, family, dst_len, tos, table, protocol, scope, rtype, rflags, **attrs)


def _ip(raw: bytes) -> Addr | None:
    if len(raw) == 4:
        return ipaddress.IPv4Address(raw)
    if len(raw) == 16:
        return ipaddress.IPv6Address(raw)
    return None


def route_status(msg: RouteMsg, link_names: Mapping[int, str]) -> RouteStatus:
    """RouteStatus of a route message; ``link_names`` maps ifindex → name."""
    dst: Prefix | None = None
    # From an int: ipaddress would turn an address object back into text and parse it.
    if len(msg.dst) == 4:
        dst = ipaddress.IPv4Interface((int.from_bytes(msg.dst, "big"), msg.dst_len))
    elif len(msg.dst) == 16:
        dst = ipaddress.IPv6Interface((int.from_bytes(msg.dst, "big"), msg.dst_len))
    return RouteStatus.model_construct(
        family=Family(msg.family),
        dst=dst,
        src=_ip(msg.prefsrc) if msg.prefsrc else None,
        gateway=_ip(msg.gateway) if msg.gateway else None,
        out_link_index=msg.oif,
        out_link_name=link_names.get(msg.oif, "") if msg.oif else "",
        table=RoutingTable(msg.table),
        priority=msg.priority,
        scope=Scope(msg.scope),
        type=RouteType(msg.type),
        flags=RouteFlags(msg.flags),
        protocol=RouteProtocol(msg.protocol),
        mtu=msg.mtu,
    )
