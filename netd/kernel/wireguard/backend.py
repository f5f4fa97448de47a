"""The backend interface shared by kernel WireGuard and wireguard-go, and the choice between them.

Both backends read the device into a :class:`WireguardDevice` and write a
:class:`DeviceConfig`; :meth:`WireguardBackend.configure` (common) reads,
diffs against the desired spec (:mod:`netd.kernel.wireguard.diff`) and writes
only the difference, or nothing. No state is kept between calls, so a fresh
process (machined restarted) adopts a device by simply reading it.
"""

from __future__ import annotations

import abc
import asyncio
import ipaddress
import socket
from collections.abc import Mapping
from pathlib import Path

from netd.kernel.wireguard.diff import compute_diff
from netd.kernel.wireguard.model import (
    DeviceConfig,
    WireguardDevice,
    WireguardError,
    format_endpoint,
    is_ip_endpoint,
    normalize_endpoint,
)
from netd.kernel.wireguard.uapi import SOCKET_DIR, socket_path
from netd.resources.link import WireguardSpec


class WireguardBackend(abc.ABC):
    """One way of running WireGuard devices (``kernel`` genetlink or ``userspace`` wireguard-go).

    Methods raise :class:`WireguardError` (with ``errno`` when known) or ``OSError``; the link
    spec controller retries them with back-off.
    """

    name: str = ""

    def __init__(self) -> None:
        #: Number of writes :meth:`configure` sent (tests check steady state writes nothing).
        self.writes = 0

    @abc.abstractmethod
    async def create(self, ifname: str) -> None:
        """Create the device; a no-op if this backend's device ``ifname`` already exists."""

    @abc.abstractmethod
    async def exists(self, ifname: str) -> bool:
        """Whether a WireGuard device ``ifname`` of this backend exists (and answers)."""

    @abc.abstractmethod
    async def get(self, ifname: str) -> WireguardDevice:
        """The device's full state (keys, port, fwmark, peers with handshake and counters)."""

    @abc.abstractmethod
    async def apply(self, ifname: str, cfg: DeviceConfig) -> None:
        """Send one write (already a diff) to the device."""

    @abc.abstractmethod
    async def delete(self, ifname: str) -> None:
        """Remove the device (and its process); a no-op if it is gone."""

    async def configure(
        self, ifname: str, desired: WireguardSpec, applied_endpoints: Mapping[bytes, str] | None = None
    ) -> bool:
        """Bring the device to ``desired`` writing only the difference (netd.md §5.1 step 5);
        True if something was written. ``applied_endpoints``: the endpoints this process last
        wrote, by peer key (a roamed peer whose desired endpoint did not change is left alone)."""
        resolved = await resolve_endpoints(desired)
        cfg = compute_diff(resolved, await self.get(ifname), applied_endpoints=applied_endpoints)
        if cfg.is_empty():
            return False
        await self.apply(ifname, cfg)
        self.writes += 1
        return True


async def resolve_endpoint(endpoint: str) -> str:
    """``host:port`` → ``ip:port`` (UDP resolution; IPv4 preferred, as Go's ResolveUDPAddr)."""
    if not endpoint or is_ip_endpoint(endpoint):
        return normalize_endpoint(endpoint)
    host, sep, port_s = endpoint.rpartition(":")
    if not sep or not port_s.isdigit() or not host:
        raise WireguardError(f"invalid endpoint {endpoint!r}: want host:port")
    host = host.strip("[]")
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, int(port_s), type=socket.SOCK_DGRAM)
    except OSError as e:
        raise WireguardError(f"endpoint {endpoint!r}: cannot resolve: {e}") from e
    addrs = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addrs:
        raise WireguardError(f"endpoint {endpoint!r}: no address")
    addr = next((a for a in addrs if a.version == 4), addrs[0])
    return format_endpoint(addr, int(port_s))


async def resolve_endpoints(spec: WireguardSpec) -> WireguardSpec:
    """The spec with every peer endpoint an IP literal (a copy only if something changed)."""
    if all(not p.endpoint or is_ip_endpoint(p.endpoint) for p in spec.peers):
        return spec
    peers = [p.model_copy(update={"endpoint": await resolve_endpoint(p.endpoint)}) for p in spec.peers]
    return spec.model_copy(update={"peers": peers})


def link_exists(ifname: str) -> bool:
    """Whether a link ``ifname`` exists in the current network namespace."""
    try:
        socket.if_nametoindex(ifname)
    except OSError:
        return False
    return True


def is_userspace_device(ifname: str, kind: str | None = None, *, sock_dir: Path = SOCKET_DIR) -> bool:
    """Whether link ``ifname`` is a wireguard-go device: a ``tun`` link (``kind`` as rtnetlink
    reports it; without it sysfs ``tun_flags`` is checked) whose UAPI socket exists. LinkStatus
    reports such a link as ``kind: wireguard`` and the link spec controller treats it as
    matching a ``kind: wireguard`` spec (decisions.md)."""
    if not socket_path(ifname, sock_dir).exists():
        return False
    if kind is not None:
        return kind == "tun"
    return Path(f"/sys/class/net/{ifname}/tun_flags").exists()
