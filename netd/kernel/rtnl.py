"""Thin async rtnetlink adapter for the address and route spec controllers.

Lists links, addresses and routes as small frozen dataclasses and adds or
deletes one address or route per call. It holds no policy (what to add,
what to adopt, what to delete is decided by the pure functions of the
controllers): it only builds the exact messages of netd.md §5.2/§5.3 and maps
kernel errors to a few exception classes, so the controllers can treat
"already there", "link gone" and "anything else" differently.

Messages are built by hand (``ifaddrmsg``/``rtmsg``) rather than through
pyroute2's keyword processors: these fill in defaults of their own (table,
type, scope) and the controllers must control every header byte, because the
comparison with the kernel state depends on them. One :class:`Rtnl` is one
netlink socket and must stay in the asyncio task that created it.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import (
    RTM_DELADDR,
    RTM_DELROUTE,
    RTM_GETROUTE,
    RTM_NEWADDR,
    RTM_NEWROUTE,
    RTMGRP_IPV4_ROUTE,
    RTMGRP_IPV6_ROUTE,
    RTMGRP_LINK,
)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from netd.netip import Addr, Prefix

log = logging.getLogger("netd.rtnl")

#: Lifetime value meaning "forever" in IFA_CACHEINFO.
INFINITY_LIFE_TIME = 0xFFFFFFFF

#: Multicast groups of the watchers.
LINK_GROUPS = RTMGRP_LINK
ROUTE_GROUPS = RTMGRP_LINK | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE


# ---- errors -----------------------------------------------------------------------------


class KernelError(Exception):
    """A request the kernel refused; ``code`` is the errno."""

    def __init__(self, code: int, what: str) -> None:
        self.code = code
        super().__init__(f"{what}: {errno.errorcode.get(code, str(code))} ({code}): {_strerror(code)}")


class AlreadyExists(KernelError):
    """EEXIST: an equal (or conflicting) object is already there."""


class NotFound(KernelError):
    """ESRCH / EADDRNOTAVAIL / ENOENT on a delete: the object is already gone."""


class LinkMissing(KernelError):
    """ENODEV: the link vanished between listing and writing."""


def _strerror(code: int) -> str:
    return os.strerror(code)


def _map_error(e: NetlinkError, what: str) -> KernelError:
    code = abs(e.code)
    if code == errno.EEXIST:
        return AlreadyExists(code, what)
    if code in (errno.ESRCH, errno.EADDRNOTAVAIL, errno.ENOENT):
        return NotFound(code, what)
    if code == errno.ENODEV:
        return LinkMissing(code, what)
    return KernelError(code, what)


# ---- kernel objects ----------------------------------------------------------------------


@dataclass(frozen=True)
class KernelLink:
    index: int
    name: str
    hardware_addr: str  # "aa:bb:..." or ""


@dataclass(frozen=True)
class KernelAddress:
    """One address. ``flags`` is the 32-bit IFA_FLAGS (or the header byte when absent),
    ``header_flags`` the 8-bit ifa_flags; lifetimes are seconds left, None = forever."""

    index: int
    address: Prefix
    scope: int
    flags: int
    header_flags: int
    valid: int | None = None
    preferred: int | None = None
    broadcast: Addr | None = None


@dataclass(frozen=True)
class KernelRoute:
    """One route. ``dst`` None = default; ``table`` from RTA_TABLE (the header byte cannot
    hold tables above 255); ``oif`` 0 = none (also for multipath routes)."""

    family: int
    dst: Prefix | None
    gateway: Addr | None
    table: int
    priority: int
    oif: int = 0
    src: Addr | None = None
    scope: int = 0
    type: int = 1
    flags: int = 0
    protocol: int = 0
    mtu: int = 0


def _addr(text: Any) -> Addr | None:
    if not text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def decode_address(msg: Any) -> KernelAddress | None:
    local = msg.get_attr("IFA_LOCAL")
    text = local or msg.get_attr("IFA_ADDRESS")
    if not text:
        return None
    flags = msg.get_attr("IFA_FLAGS")
    header = int(msg["flags"])
    valid = preferred = None
    ci = msg.get_attr("IFA_CACHEINFO")
    if ci is not None:
        if ci["ifa_valid"] != INFINITY_LIFE_TIME:
            valid = int(ci["ifa_valid"])
        if ci["ifa_preferred"] != INFINITY_LIFE_TIME:
            preferred = int(ci["ifa_preferred"])
    return KernelAddress(
        index=int(msg["index"]),
        address=ipaddress.ip_interface(f"{text}/{msg['prefixlen']}"),
        scope=int(msg["scope"]),
        flags=int(flags) if flags is not None else header,
        header_flags=header,
        valid=valid,
        preferred=preferred,
        broadcast=_addr(msg.get_attr("IFA_BROADCAST")),
    )


def decode_route(msg: Any) -> KernelRoute | None:
    family = int(msg["family"])
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    dst_len = int(msg["dst_len"])
    dst_text = msg.get_attr("RTA_DST")
    dst: Prefix | None = None
    if dst_text or dst_len:
        base = dst_text or ("0.0.0.0" if family == socket.AF_INET else "::")
        dst = ipaddress.ip_interface(f"{base}/{dst_len}")
    mtu = 0
    metrics = msg.get_attr("RTA_METRICS")
    if metrics is not None:
        mtu = int(metrics.get_attr("RTAX_MTU") or 0)
    table = msg.get_attr("RTA_TABLE")
    return KernelRoute(
        family=family,
        dst=dst,
        gateway=_addr(msg.get_attr("RTA_GATEWAY")),
        table=int(table if table is not None else msg["table"]),
        priority=int(msg.get_attr("RTA_PRIORITY") or 0),
        oif=int(msg.get_attr("RTA_OIF") or 0),
        src=_addr(msg.get_attr("RTA_PREFSRC")),
        scope=int(msg["scope"]),
        type=int(msg["type"]),
        flags=int(msg["flags"]),
        protocol=int(msg["proto"]),
        mtu=mtu,
    )


def _family(x: Addr | Prefix) -> int:
    return socket.AF_INET if x.version == 4 else socket.AF_INET6


# ---- the socket ----------------------------------------------------------------------------


class Rtnl:
    """One rtnetlink socket (opened lazily, in the task that uses it)."""

    def __init__(self) -> None:
        self._ipr: AsyncIPRoute | None = None

    async def _sock(self) -> AsyncIPRoute:
        if self._ipr is None:
            # groups=0: pyroute2 joins its default multicast groups otherwise, and the events
            # would pile up unread in this request socket's queue.
            self._ipr = AsyncIPRoute(groups=0)
            await self._ipr.setup_endpoint()
        return self._ipr

    def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    async def __aenter__(self) -> Rtnl:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def _request(self, msg: Any, msg_type: int, flags: int, what: str) -> None:
        ipr = await self._sock()
        try:
            resp = await ipr.nlm_request(msg, msg_type, flags)
            async for _ in resp:
                pass
        except NetlinkError as e:
            raise _map_error(e, what) from None

    # ---- dumps

    async def links(self) -> list[KernelLink]:
        ipr = await self._sock()
        return [
            KernelLink(int(m["index"]), m.get_attr("IFLA_IFNAME") or "", m.get_attr("IFLA_ADDRESS") or "")
            async for m in await ipr.link("dump")
        ]

    async def addresses(self) -> list[KernelAddress]:
        ipr = await self._sock()
        out = []
        async for m in await ipr.addr("dump"):
            a = decode_address(m)
            if a is not None:
                out.append(a)
        return out

    async def routes(self) -> list[KernelRoute]:
        """Every route of every table and family."""
        ipr = await self._sock()
        q = rtmsg()
        q["family"] = socket.AF_UNSPEC
        out = []
        async for m in await ipr.nlm_request(q, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP):
            r = decode_route(m)
            if r is not None:
                out.append(r)
        return out

    # ---- addresses

    async def add_address(
        self,
        index: int,
        address: Prefix,
        scope: int,
        flags: int,
        *,
        valid: int | None = None,
        preferred: int | None = None,
        replace: bool = False,
    ) -> None:
        """RTM_NEWADDR (create+exclusive, or replace): header flags = low 8 bits of
        ``flags``, IFA_ADDRESS = IFA_LOCAL = IP, IFA_BROADCAST = IP | ~mask for IPv4
        prefixes up to /30 (a /31 or /32 has no broadcast address), IFA_FLAGS = flags,
        IFA_CACHEINFO only for finite lifetimes (None = forever)."""
        msg = ifaddrmsg()
        msg["family"] = _family(address)
        msg["prefixlen"] = address.network.prefixlen
        msg["flags"] = flags & 0xFF
        msg["scope"] = scope
        msg["index"] = index
        ip = str(address.ip)
        attrs: list[tuple[str, Any]] = [("IFA_ADDRESS", ip), ("IFA_LOCAL", ip)]
        if address.version == 4 and address.network.prefixlen < 31:
            attrs.append(("IFA_BROADCAST", str(address.network.broadcast_address)))
        attrs.append(("IFA_FLAGS", flags))
        if valid is not None or preferred is not None:
            v = INFINITY_LIFE_TIME if valid is None else valid
            p = INFINITY_LIFE_TIME if preferred is None else min(preferred, v)
            attrs.append(("IFA_CACHEINFO", {"ifa_preferred": p, "ifa_valid": v, "cstamp": 0, "tstamp": 0}))
        msg["attrs"] = attrs
        mode = NLM_F_REPLACE if replace else NLM_F_EXCL
        await self._request(
            msg, RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | mode, f"add address {address}"
        )

    async def delete_address(self, index: int, address: Prefix) -> None:
        msg = ifaddrmsg()
        msg["family"] = _family(address)
        msg["prefixlen"] = address.network.prefixlen
        msg["index"] = index
        ip = str(address.ip)
        msg["attrs"] = [("IFA_LOCAL", ip), ("IFA_ADDRESS", ip)]
        await self._request(msg, RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, f"delete address {address}")

    # ---- routes

    @staticmethod
    def _route_msg(r: KernelRoute, full: bool) -> Any:
        msg = rtmsg()
        msg["family"] = r.family
        msg["dst_len"] = r.dst.network.prefixlen if r.dst is not None else 0
        msg["src_len"] = 0
        msg["table"] = r.table if r.table < 256 else 252  # RT_TABLE_COMPAT; RTA_TABLE has it
        msg["proto"] = r.protocol
        msg["scope"] = r.scope if full else 0
        msg["type"] = r.type
        msg["flags"] = r.flags if full else 0
        attrs: list[tuple[str, Any]] = []
        if r.dst is not None:
            attrs.append(("RTA_DST", str(r.dst.network.network_address)))
        if r.src is not None and full:
            attrs.append(("RTA_PREFSRC", str(r.src)))
        if r.gateway is not None:
            attrs.append(("RTA_GATEWAY", str(r.gateway)))
        if r.oif:
            attrs.append(("RTA_OIF", r.oif))
        if r.priority:
            attrs.append(("RTA_PRIORITY", r.priority))
        attrs.append(("RTA_TABLE", r.table))
        if r.mtu and full:
            attrs.append(("RTA_METRICS", {"attrs": [("RTAX_MTU", r.mtu)]}))
        msg["attrs"] = attrs
        return msg

    async def add_route(self, r: KernelRoute) -> None:
        """RTM_NEWROUTE, create+exclusive (no replace), every attribute of netd.md §5.3."""
        await self._request(
            self._route_msg(r, True),
            RTM_NEWROUTE,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            f"add route {describe_route(r)}",
        )

    async def delete_route(self, r: KernelRoute) -> None:
        """RTM_DELROUTE of exactly this route (key, gateway, out link, protocol, type)."""
        await self._request(
            self._route_msg(r, False),
            RTM_DELROUTE,
            NLM_F_REQUEST | NLM_F_ACK,
            f"delete route {describe_route(r)}",
        )


def describe_route(r: KernelRoute) -> str:
    """``10.0.0.0/8 via 10.1.0.1 table 180 metric 50`` (log text)."""
    parts = [str(r.dst.network) if r.dst is not None else "default"]
    if r.gateway is not None:
        parts.append(f"via {r.gateway}")
    if r.oif:
        parts.append(f"oif {r.oif}")
    if r.table != 254:
        parts.append(f"table {r.table}")
    parts.append(f"metric {r.priority}")
    return " ".join(parts)


# ---- gratuitous ARP ------------------------------------------------------------------------

ETH_P_ARP = 0x0806


def gratuitous_arp_frame(mac: str, ip: ipaddress.IPv4Address) -> bytes:
    """One gratuitous ARP *request* (netd.md §5.2): sender = target = ``ip``, sender MAC =
    the link's, target MAC and Ethernet destination = broadcast."""
    hw = bytes.fromhex(mac.replace(":", ""))
    if len(hw) != 6:
        raise ValueError(f"not a 6-byte MAC: {mac!r}")
    bcast = b"\xff" * 6
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + hw + ip.packed + bcast + ip.packed
    return bcast + hw + struct.pack("!H", ETH_P_ARP) + arp


