"""Kernel WireGuard: the link by rtnetlink, its configuration by generic netlink.

Sockets are opened per operation in the calling process's current network
namespace (so this works inside a node/namespace as is) and never shared
between tasks. Messages are built by :mod:`netd.kernel.wireguard.genl`.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netd.kernel.wireguard import genl
from netd.kernel.wireguard.backend import WireguardBackend, link_exists
from netd.kernel.wireguard.model import DeviceConfig, WireguardDevice, WireguardError

NETLINK_GENERIC = 16
RECV_SIZE = 1 << 20
TIMEOUT = 5.0


class GenlSocket:
    """A minimal async generic-netlink socket: request → replies (+ ack or done)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        self.sock.setblocking(False)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> GenlSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def request(self, mtype: int, payload: bytes, *, dump: bool = False) -> list[bytes]:
        """Send one request; the payloads of its replies. Raises WireguardError on a netlink
        error answer."""
        self.seq += 1
        seq = self.seq
        flags = genl.NLM_F_REQUEST | genl.NLM_F_ACK | (genl.NLM_F_DUMP if dump else 0)
        self.sock.send(genl.nlmsg(mtype, flags, seq, payload))
        loop = asyncio.get_running_loop()
        replies: list[bytes] = []
        while True:
            data = await asyncio.wait_for(loop.sock_recv(self.sock, RECV_SIZE), TIMEOUT)
            for rtype, _flags, rseq, body in genl.parse_nlmsgs(data):
                if rseq != seq:
                    continue
                if rtype == genl.NLMSG_ERROR:
                    code = -int.from_bytes(body[:4], "little", signed=True)
                    if code:
                        raise WireguardError(f"genetlink: {os.strerror(code)}", code)
                    return replies  # the ack
                if rtype == genl.NLMSG_DONE:
                    if len(body) >= 4:
                        code = -int.from_bytes(body[:4], "little", signed=True)
                        if code:
                            raise WireguardError(f"genetlink: {os.strerror(code)}", code)
                    return replies
                replies.append(body)

    async def family(self, name: str) -> int:
        """The id of genetlink family ``name`` (the kernel autoloads its module)."""
        try:
            replies = await self.request(genl.GENL_ID_CTRL, genl.getfamily_request(name))
        except WireguardError as e:
            if e.errno == errno.ENOENT:
                msg = f"no {name!r} generic netlink family (kernel module missing)"
                raise WireguardError(msg, e.errno) from e
            raise
        for body in replies:
            fid = genl.parse_family_id(body)
            if fid is not None:
                return fid
        raise WireguardError(f"generic netlink: no id for family {name!r}")


async def kernel_available() -> bool:
    """Whether the kernel has WireGuard (the genetlink family resolves; this loads the module)."""
    try:
        with GenlSocket() as s:
            await s.family(genl.WG_GENL_NAME)
    except (WireguardError, OSError, TimeoutError):
        return False
    return True


class KernelBackend(WireguardBackend):
    """WireGuard in the kernel (``ip link add … type wireguard``, genetlink configuration)."""

    name = "kernel"

    async def _get(self, ifname: str) -> WireguardDevice:
        with GenlSocket() as s:
            fid = await s.family(genl.WG_GENL_NAME)
            replies = await s.request(fid, genl.get_device_request(ifname), dump=True)
        return genl.decode_device(replies)

    async def exists(self, ifname: str) -> bool:
        if not link_exists(ifname):
            return False
        try:
            await self._get(ifname)
        except WireguardError as e:
            if e.errno in (errno.ENODEV, errno.EOPNOTSUPP, errno.ENOENT):
                return False  # not a (kernel) wireguard link
            raise
        return True

    async def create(self, ifname: str) -> None:
        if await self.exists(ifname):
            return
        try:
            async with AsyncIPRoute() as ipr:
                await ipr.link("add", ifname=ifname, kind="wireguard")
        except NetlinkError as e:
            raise WireguardError(f"create {ifname} (kind wireguard): {os.strerror(e.code)}", e.code) from e

    async def get(self, ifname: str) -> WireguardDevice:
        return await self._get(ifname)

    async def apply(self, ifname: str, cfg: DeviceConfig) -> None:
        with GenlSocket() as s:
            fid = await s.family(genl.WG_GENL_NAME)
            for payload in genl.encode_set_device(ifname, cfg):
                await s.request(fid, payload)

    async def delete(self, ifname: str) -> None:
        try:
            index = socket.if_nametoindex(ifname)
        except OSError:
            return
        try:
            async with AsyncIPRoute() as ipr:
                await ipr.link("del", index=index)
        except NetlinkError as e:
            if e.code != errno.ENODEV:
                raise WireguardError(f"delete {ifname}: {os.strerror(e.code)}", e.code) from e
