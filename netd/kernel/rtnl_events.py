"""An asyncio rtnetlink event source and dump reader for the status controllers.

Why not ``AsyncIPRoute``: the status controllers need to see the socket's
ENOBUFS (the kernel dropped events because our receive buffer filled up) to
know that their delta-maintained picture of the kernel is now wrong and a full
resync is due. A raw ``AF_NETLINK`` socket read from ``loop.add_reader`` gives
exactly that, and pyroute2's :class:`MarshalRtnl` still does the decoding.

Design (decisions.md "Runtime": deltas, full resync only at start and on
overflow):

* :class:`RtnlEvents` is ONE socket joined to the multicast groups a controller
  needs. Its reader callback drains the socket without decoding (cheap, so the
  kernel buffer rarely fills) and appends raw datagrams to a queue, then calls
  ``on_ready`` (the controller's ``ctx.trigger``). ENOBUFS sets ``overflowed``
  and drops what is queued (it is about to be superseded by a dump).
* :func:`dump` reads a full RTM_GET* dump over its own short-lived socket.
  Subscribing before dumping and applying queued events after the dump gives
  the right end state: every event carries the object's complete state, so
  replaying events that the dump already reflects is harmless.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

from pyroute2.netlink.rtnl.marshal import MarshalRtnl

# rtnetlink message types.
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_DUMP_INTR = 0x1, 0x2, 0x10
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100

# Multicast group bits (legacy RTMGRP_* masks for bind()).
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_MROUTE = 0x20
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_MROUTE = 0x200
RTMGRP_IPV6_ROUTE = 0x400

SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5

# Raw datagrams queued beyond this count are treated as an overflow: a resync
# is cheaper than an unbounded backlog.
MAX_QUEUED = 200_000

READS_PER_WAKEUP = 256

# A netlink datagram is at most 32 KiB (dump pages; events are smaller).
RECV_SIZE = 64 << 10

_HDR = struct.Struct("=IHHII")
# Request bodies: ifinfomsg (16 bytes), ifaddrmsg (8), rtmsg (12); zeroed but for the family.
_BODY = {RTM_GETLINK: 16, RTM_GETADDR: 8, RTM_GETROUTE: 12}

_marshal = MarshalRtnl()


class DumpInterrupted(Exception):
    """The kernel changed the dumped table while we read it (NLM_F_DUMP_INTR)."""


def _open(groups: int = 0, rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, 0)
    try:
        if rcvbuf is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        else:
            # Big enough for a burst of thousands of route events; as root,
            # FORCE bypasses rmem_max. Overflow is still handled (resync).
            try:
                s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE
            except OSError:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        s.bind((0, groups))
    except BaseException:
        s.close()
        raise
    return s


class RtnlEvents:
    """One netlink socket subscribed to ``groups``; raw datagrams queue up until taken.

    ``on_ready`` is called (on the loop) whenever something new is queued or an
    overflow happened. Use as a context manager, or ``open``/``close``.
    """

    def __init__(self, groups: int, on_ready: Callable[[], None], rcvbuf: int | None = None) -> None:
        self.groups = groups
        self.on_ready = on_ready
        self.rcvbuf = rcvbuf
        self.overflowed = False
        self.overflows = 0
        self.error: OSError | None = None
        self._queue: list[bytes] = []
        self._buf = bytearray(RECV_SIZE)
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock = _open(self.groups, self.rcvbuf)
        self._loop.add_reader(self._sock.fileno(), self._readable)

    def close(self) -> None:
        if self._sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def __enter__(self) -> RtnlEvents:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        got = False
        # A bounded number of reads per wake-up, so a flood cannot starve the loop;
        # the reader fires again while data is left.
        for _ in range(READS_PER_WAKEUP):
            try:
                n = sock.recv_into(self._buf)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    self._overflow()
                    got = True
                    continue  # the socket stays usable; keep draining
                # Anything else is for the controller to see (it restarts and resyncs).
                self.error = e
                if self._loop is not None:
                    self._loop.remove_reader(sock.fileno())
                got = True
                break
            if not n:
                break
            self._queue.append(bytes(self._buf[:n]))
            got = True
            if len(self._queue) > MAX_QUEUED:
                self._overflow()
        if got:
            self.on_ready()

    def _overflow(self) -> None:
        self.overflowed = True
        self.overflows += 1
        self._queue.clear()

    def take(self) -> tuple[bool, list[bytes]]:
        """(overflowed since the last take, raw datagrams queued since then);
        raises the socket's error if reading it failed."""
        if self.error is not None:
            raise self.error
        overflowed, queue = self.overflowed, self._queue
        self.overflowed = False
        self._queue = []
        return overflowed, queue


def split(datagram: bytes) -> list[tuple[int, bytes]]:
    """The (message type, message bytes) of each netlink message in a datagram."""
    out: list[tuple[int, bytes]] = []
    pos, end = 0, len(datagram)
    while pos + _HDR.size <= end:
        length, mtype, _flags, _seq, _pid = _HDR.unpack_from(datagram, pos)
        if length < _HDR.size or pos + length > end:
            break
        out.append((mtype, datagram[pos : pos + length]))
        pos += (length + 3) & ~3
    return out


def decode_one(message: bytes) -> Any:
    """One message decoded by pyroute2 (links and addresses)."""
    return next(iter(_marshal.parse(message)))


async def dump(msg_type: int, family: int = socket.AF_UNSPEC, attempts: int = 5) -> list[tuple[int, bytes]]:
    """A full RTM_GETLINK/GETADDR/GETROUTE dump as raw (type, message) pairs;
    retried when the kernel says it was interrupted by a change."""
    for attempt in range(attempts):
        try:
            return await _dump_once(msg_type, family)
        except DumpInterrupted:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


async def _dump_once(msg_type: int, family: int) -> list[tuple[int, bytes]]:
    loop = asyncio.get_running_loop()
    sock = _open(0, rcvbuf=1 << 20)
    try:
        body = bytearray(_BODY[msg_type])
        body[0] = family
        seq = 1
        header = _HDR.pack(_HDR.size + len(body), msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
        sock.send(header + bytes(body))
        out: list[tuple[int, bytes]] = []
        interrupted = False
        while True:
            data = await _recv(loop, sock)
            done = False
            for mtype, message in split(data):
                flags = _HDR.unpack_from(message)[2]
                if flags & NLM_F_DUMP_INTR:
                    interrupted = True
                if mtype == NLMSG_DONE:
                    done = True
                    break
                if mtype == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", message, _HDR.size)[0]
                    if code:
                        raise OSError(code, f"rtnetlink dump: {os.strerror(code)}")
                    continue
                out.append((mtype, message))
            if done:
                break
        if interrupted:
            raise DumpInterrupted
        return out
    finally:
        sock.close()


async def _recv(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    while True:
        try:
            return sock.recv(RECV_SIZE)
        except BlockingIOError:
            fut: asyncio.Future[None] = loop.create_future()
            fd = sock.fileno()
            loop.add_reader(fd, _wake, fut)
            try:
                await fut
            finally:
                loop.remove_reader(fd)


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