def send_gratuitous_arp(ifname: str, mac: str, ip: ipaddress.IPv4Address) -> None:
    """Announce ``ip`` on ``ifname`` (OSError on failure: the caller only logs it)."""
    frame = gratuitous_arp_frame(mac, ip)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as s:
        s.bind((ifname, ETH_P_ARP))
        s.send(frame)


# ---- watching ------------------------------------------------------------------------------


async def watch(groups: int, on_event: Callable[[], None], retry_delay: float = 1.0) -> None:
    """Call ``on_event`` for every message of the rtnetlink multicast ``groups``, forever.

    A socket error (ENOBUFS after an overflow: events were lost) also calls
    ``on_event`` (the controllers re-read everything anyway) and reopens the
    socket. Cancel the task to stop.
    """
    while True:
        ipr = AsyncIPRoute()
        try:
            await ipr.bind(groups=groups)
            on_event()  # anything that happened before the bind
            while True:
                async for _ in _messages(ipr):
                    on_event()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # overflow or a broken socket: resync and start over
            log.debug("rtnetlink watch: %s; resyncing", e)
            on_event()
            await asyncio.sleep(retry_delay)
        finally:
            ipr.close()


async def _messages(ipr: AsyncIPRoute) -> AsyncIterator[Any]:
    async for m in ipr.get():
        yield m
