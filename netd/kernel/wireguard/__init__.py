"""WireGuard devices: one interface, two backends, chosen per link (decisions.md).

* :class:`KernelBackend`: ``ip link add … type wireguard`` (rtnetlink) and
  generic netlink (:mod:`.genl`, our own messages: several peers per write).
* :class:`UserspaceBackend`: a detached ``wireguard-go <ifname>`` (a ``tun``
  link) configured over ``/var/run/wireguard/<ifname>.sock`` (:mod:`.uapi`).

API (all async, in the caller's current network namespace)::

    backend = await select_backend("wg0")        # per link: running wireguard-go → userspace,
                                                 # else kernel if available, else userspace
    await backend.create("wg0")                  # no-op if it exists (adoption)
    await backend.exists("wg0") -> bool
    await backend.get("wg0") -> WireguardDevice  # keys, port, fwmark, peers + handshake/counters
    await backend.configure("wg0", spec) -> bool # writes only the diff (netd.md §5.1 step 5)
    await backend.delete("wg0")                  # link (and wireguard-go) gone
    is_userspace_device("wg0", kind="tun")       # sync: LinkStatus reports such a tun as wireguard
    await read_device("wg0", kind)               # LinkStatus: kernel or wireguard-go by link kind
    device.to_spec()                             # the LinkStatus WireguardSpec (public key)

No state is kept between calls: a new process adopts existing devices by
reading them, and a ``configure`` with an unchanged spec writes nothing.
``NETD_WIREGUARD_BACKEND=kernel|userspace`` forces the choice (tests).
"""

from __future__ import annotations

import os
from pathlib import Path

from netd.kernel.wireguard.backend import (
    WireguardBackend,
    is_userspace_device,
    link_exists,
    resolve_endpoints,
)
from netd.kernel.wireguard.diff import compute_diff, in_sync, peer_in_sync
from netd.kernel.wireguard.kernel import KernelBackend, kernel_available
from netd.kernel.wireguard.model import (
    DeviceConfig,
    PeerConfig,
    PeerInfo,
    WireguardDevice,
    WireguardError,
    key_from_b64,
    key_to_b64,
    public_key,
)
from netd.kernel.wireguard.uapi import SOCKET_DIR, UapiClient, socket_path
from netd.kernel.wireguard.userspace import UserspaceBackend

ENV_BACKEND = "NETD_WIREGUARD_BACKEND"
KERNEL = "kernel"
USERSPACE = "userspace"

_detected: str | None = None


async def detect() -> str:
    """``kernel`` if this kernel has WireGuard (module loaded, or its genetlink family
    resolves, which autoloads it), else ``userspace``. Cached for the process; the environment
    variable ``NETD_WIREGUARD_BACKEND`` overrides."""
    global _detected
    forced = os.environ.get(ENV_BACKEND, "")
    if forced in (KERNEL, USERSPACE):
        return forced
    if _detected is None:
        ok = Path("/sys/module/wireguard").exists() or await kernel_available()
        _detected = KERNEL if ok else USERSPACE
    return _detected


def backend(name: str, **userspace: object) -> WireguardBackend:
    """A backend by name (``userspace`` keyword arguments go to :class:`UserspaceBackend`)."""
    if name == KERNEL:
        return KernelBackend()
    if name == USERSPACE:
        return UserspaceBackend(**userspace)  # type: ignore[arg-type]
    raise ValueError(f"unknown WireGuard backend {name!r}")


async def select_backend(
    ifname: str, *, sock_dir: Path = SOCKET_DIR, **userspace: object
) -> WireguardBackend:
    """The backend for link ``ifname``: the userspace one if a wireguard-go already serves it
    (adopt it, whatever the kernel could do), else :func:`detect`'s choice."""
    if is_userspace_device(ifname, sock_dir=sock_dir):
        return UserspaceBackend(sock_dir=sock_dir, **userspace)  # type: ignore[arg-type]
    name = await detect()
    if name == USERSPACE:
        return UserspaceBackend(sock_dir=sock_dir, **userspace)  # type: ignore[arg-type]
    return KernelBackend()


async def read_device(ifname: str, kind: str, *, sock_dir: Path = SOCKET_DIR) -> WireguardDevice | None:
    """The WireGuard device behind link ``ifname`` of rtnetlink ``kind`` (for LinkStatus:
    ``device.to_spec()``): kernel for ``wireguard``, wireguard-go for a ``tun`` with a UAPI
    socket, ``None`` for any other link."""
    if kind == "wireguard":
        return await KernelBackend().get(ifname)
    if is_userspace_device(ifname, kind, sock_dir=sock_dir):
        return await UserspaceBackend(sock_dir=sock_dir).get(ifname)
    return None


__all__ = [
    "ENV_BACKEND",
    "KERNEL",
    "SOCKET_DIR",
    "USERSPACE",
    "DeviceConfig",
    "KernelBackend",
    "PeerConfig",
    "PeerInfo",
    "UapiClient",
    "UserspaceBackend",
    "WireguardBackend",
    "WireguardDevice",
    "WireguardError",
    "backend",
    "compute_diff",
    "detect",
    "in_sync",
    "is_userspace_device",
    "kernel_available",
    "key_from_b64",
    "key_to_b64",
    "link_exists",
    "peer_in_sync",
    "public_key",
    "read_device",
    "resolve_endpoints",
    "select_backend",
    "socket_path",
]
