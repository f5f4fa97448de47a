"""rtnetlink messages → LinkStatus / AddressStatus (as pyroute2 decodes them) and RouteStatus specs.

Pure functions over the message objects, so the status controllers and
``netctl plan`` share one translation.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from netd.kernel.links.bond import decode as decode_bond  # also registers the full IFLA_BOND_* table
from netd.kernel.sysfs import device_info
from netd.resources.address import AddressStatus
from netd.resources.enums import (
    AddressFlags,
    Family,
    LinkFlags,
    LinkType,
    OperationalState,
    Scope,
    VLANProtocol,
)
from netd.resources.link import BridgeMasterSpec, LinkStatus, STPSpec, VLANSpec

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


# Routes (by the ten thousand) are decoded by the lean codec, netd.kernel.rtnl_codec.

