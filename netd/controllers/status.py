"""Status controllers: the kernel's links, addresses and routes as resources (netd.md §5.7),
plus HardwareAddr (§2.12) and NetworkStatus (§7.2).

Event handling (decisions.md "Runtime"): each netlink controller opens ONE
rtnetlink socket joined to the groups it needs (:class:`RtnlEvents`), dumps
the kernel once at start, and from then on applies every event as a delta to
an in-memory model keyed by the kernel's identity of the object, writing only
the resources the event touched. A full resync (dump and reconcile every
resource) happens only at start and when the socket overflowed (ENOBUFS). No
polling, no rate limiter: a burst of events costs one reconcile that applies
them all.

The one exception the kernel forces: it removes IPv4 routes silently (no
RTM_DELROUTE) when their link goes down or is deleted, and when their
preferred source address is deleted. On those link/address events the route
controller re-reads the IPv4 routes (one family, one dump) instead of guessing
what the kernel flushed.

The models keep several kernel objects per resource ID when IDs collide (the
RouteID has no ``tos``, no out-link for IPv4, and the table byte of tables
above 255): deleting one of them then republishes another instead of losing
the resource.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
from collections.abc import Hashable, Iterable
from typing import Any

from pydantic import BaseModel

from cosi import Context, Controller, Input, InputKind, Output, OutputKind
from cosi.resource import Event, EventType, Phase
from netd.kernel import rtnl_codec as codec
from netd.kernel import rtnl_events as ev
from netd.kernel.ethtool import Ethtool
from netd.kernel.rtnl_decode import link_status
from netd.kernel.wireguard import WireguardDevice, is_userspace_device, key_to_b64, read_device
from netd.resources.address import ADDRESS_STATUS_TYPE
from netd.resources.enums import LinkFlags
from netd.resources.files import ETC_FILE_STATUS_TYPE
from netd.resources.hardware import HARDWARE_ADDR_TYPE, HardwareAddr
from netd.resources.hostname import HOSTNAME_STATUS_TYPE
from netd.resources.ids import (
    ETC_HOSTS_ID,
    ETC_RESOLV_CONF_ID,
    HARDWARE_ADDR_FIRST_ID,
    HOSTNAME_ID,
    NETWORK_STATUS_ID,
    NODE_ADDRESS_CURRENT_ID,
    address_id,
)
from netd.resources.link import LINK_REFRESH_TYPE, LINK_STATUS_TYPE, LinkStatus
from netd.resources.namespaces import FILES, NETWORK
from netd.resources.nodeaddress import NODE_ADDRESS_TYPE
from netd.resources.route import ROUTE_STATUS_TYPE
from netd.resources.status import NETWORK_STATUS_TYPE, NetworkStatus

AF_BRIDGE = 7
_ROUTE_FAMILIES = (socket.AF_INET, socket.AF_INET6)

log = logging.getLogger("netd.controllers.status")


# ---- the delta model --------------------------------------------------------------------


class StatusModel:
    """Kernel objects by kernel key, grouped by resource ID.

    Pure bookkeeping (no I/O): ``add``/``remove`` return the IDs whose
    published resource may have changed; :meth:`desired` says what each of
    them should now be (None = destroy). The first object added under an ID
    is the one published while several share it.
    """

    def __init__(self) -> None:
        self._id_of: dict[Hashable, str] = {}
        self._groups: dict[str, dict[Hashable, BaseModel]] = {}

    def __len__(self) -> int:
        return len(self._id_of)

    def keys(self) -> list[Hashable]:
        return list(self._id_of)

    def ids(self) -> set[str]:
        return set(self._groups)

    def get(self, key: Hashable) -> BaseModel | None:
        id_ = self._id_of.get(key)
        return None if id_ is None else self._groups[id_].get(key)

    def add(self, key: Hashable, id_: str, spec: BaseModel) -> set[str]:
        touched = self.remove(key) if self._id_of.get(key) not in (None, id_) else set()
        self._id_of[key] = id_
        self._groups.setdefault(id_, {})[key] = spec
        touched.add(id_)
        return touched

    def remove(self, key: Hashable) -> set[str]:
        id_ = self._id_of.pop(key, None)
        if id_ is None:
            return set()
        group = self._groups[id_]
        group.pop(key, None)
        if not group:
            del self._groups[id_]
        return {id_}

    def clear(self, keys: Iterable[Hashable] | None = None) -> set[str]:
        """Forget the given keys (default: all); the IDs they had."""
        touched: set[str] = set()
        if keys is None:
            touched.update(self._groups)
            self._id_of.clear()
            self._groups.clear()
            return touched
        for k in list(keys):
            touched |= self.remove(k)
        return touched

    def desired(self, id_: str) -> BaseModel | None:
        group = self._groups.get(id_)
        return next(iter(group.values())) if group else None


def publish(ctx: Context, type_: str, model: StatusModel, ids: Iterable[str]) -> None:
    """Write the model's view of ``ids`` to the state: put, or destroy when gone.

    Resources of this type owned by another controller (AddressStatus is a
    shared output: the platform's ``external/*``) are never touched.
    """
    for id_ in ids:
        spec = model.desired(id_)
        cur = ctx.state.get(NETWORK, type_, id_)
        if cur is not None and cur.md.owner != ctx.name:
            continue
        if spec is None:
            if cur is not None:
                if cur.md.phase is Phase.RUNNING and not ctx.teardown(NETWORK, type_, id_):
                    continue
                if not cur.md.finalizers:
                    ctx.destroy(NETWORK, type_, id_)
            continue
        if cur is not None and cur.md.phase is Phase.TEARING_DOWN:
            if cur.md.finalizers:
                continue
            ctx.destroy(NETWORK, type_, id_)
        ctx.put(NETWORK, type_, id_, spec)


def publish_all(ctx: Context, type_: str, model: StatusModel) -> None:
    """After a resync: every ID of the model, and every owned resource the model lacks."""
    ids = model.ids() | {r.md.id for r in ctx.owned(NETWORK, type_)}
    publish(ctx, type_, model, sorted(ids))


# ---- the common netlink controller --------------------------------------------------------


class NetlinkStatusController(Controller):
    """A status controller fed by one rtnetlink event socket.

    ``run`` opens the socket before the first dump (so nothing between dump and
    subscription is lost) and keeps the ordinary wait/reconcile loop, so the
    runtime sees it idle between event bursts (``Runtime.settle``).
    """

    groups = 0
    output_type = ""
    output_kind = OutputKind.EXCLUSIVE

    def __init__(self, rcvbuf: int | None = None) -> None:
        self.rcvbuf = rcvbuf
        self.model = StatusModel()
        self.links: dict[int, str] = {}
        self.link_up: dict[int, bool] = {}
        self.resyncs = 0
        self._events: ev.RtnlEvents | None = None
        self._resync_families: set[int] = set()

    def outputs(self) -> list[Output]:
        return [Output(NETWORK, self.output_type, self.output_kind)]

    @property
    def overflows(self) -> int:
        """How often the event socket overflowed (ENOBUFS) since ``run`` started."""
        return self._events.overflows if self._events is not None else 0

    async def run(self, ctx: Context) -> None:
        self._events = ev.RtnlEvents(self.groups, ctx.trigger, self.rcvbuf)
        self._events.open()
        self._resync_families = {socket.AF_UNSPEC}
        try:
            await super().run(ctx)
        finally:
            self._events.close()
            self._events = None

    async def reconcile(self, ctx: Context) -> None:
        assert self._events is not None
        overflowed, datagrams = self._events.take()
        if overflowed:
            ctx.log.info("netlink socket overflowed (ENOBUFS): full resync")
            self._resync_families.add(socket.AF_UNSPEC)
        if socket.AF_UNSPEC in self._resync_families:
            self._resync_families.clear()
            # The queued events predate the dump, which supersedes them.
            await self.resync(ctx, socket.AF_UNSPEC)
            return
        touched: set[str] = set()
        for datagram in datagrams:
            for mtype, message in ev.split(datagram):
                touched |= self.apply(mtype, message)
        publish(ctx, self.output_type, self.model, sorted(touched))
        if self._resync_families:
            # A partial resync (one family) after the events, so it has the last word.
            families, self._resync_families = self._resync_families, set()
            await self.resync(ctx, families.pop() if len(families) == 1 else socket.AF_UNSPEC)

    async def resync(self, ctx: Context, family: int) -> None:
        raise NotImplementedError

    def apply(self, mtype: int, message: bytes) -> set[str]:
        """Apply one event to the model; the IDs it touched."""
        raise NotImplementedError

    # Link-name tracking shared by the address and route controllers.

    def track_link(self, msg: Any, deleted: bool) -> tuple[bool, bool]:
        """Update index → name: (the name changed, the link went down or away).

        A link first seen now counts as a name change: an address or route event
        may have come before its link's (the link appeared between our link dump
        and the address/route dump), and was published without the name.
        """
        index = msg["index"]
        was_up = self.link_up.get(index, False)
        if deleted:
            self.links.pop(index, None)
            self.link_up.pop(index, None)
            return False, was_up
        old = self.links.get(index)
        name = msg.get_attr("IFLA_IFNAME") or ""
        up = bool(msg["flags"] & LinkFlags.UP)
        self.links[index] = name
        self.link_up[index] = up
        return old != name, was_up and not up

    def load_links(self, dumped: list[tuple[int, bytes]]) -> None:
        self.links.clear()
        self.link_up.clear()
        for _mtype, message in dumped:
            msg = ev.decode_one(message)
            if msg["family"] != AF_BRIDGE:
                self.track_link(msg, deleted=False)


# ---- links ------------------------------------------------------------------------------

PCI_DEVICES = "/sys/bus/pci/devices"
PCI_IDS = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids")


@functools.cache
def _pci_db() -> dict[tuple[int, int | None], str]:
    """pci.ids names: (vendor, None) → vendor name, (vendor, device) → product name.
    Empty when the database is not installed (the names are then left out)."""
    db: dict[tuple[int, int | None], str] = {}
    for path in PCI_IDS:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                vendor: int | None = None
                for line in f:
                    if not line.strip() or line.startswith("#"):
                        continue
                    if line.startswith("C "):
                        break  # device classes follow: not needed
                    if not line.startswith("\t"):
                        vendor = int(line[:4], 16)
                        db[(vendor, None)] = line[4:].strip()
                    elif vendor is not None and not line.startswith("\t\t"):
                        db[(vendor, int(line[1:5], 16))] = line[5:].strip()
        except (OSError, ValueError):
            continue
        break
    return db


def pci_info(bus_path: str, root: str = PCI_DEVICES) -> dict[str, str]:
    """vendorID/productID (``0x%04x``) and their pci.ids names for a PCI bus path (netd.md §2.5)."""
    if not bus_path or "/" in bus_path:
        return {}
    try:
        with open(os.path.join(root, bus_path, "vendor")) as f:
            vendor = int(f.read().strip(), 16)
        with open(os.path.join(root, bus_path, "device")) as f:
            device = int(f.read().strip(), 16)
    except (OSError, ValueError):
        return {}
    db = _pci_db()
    return {
        "vendor_id": f"0x{vendor:04x}",
        "product_id": f"0x{device:04x}",
        "vendor": db.get((vendor, None), ""),
        "product": db.get((vendor, device), ""),
    }


# ---- WireGuard ----------------------------------------------------------------------------

#: Seconds between re-reads of the WireGuard devices (handshake time, rx/tx bytes change
#: without any netlink event). The only polling of the status controllers, and only while
#: WireGuard links exist.
WIREGUARD_REFRESH = 5.0
#: A device that does not answer (a stuck wireguard-go) must not hold up the link status.
WIREGUARD_READ_TIMEOUT = 2.0

WIREGUARD_KIND = "wireguard"
USERSPACE_KIND = "tun"


def wireguard_status(status: LinkStatus, device: WireguardDevice | None) -> LinkStatus:
    """A WireGuard link's LinkStatus (decisions.md "WireGuard backends"): ``kind: wireguard``
    also for a wireguard-go ``tun``, and the device's spec (public key, listen port, fwmark,
    peers with last handshake and rx/tx bytes) when it could be read."""
    upd: dict[str, Any] = {"kind": WIREGUARD_KIND}
    if device is not None:
        spec = device.to_spec()
        sessions = {key_to_b64(p.public_key): p for p in device.peers}
        peers = []
        for peer in spec.peers:
            info = sessions.get(peer.public_key)
            if info is not None:
                hs = info.last_handshake_time
                peer = peer.model_copy(
                    update={
                        "last_handshake_time": hs.replace(microsecond=0) if hs is not None else None,
                        "rx_bytes": info.rx_bytes,
                        "tx_bytes": info.tx_bytes,
                    }
                )
            peers.append(peer)
        upd["wireguard"] = spec.model_copy(update={"peers": peers})
    return status.model_copy(update=upd)


class LinkStatusController(NetlinkStatusController):
    """Every kernel link as a LinkStatus (netd.md §2.5), ID = link name.

    WireGuard links (kernel, or a wireguard-go ``tun`` with its UAPI socket) get their
    ``wireguard`` block from the device API: re-read after each link event, each
    LinkRefresh ``wireguard`` bump (the link spec controller reconfigured a device) and
    every :data:`WIREGUARD_REFRESH` seconds while such links exist.
    """

    name = "network.LinkStatusController"
    groups = ev.RTMGRP_LINK
    output_type = LINK_STATUS_TYPE

    def __init__(self, rcvbuf: int | None = None, sysfs: bool = True) -> None:
        super().__init__(rcvbuf)
        self.sysfs = sysfs
        self.ethtool = Ethtool()
        #: ifindex → (name, rtnetlink kind) of the WireGuard links, and of the ``tun``
        #: links that may become one (wireguard-go creates its socket after its tun).
        self.wg_links: dict[int, tuple[str, str]] = {}
        self.tun_links: dict[int, str] = {}
        self.wg_devices: dict[int, WireguardDevice] = {}

    def inputs(self) -> list[Input]:
        return [Input(NETWORK, LINK_REFRESH_TYPE, InputKind.WEAK)]

    async def run(self, ctx: Context) -> None:
        ticker = asyncio.create_task(self._wireguard_ticker(ctx), name=f"{self.name}.wireguard")
        try:
            await super().run(ctx)
        finally:
            ticker.cancel()

    async def _wireguard_ticker(self, ctx: Context) -> None:
        # Polling, the one exception (see WIREGUARD_REFRESH): a WireGuard session's
        # handshake time and counters change without netlink events. Idle without
        # WireGuard links.
        while True:
            await asyncio.sleep(WIREGUARD_REFRESH)
            if self.wg_links:
                ctx.trigger()

    async def reconcile(self, ctx: Context) -> None:
        await super().reconcile(ctx)
        await self.refresh_wireguard(ctx)

    async def refresh_wireguard(self, ctx: Context) -> None:
        """Re-read every WireGuard device; publish the links whose block changed."""
        for index, name in list(self.tun_links.items()):
            if is_userspace_device(name, USERSPACE_KIND):
                del self.tun_links[index]
                self.wg_links[index] = (name, USERSPACE_KIND)
        touched: set[str] = set()
        for index, (name, kind) in list(self.wg_links.items()):
            try:
                device = await asyncio.wait_for(read_device(name, kind), WIREGUARD_READ_TIMEOUT)
            except Exception as e:  # gone meanwhile, stuck, refused: the next event/tick retries
                ctx.log.debug("wireguard %s: cannot read the device: %s", name, e)
                continue
            if device is None or device == self.wg_devices.get(index):
                continue
            self.wg_devices[index] = device
            cur = self.model.get(index)
            if isinstance(cur, LinkStatus):
                touched |= self.model.add(index, name, wireguard_status(cur, device))
        if touched:
            publish(ctx, self.output_type, self.model, sorted(touched))

    def _wireguard(self, index: int, name: str, status: LinkStatus) -> LinkStatus:
        """Track WireGuard links; decorate their status with the last device read."""
        kind = status.kind
        self.tun_links.pop(index, None)
        if kind == WIREGUARD_KIND or (kind == USERSPACE_KIND and is_userspace_device(name, kind)):
            if self.wg_links.get(index, (name, kind)) != (name, kind):
                self.wg_devices.pop(index, None)
            self.wg_links[index] = (name, kind)
            return wireguard_status(status, self.wg_devices.get(index))
        self.forget_wireguard(index)
        if kind == USERSPACE_KIND:
            self.tun_links[index] = name
        return status

    def forget_wireguard(self, index: int) -> None:
        self.wg_links.pop(index, None)
        self.wg_devices.pop(index, None)
        self.tun_links.pop(index, None)

    def status(self, msg: Any) -> tuple[str, LinkStatus]:
        """The full LinkStatus: rtnetlink, sysfs, then ethtool for what it knows (and the
        WireGuard device for a WireGuard link)."""
        name, status = self._status(msg)
        return name, self._wireguard(msg["index"], name, status)

    def _status(self, msg: Any) -> tuple[str, LinkStatus]:
        name, status = link_status(msg, with_sysfs=self.sysfs)
        info = self.ethtool.info(name)
        return name, status.model_copy(
            update={
                "link_state": info.link_state,
                "speed_mbit": info.speed_mbit,
                "port": info.port,
                "duplex": info.duplex,
                "driver": status.driver or info.driver,
                "bus_path": status.bus_path or info.bus_info,
                "driver_version": info.driver_version,
                "firmware_version": info.firmware_version,
                **pci_info(status.bus_path or info.bus_info),
            }
        )

    async def resync(self, ctx: Context, family: int) -> None:
        self.resyncs += 1
        dumped = await ev.dump(ev.RTM_GETLINK)
        self.model.clear()
        present: set[int] = set()
        for _mtype, message in dumped:
            msg = ev.decode_one(message)
            if msg["family"] == AF_BRIDGE:
                continue
            present.add(msg["index"])
            name, status = self.status(msg)
            self.model.add(msg["index"], name, status)
        for index in (set(self.wg_links) | set(self.tun_links)) - present:
            self.forget_wireguard(index)
        publish_all(ctx, self.output_type, self.model)

    def apply(self, mtype: int, message: bytes) -> set[str]:
        if mtype not in (ev.RTM_NEWLINK, ev.RTM_DELLINK):
            return set()
        msg = ev.decode_one(message)
        if msg["family"] == AF_BRIDGE:  # bridge port events, not the link itself
            return set()
        if mtype == ev.RTM_DELLINK:
            self.forget_wireguard(msg["index"])
            return self.model.remove(msg["index"])
        name, status = self.status(msg)
        return self.model.add(msg["index"], name, status)


# ---- addresses ----------------------------------------------------------------------------


def _address_key(a: codec.AddressRecord) -> tuple[int, int, int, int]:
    ip = a.ip
    return (a.family, a.index, -1 if ip is None else int(ip), a.prefixlen)


def _address(message: bytes) -> codec.AddressRecord:
    """The record of one RTM_NEWADDR/RTM_DELADDR message, by the lean codec."""
    msg = codec.decode(message)[0]
    assert isinstance(msg.body, codec.AddressRecord)
    return msg.body


def _route(message: bytes) -> tuple[int, codec.RouteRecord]:
    """(netlink flags, record) of one RTM_NEWROUTE/RTM_DELROUTE message, by the lean codec."""
    msg = codec.decode(message)[0]
    assert isinstance(msg.body, codec.RouteRecord)
    return msg.flags, msg.body


class AddressStatusController(NetlinkStatusController):
    """Every kernel address (both families) as an AddressStatus, ID = AddressID.

    A shared output: the platform controller writes ``external/*`` ones, which
    this controller never touches.
    """

    name = "network.AddressStatusController"
    groups = ev.RTMGRP_LINK | ev.RTMGRP_IPV4_IFADDR | ev.RTMGRP_IPV6_IFADDR
    output_type = ADDRESS_STATUS_TYPE
    output_kind = OutputKind.SHARED

    def __init__(self, rcvbuf: int | None = None) -> None:
        super().__init__(rcvbuf)
        self._msgs: dict[tuple[int, int, int, int], codec.AddressRecord] = {}

    async def resync(self, ctx: Context, family: int) -> None:
        self.resyncs += 1
        self.load_links(await ev.dump(ev.RTM_GETLINK))
        dumped = await ev.dump(ev.RTM_GETADDR)
        self.model.clear()
        self._msgs.clear()
        for _mtype, message in dumped:
            self._add(_address(message))
        publish_all(ctx, self.output_type, self.model)

    def _add(self, rec: codec.AddressRecord) -> set[str]:
        key = _address_key(rec)
        self._msgs[key] = rec
        status = codec.address_status(rec, self.links.get(rec.index, ""))
        return self.model.add(key, address_id(status.link_name, status.address), status)

    def apply(self, mtype: int, message: bytes) -> set[str]:
        if mtype in (ev.RTM_NEWADDR, ev.RTM_DELADDR):
            rec = _address(message)
            if mtype == ev.RTM_NEWADDR:
                return self._add(rec)
            key = _address_key(rec)
            self._msgs.pop(key, None)
            return self.model.remove(key)
        if mtype in (ev.RTM_NEWLINK, ev.RTM_DELLINK):
            msg = ev.decode_one(message)
            if msg["family"] == AF_BRIDGE:
                return set()
            deleted = mtype == ev.RTM_DELLINK
            renamed, _down = self.track_link(msg, deleted)
            index = msg["index"]
            mine = [k for k in self._msgs if k[1] == index]
            if deleted:
                for k in mine:
                    self._msgs.pop(k, None)
                return self.model.clear(mine)
            if renamed:  # the IDs contain the link name
                touched: set[str] = set()
                for k in mine:
                    touched |= self._add(self._msgs[k])
                return touched
        return set()


# ---- routes ---------------------------------------------------------------------------------


class RouteStatusController(NetlinkStatusController):
    """Every kernel route (both families, all tables) as a RouteStatus, ID = RouteID."""

    name = "network.RouteStatusController"
    groups = ev.RTMGRP_LINK | ev.RTMGRP_IPV4_IFADDR | ev.RTMGRP_IPV4_ROUTE | ev.RTMGRP_IPV6_ROUTE
    output_type = ROUTE_STATUS_TYPE

    def __init__(self, rcvbuf: int | None = None) -> None:
        super().__init__(rcvbuf)
        self._msgs: dict[Hashable, codec.RouteRecord] = {}
        self._by_replace: dict[Hashable, set[Hashable]] = {}

    async def resync(self, ctx: Context, family: int) -> None:
        self.resyncs += 1
        self.load_links(await ev.dump(ev.RTM_GETLINK))
        dumped = await ev.dump(ev.RTM_GETROUTE, family)
        if family == socket.AF_UNSPEC:
            stale = list(self._msgs)
        else:
            stale = [k for k, m in self._msgs.items() if m.family == family]
        touched = self._forget(stale)
        for _mtype, message in dumped:
            touched |= self._add(_route(message)[1])
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
        if mtype in (ev.RTM_NEWROUTE, ev.RTM_DELROUTE):
            nl_flags, m = _route(message)
            if mtype == ev.RTM_DELROUTE:
                return self._forget([codec.route_kernel_key(m)])
            touched: set[str] = set()
            if nl_flags & ev.NLM_F_REPLACE:
                touched = self._forget(self._by_replace.get(codec.route_replace_key(m), ()))
            return touched | self._add(m)
        if mtype == ev.RTM_DELADDR:
            if _address(message).family == socket.AF_INET:
                self._resync_families.add(socket.AF_INET)  # routes with that prefsrc went silently
            return set()
        if mtype in (ev.RTM_NEWLINK, ev.RTM_DELLINK):
            msg = ev.decode_one(message)
            if msg["family"] == AF_BRIDGE:
                return set()
            deleted = mtype == ev.RTM_DELLINK
            renamed, went_down = self.track_link(msg, deleted)
            if deleted or went_down:
                self._resync_families.add(socket.AF_INET)  # IPv4 routes flushed without events
            if renamed and not deleted:  # outLinkName and IPv6 IDs contain the name
                index = msg["index"]
                touched = set()
                for m in list(self._msgs.values()):
                    if m.oif == index:
                        touched |= self._add(m)
                return touched
        return set()


# ---- derived statuses ----------------------------------------------------------------------


def first_physical(links: Iterable[tuple[str, LinkStatus]]) -> HardwareAddr | None:
    """HardwareAddr of the first physical link in name order (netd.md §2.12)."""
    for name, status in sorted(links, key=lambda x: x[0]):
        if status.physical():
            return HardwareAddr(name=name, hardware_addr=status.hardware_addr)
    return None


class HardwareAddrController(Controller):
    """HardwareAddr ``first``: the first physical link's MAC; destroyed when there is none."""

    name = "network.HardwareAddrController"

    def inputs(self) -> list[Input]:
        return [Input(NETWORK, LINK_STATUS_TYPE)]

    def outputs(self) -> list[Output]:
        return [Output(NETWORK, HARDWARE_ADDR_TYPE)]

    async def reconcile(self, ctx: Context) -> None:
        links = [(r.md.id, r.spec) for r in ctx.list(NETWORK, LINK_STATUS_TYPE)]
        first = first_physical((n, s) for n, s in links if isinstance(s, LinkStatus))
        ctx.reconcile_owned(NETWORK, HARDWARE_ADDR_TYPE, {HARDWARE_ADDR_FIRST_ID: first} if first else {})


def network_status(
    current_addresses: int, has_default_route: bool, has_hostname: bool, etc_files: bool
) -> NetworkStatus:
    return NetworkStatus(
        address_ready=current_addresses > 0,
        connectivity_ready=has_default_route,
        hostname_ready=has_hostname,
        etc_files_ready=etc_files,
    )


class StatusController(Controller):
    """NetworkStatus ``status`` (netd.md §7.2). Connectivity is "a default route
    exists" (ProbeStatus is not supported yet)."""

    name = "network.StatusController"

    def inputs(self) -> list[Input]:
        return [
            Input(NETWORK, NODE_ADDRESS_TYPE, id=NODE_ADDRESS_CURRENT_ID),
            Input(NETWORK, ROUTE_STATUS_TYPE),
            Input(NETWORK, HOSTNAME_STATUS_TYPE, id=HOSTNAME_ID),
            Input(FILES, ETC_FILE_STATUS_TYPE),
        ]

    def outputs(self) -> list[Output]:
        return [Output(NETWORK, NETWORK_STATUS_TYPE)]

    def __init__(self) -> None:
        # IDs of RouteStatus resources without a destination, kept from state events so
        # that a reconcile is O(1) instead of a scan of every route (10,000 on a big node).
        self._defaults: set[str] = set()

    def _on_route(self, ev: Event) -> None:
        r = ev.resource
        if r is None:
            return
        if ev.type is not EventType.DESTROYED and getattr(r.spec, "dst", 1) is None:
            self._defaults.add(r.id)
        else:
            self._defaults.discard(r.id)

    async def run(self, ctx: Context) -> None:
        unsubscribe = ctx.state.subscribe(NETWORK, ROUTE_STATUS_TYPE, self._on_route)
        self._defaults = {
            r.id for r in ctx.list(NETWORK, ROUTE_STATUS_TYPE) if getattr(r.spec, "dst", 1) is None
        }
        try:
            await super().run(ctx)
        finally:
            unsubscribe()

    async def reconcile(self, ctx: Context) -> None:
        current = ctx.get(NETWORK, NODE_ADDRESS_TYPE, NODE_ADDRESS_CURRENT_ID)
        n_current = len(getattr(current.spec, "addresses", ()) or ()) if current is not None else 0
        hostname = ctx.get(NETWORK, HOSTNAME_STATUS_TYPE, HOSTNAME_ID) is not None
        etc = all(
            ctx.get(FILES, ETC_FILE_STATUS_TYPE, i) is not None for i in (ETC_HOSTS_ID, ETC_RESOLV_CONF_ID)
        )
        status = network_status(n_current, bool(self._defaults), hostname, etc)
        ctx.put(NETWORK, NETWORK_STATUS_TYPE, NETWORK_STATUS_ID, status)


def status_controllers(rcvbuf: int | None = None) -> list[Controller]:
    """The status controllers of a node (netd.md §10)."""
    return [
        LinkStatusController(rcvbuf),
        AddressStatusController(rcvbuf),
        RouteStatusController(rcvbuf),
        HardwareAddrController(),
        StatusController(),
    ]


__all__ = [
    "AddressStatusController",
    "HardwareAddrController",
    "LinkStatusController",
    "NetlinkStatusController",
    "RouteStatusController",
    "StatusController",
    "StatusModel",
    "first_physical",
    "network_status",
]
