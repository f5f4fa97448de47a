"""rtnetlink messages (as pyroute2 decodes them) → LinkStatus / AddressStatus specs.

Pure functions over the message objects, so the status controllers and
``netctl plan`` share one translation.
"""

from __future__ import annotations

import ipaddress
from typing import Any

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


def link_status(msg: Any, with_sysfs: bool = True) -> tuple[str, LinkStatus]:
    """(name, LinkStatus) of an RTM_NEWLINK message."""
    name = msg.get_attr("IFLA_IFNAME") or ""
    kind, slave_kind, data = _linkinfo(msg)
    vlan = VLANSpec()
    bridge = BridgeMasterSpec()
    if kind == "vlan" and data is not None:
        vlan = VLANSpec(
            vlan_id=data.get_attr("IFLA_VLAN_ID") or 0,
            vlan_protocol=VLANProtocol(data.get_attr("IFLA_VLAN_PROTOCOL") or 0x8100),
        )
    elif kind == "bridge" and data is not None:
        bridge = BridgeMasterSpec(stp=STPSpec(enabled=bool(data.get_attr("IFLA_BR_STP_STATE"))))
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
        vlan=vlan,
        bridge_master=bridge,
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
