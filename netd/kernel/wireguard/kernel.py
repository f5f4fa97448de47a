"""Kernel WireGuard: the link by rtnetlink, its configuration by generic netlink.

Sockets are opened per operation in the calling process's current network
namespace (so this works inside a node/namespace as is) and never shared
between tasks. Messages are built by :mod:`netd.kernel.wireguard.genl`; the
two rtnetlink messages (add a ``wireguard`` link, delete a link) are built
here too, so this module does not need pyroute2 (whose import alone costs
more than a whole configure under the QEMU test VM).
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct

from netd.kernel.netlink import (
    NETLINK_GENERIC,
    NETLINK_ROUTE,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    RTM_DELLINK,
    RTM_NEWLINK,
)
from netd.kernel.rtnl_codec import IFLA_IFNAME, IFLA_INFO_KIND, IFLA_LINKINFO
from netd.kernel.wireguard import genl
from netd.kernel.wireguard.backend import WireguardBackend, link_exists
from netd.kernel.wireguard.model import DeviceConfig, WireguardDevice, WireguardError

IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
RECV_SIZE = 1 << 20
TIMEOUT = 5.0


class NetlinkSocket:
    """A minimal async netlink socket (generic netlink by default): request → replies, up to
    the ack (or the end of a dump)."""

    def __init__(self, protocol: int = NETLINK_GENERIC) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
        self.sock.setblocking(False)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> NetlinkSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def request(self, mtype: int, payload: bytes, *, dump: bool = False, flags: int = 0) -> list[bytes]:
        """Send one request; the payloads of its replies. Raises WireguardError on a netlink
        error answer."""
        self.seq += 1
        seq = self.seq
        flags |= NLM_F_REQUEST | NLM_F_ACK | (NLM_F_DUMP if dump else 0)
        self.sock.send(genl.nlmsg(mtype, flags, seq, payload))
        loop = asyncio.get_running_loop()
        replies: list[bytes] = []
        while True:
            data = await asyncio.wait_for(loop.sock_recv(self.sock, RECV_SIZE), TIMEOUT)
            for rtype, _flags, rseq, body in genl.parse_nlmsgs(data):
                if rseq != seq:
                    continue
                if rtype == NLMSG_ERROR:
                    code = -int.from_bytes(body[:4], "little", signed=True)
                    if code:
                        raise WireguardError(f"genetlink: {os.strerror(code)}", code)
                    return replies  # the ack
                if rtype == NLMSG_DONE:
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


async def add_link(ifname: str, kind: str) -> None:
    """RTM_NEWLINK (create, exclusive) of a link ``ifname`` of ``kind``."""
    payload = (
        IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        + genl.nla(IFLA_IFNAME, ifname.encode() + b"\0")
        + genl.nested(IFLA_LINKINFO, [genl.nla(IFLA_INFO_KIND, kind.encode())])
    )
    try:
        with NetlinkSocket(NETLINK_ROUTE) as s:
            await s.request(RTM_NEWLINK, payload, flags=NLM_F_CREATE | NLM_F_EXCL)
    except WireguardError as e:
        raise WireguardError(f"create {ifname} (kind {kind}): {os.strerror(e.errno)}", e.errno) from e


async def delete_link(ifname: str) -> None:
    """RTM_DELLINK of link ``ifname``; a no-op if it does not exist."""
    try:
        index = socket.if_nametoindex(ifname)
    except OSError:
        return
    try:
        with NetlinkSocket(NETLINK_ROUTE) as s:
            await s.request(RTM_DELLINK, IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0))
    except WireguardError as e:
        if e.errno != errno.ENODEV:
            raise WireguardError(f"delete {ifname}: {os.strerror(e.errno)}", e.errno) from e


async def kernel_available() -> bool:
    """Whether the kernel has WireGuard (the genetlink family resolves; this loads the module)."""
    try:
        with NetlinkSocket() as s:
            await s.family(genl.WG_GENL_NAME)
    except (WireguardError, OSError, TimeoutError):
        return False
    return True


class KernelBackend(WireguardBackend):
    """WireGuard in the kernel (``ip link add … type wireguard``, genetlink configuration)."""

    name = "kernel"

    async def _get(self, ifname: str) -> WireguardDevice:
        with NetlinkSocket() as s:
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
        await add_link(ifname, "wireguard")

    async def get(self, ifname: str) -> WireguardDevice:
        return await self._get(ifname)

    async def apply(self, ifname: str, cfg: DeviceConfig) -> None:
        with NetlinkSocket() as s:
            fid = await s.family(genl.WG_GENL_NAME)
            for payload in genl.encode_set_device(ifname, cfg):
                await s.request(fid, payload)

    async def delete(self, ifname: str) -> None:
        await delete_link(ifname)
