"""LinkStatusController: every kernel link as a LinkStatus (netd.md §2.5), from rtnetlink
deltas, sysfs, ethtool, PCI names and, for WireGuard links, the device API."""

from __future__ import annotations

import asyncio
from typing import Any

from cosi import Context, Input, InputKind
from netd.kernel import rtnl_events as ev
from netd.kernel.ethtool import Ethtool
from netd.kernel.netlink import AF_BRIDGE, LINK_GROUPS, RTM_DELLINK, RTM_GETLINK, RTM_NEWLINK
from netd.kernel.pci import pci_info
from netd.kernel.rtnl_codec import LinkRecord
from netd.kernel.rtnl_decode import link_status
from netd.kernel.wireguard import WireguardDevice, is_userspace_device, key_to_b64, read_device
from netd.resources.link import LINK_REFRESH_TYPE, LINK_STATUS_TYPE, LinkStatus
from netd.resources.namespaces import NETWORK

from .netlink_status import NetlinkStatusController, link_record, publish, publish_all

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
    groups = LINK_GROUPS
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

    def status(self, rec: LinkRecord) -> tuple[str, LinkStatus]:
        """The full LinkStatus: rtnetlink, sysfs, then ethtool for what it knows (and the
        WireGuard device for a WireGuard link)."""
        name, status = self._status(rec)
        return name, self._wireguard(rec.index, name, status)

    def _status(self, rec: LinkRecord) -> tuple[str, LinkStatus]:
        name, status = link_status(rec, with_sysfs=self.sysfs)
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
        dumped = await ev.dump(RTM_GETLINK)
        self.model.clear()
        present: set[int] = set()
        for _mtype, message in dumped:
            rec = link_record(message)
            if rec.family == AF_BRIDGE:
                continue
            present.add(rec.index)
            name, status = self.status(rec)
            self.model.add(rec.index, name, status)
        for index in (set(self.wg_links) | set(self.tun_links)) - present:
            self.forget_wireguard(index)
        publish_all(ctx, self.output_type, self.model)

    def apply(self, mtype: int, message: bytes) -> set[str]:
        if mtype not in (RTM_NEWLINK, RTM_DELLINK):
            return set()
        rec = link_record(message)
        if rec.family == AF_BRIDGE:  # bridge port events, not the link itself
            return set()
        if mtype == RTM_DELLINK:
            self.forget_wireguard(rec.index)
            return self.model.remove(rec.index)
        name, status = self.status(rec)
        return self.model.add(rec.index, name, status)


