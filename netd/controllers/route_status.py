"""RouteStatusController: every kernel route (both families, all tables) as a RouteStatus
(netd.md §2.6), from rtnetlink deltas.

The kernel removes IPv4 routes silently (no RTM_DELROUTE) when their link goes
down or is deleted, and when their preferred source address is deleted: on
those link/address events the IPv4 routes are re-read (one family, one dump).
"""

from __future__ import annotations

import socket
from collections.abc import Hashable, Iterable

from cosi import Context
from netd.kernel import rtnl_codec as codec
from netd.kernel import rtnl_events as ev
from netd.kernel.netlink import (
    AF_BRIDGE,
    NLM_F_REPLACE,
    ROUTE_GROUPS,
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_DELROUTE,
    RTM_GETLINK,
    RTM_GETROUTE,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    RTMGRP_IPV4_IFADDR,
)
from netd.resources.route import ROUTE_STATUS_TYPE

from .netlink_status import (
    NetlinkStatusController,
    address_record,
    link_record,
    publish,
    publish_all,
    route_record,
)

_ROUTE_FAMILIES = (socket.AF_INET, socket.AF_INET6)


class RouteStatusController(NetlinkStatusController):
    """Every kernel route (both families, all tables) as a RouteStatus, ID = RouteID."""

    name = "network.RouteStatusController"
    groups = ROUTE_GROUPS | RTMGRP_IPV4_IFADDR
    output_type = ROUTE_STATUS_TYPE

    def __init__(self, rcvbuf: int | None = None) -> None:
        super().__init__(rcvbuf)
        self._msgs: dict[Hashable, codec.RouteRecord] = {}
        self._by_replace: dict[Hashable, set[Hashable]] = {}

    async def resync(self, ctx: Context, family: int) -> None:
        self.resyncs += 1
        self.load_links(await ev.dump(RTM_GETLINK))
        dumped = await ev.dump(RTM_GETROUTE, family)
        if family == socket.AF_UNSPEC:
            stale = list(self._msgs)
        else:
            stale = [k for k, m in self._msgs.items() if m.family == family]
        touched = self._forget(stale)
        for _mtype, message in dumped:
            touched |= self._add(route_record(message)[1])
        if family == socket.AF_UNSPEC:
            publish_all(ctx, self.output_type, self.model)
        else:
            publish(ctx, self.output_type, self.model, sorted(touched))

    def _forget(self, keys: Iterable[Hashable]) -> set[str]:
        touched: set[str] = set()
        for k in list(keys):
            m = self._msgs.pop(k, None)
            if m is not None:
                rk = codec.route_replace_key(m)
                same = self._by_replace.get(rk)
                if same is not None:
                    same.discard(k)
                    if not same:
                        del self._by_replace[rk]
            touched |= self.model.remove(k)
        return touched

    def _add(self, m: codec.RouteRecord) -> set[str]:
        if m.family not in _ROUTE_FAMILIES:
            return set()
        key = codec.route_kernel_key(m)
        self._msgs[key] = m
        self._by_replace.setdefault(codec.route_replace_key(m), set()).add(key)
        status = codec.route_status(m, self.links)
        return self.model.add(key, status.id(), status)

    def apply(self, mtype: int, message: bytes) -> set[str]:
        if mtype in (RTM_NEWROUTE, RTM_DELROUTE):
            nl_flags, m = route_record(message)
            if mtype == RTM_DELROUTE:
                return self._forget([codec.route_kernel_key(m)])
            touched: set[str] = set()
            if nl_flags & NLM_F_REPLACE:
                touched = self._forget(self._by_replace.get(codec.route_replace_key(m), ()))
            return touched | self._add(m)
        if mtype == RTM_DELADDR:
            if address_record(message).family == socket.AF_INET:
                self._resync_families.add(socket.AF_INET)  # routes with that prefsrc went silently
            return set()
        if mtype in (RTM_NEWLINK, RTM_DELLINK):
            rec = link_record(message)
            if rec.family == AF_BRIDGE:
                return set()
            deleted = mtype == RTM_DELLINK
            renamed, went_down = self.track_link(rec, deleted)
            if deleted or went_down:
                self._resync_families.add(socket.AF_INET)  # IPv4 routes flushed without events
            if renamed and not deleted:  # outLinkName and IPv6 IDs contain the name
                index = rec.index
                touched = set()
                for m in list(self._msgs.values()):
                    if m.oif == index:
                        touched |= self._add(m)
                return touched
        return set()


