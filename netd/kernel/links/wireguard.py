"""WireGuard links (``kind: wireguard``): created and configured through a WireGuard backend.

Two backends (decisions.md "WireGuard backends", :mod:`netd.kernel.wireguard`):
kernel WireGuard when the module is there, else a detached wireguard-go whose
device is a ``tun`` link with a UAPI socket. So, unlike the other kinds:

* ``matches`` accepts a userspace device (``tun`` + ``/var/run/wireguard/<name>.sock``)
  for a ``kind: wireguard`` spec: else the controller would delete and recreate
  it on every pass.
* The WireGuard configuration (keys, port, fwmark, peers) is not in rtnetlink:
  it is read and written over genetlink or UAPI by the backend, whose
  ``configure`` writes only the difference (nothing in steady state).
  ``in_sync`` is asked synchronously of a :class:`KernelLink`, so it compares
  the spec with what the device held when *this process* last configured it
  (a cache keyed by network namespace and ifindex, so a recreated link is never
  taken for the old one). After a start the cache is empty: the first pass "updates" every
  WireGuard link, and that update reads the device and writes nothing when it
  already matches (adoption of a running wireguard-go, or a kernel device,
  after a machined restart). Changes made behind our back (``wg set``) are not
  seen by rtnetlink and are corrected at the next configuration (spec change,
  restart, link recreated).
* ``delete`` goes through the backend, so a wireguard-go process stops with its
  link (decisions.md "Helpers that carry kernel state keep running": it runs
  detached and survives machined, but not its spec).
* ``refresh = "wireguard"``: the controller bumps LinkRefresh ``wireguard`` after
  each update, so the LinkStatus controller re-reads the devices.

Backend errors (:class:`WireguardError`) are re-raised as ``OSError`` so that the
controller's per-spec retry (KernelRetry) handles them like netlink errors.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from netd.kernel.links.base import KernelLink, LinkKind, Links
from netd.kernel.wireguard import (
    SOCKET_DIR,
    KernelBackend,
    UserspaceBackend,
    WireguardBackend,
    WireguardDevice,
    WireguardError,
    is_userspace_device,
    select_backend,
)
from netd.kernel.wireguard import in_sync as device_in_sync
from netd.kernel.wireguard.model import is_ip_endpoint, key_from_b64, normalize_endpoint
from netd.resources.enums import LinkType
from netd.resources.link import LinkSpec, WireguardSpec

if TYPE_CHECKING:
    from netd.kernel.links.ops import LinkOps

T = TypeVar("T")

log = logging.getLogger("network.LinkSpecController.wireguard")

KERNEL_KIND = "wireguard"
USERSPACE_KIND = "tun"


@dataclass(frozen=True)
class Configured:
    """What this process last configured into one device (by ifindex)."""

    desired: WireguardSpec  # the spec as given (endpoints may be host names)
    device: WireguardDevice  # the device as read right after configuring it


def spec_in_sync(desired: WireguardSpec, last: Configured | None) -> bool:
    """Whether ``desired`` is satisfied by the device as last configured (netd.md §5.1 step 5,
    the equality of :func:`netd.kernel.wireguard.in_sync`: listen port 0 and an empty
    endpoint mean "any", allowed IPs as masked sets). With host-name endpoints (resolved
    only when writing) the spec must be the one configured, unchanged."""
    if last is None:
        return False
    if any(p.endpoint and not is_ip_endpoint(p.endpoint) for p in desired.peers):
        return desired == last.desired
    try:
        return device_in_sync(desired, last.device)
    except (ValueError, WireguardError):  # a malformed key: configure() reports it
        return False


def applied_endpoints(last: Configured | None) -> dict[bytes, str]:
    """The IP endpoints this process last wrote into the device, by peer key."""
    out: dict[bytes, str] = {}
    if last is None:
        return out
    for p in last.desired.peers:
        if p.endpoint and is_ip_endpoint(p.endpoint):
            try:
                out[key_from_b64(p.public_key)] = normalize_endpoint(p.endpoint)
            except ValueError:
                continue
    return out


def is_wireguard_link(link: KernelLink, sock_dir: Path = SOCKET_DIR) -> bool:
    """A kernel WireGuard link, or a wireguard-go ``tun`` serving a UAPI socket."""
    if link.kind == KERNEL_KIND:
        return True
    return link.kind == USERSPACE_KIND and is_userspace_device(link.name, USERSPACE_KIND, sock_dir=sock_dir)


async def _backend_call(what: str, fn: Callable[[], Awaitable[T]]) -> T:
    try:
        return await fn()
    except WireguardError as e:
        raise OSError(e.errno or errno.EIO, f"{what}: {e}") from e


def _netns() -> int:
    """This thread's network namespace (its inode): ifindexes are per namespace, and one
    process may run link controllers in several (tests)."""
    try:
        return os.stat("/proc/thread-self/ns/net").st_ino
    except OSError:
        return 0


class WireguardKind(LinkKind):
    kind = KERNEL_KIND
    refresh = "wireguard"

    def __init__(self, sock_dir: Path = SOCKET_DIR) -> None:
        self.sock_dir = sock_dir
        self._configured: dict[tuple[int, int], Configured] = {}  # by (netns, ifindex)

    # ---- pure ------------------------------------------------------------------------

    def matches(self, spec: LinkSpec, link: KernelLink) -> bool:
        if not is_wireguard_link(link, self.sock_dir):
            return False
        return spec.type == LinkType.NETROM or link.type == spec.type

    def in_sync(self, spec: LinkSpec, link: KernelLink) -> bool:
        return spec_in_sync(spec.wireguard, self._configured.get((_netns(), link.index)))

    def forget(self, index: int) -> None:
        """Drop what we know of a device (deleted, or about to be recreated)."""
        self._configured.pop((_netns(), index), None)

    def prune(self, links: Links) -> None:
        """Drop what we know of devices that are gone (deleted behind our back)."""
        ns, present = _netns(), {link.index for link in links.values()}
        for key in [k for k in self._configured if k[0] == ns and k[1] not in present]:
            del self._configured[key]

    # ---- I/O ---------------------------------------------------------------------------

    def backend_for(self, link: KernelLink) -> WireguardBackend:
        """The backend that runs an existing link (by its rtnetlink kind)."""
        if link.kind == USERSPACE_KIND:
            return UserspaceBackend(sock_dir=self.sock_dir)
        return KernelBackend()

    async def _configure(
        self, backend: WireguardBackend, spec: LinkSpec, index: int | None, last: Configured | None = None
    ) -> None:
        name = spec.name
        applied = applied_endpoints(last)
        wrote = await _backend_call(
            f"configure {name}", lambda: backend.configure(name, spec.wireguard, applied_endpoints=applied)
        )
        if wrote:
            log.info("link %s: WireGuard configuration written (%s backend)", name, backend.name)
        else:
            log.debug("link %s: WireGuard device already as configured (%s backend)", name, backend.name)
        device = await _backend_call(f"read {name}", lambda: backend.get(name))
        if index is None:
            try:
                index = socket.if_nametoindex(name)
            except OSError:
                return
        self._configured[(_netns(), index)] = Configured(spec.wireguard, device)

    async def create(self, ops: LinkOps, spec: LinkSpec, links: Links) -> None:
        name = spec.name
        backend = await select_backend(name, sock_dir=self.sock_dir)
        await _backend_call(f"create {name} ({backend.name or 'wireguard'})", lambda: backend.create(name))
        await self._configure(backend, spec, None)

    async def update(self, ops: LinkOps, spec: LinkSpec, link: KernelLink, links: Links) -> None:
        self.prune(links)
        last = self._configured.get((_netns(), link.index))
        self.forget(link.index)
        await self._configure(self.backend_for(link), spec, link.index, last)

    async def delete(self, ops: LinkOps, link: KernelLink) -> None:
        self.forget(link.index)
        if link.kind == USERSPACE_KIND:
            backend = UserspaceBackend(sock_dir=self.sock_dir)
            await _backend_call(f"delete {link.name}", lambda: backend.delete(link.name))
        else:
            await ops.delete(link.index)
