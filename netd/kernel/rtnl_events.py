"""The one rtnetlink event source: status controllers, spec controllers, dumps of raw messages.

Why a raw socket and not ``AsyncIPRoute``: the status controllers need to see
the socket's ENOBUFS (the kernel dropped events because our receive buffer
filled up) to know that their delta-maintained picture of the kernel is now
wrong and a full resync is due. A raw ``AF_NETLINK`` socket read from
``loop.add_reader`` gives exactly that.

Design (decisions.md "Runtime": deltas, full resync only at start and on
overflow):

* :class:`RtnlEvents` is ONE socket joined to the multicast groups a controller
  needs (:mod:`netd.kernel.netlink` names the sets: ``LINK_GROUPS``,
  ``ADDRESS_GROUPS``, ``ROUTE_GROUPS``, ``RULE_GROUPS``). Its reader callback
  drains the socket without decoding (cheap, so the kernel buffer rarely fills).
  Two uses:

  - ``keep=True`` (status controllers): raw datagrams queue up for
    :meth:`RtnlEvents.take`, ``on_ready`` (the controller's ``ctx.trigger``) is
    called; ENOBUFS sets ``overflowed`` and drops what is queued (it is about to
    be superseded by a dump).
  - ``keep=False`` (spec controllers, :meth:`RtnlEvents.run`): nothing is kept,
    only "something changed" matters because the controller re-reads the kernel;
    a burst calls ``on_ready`` once per ``coalesce`` seconds, and
    :meth:`RtnlEvents.drain` drops what is queued right before that re-read (else
    the events of a 10,000-route batch would trigger pass after pass finding
    nothing to do). A socket error reopens the socket and triggers a pass.

* :func:`dump` reads a full RTM_GET* dump over its own short-lived socket.
  Subscribing before dumping and applying queued events after the dump gives
  the right end state: every event carries the object's complete state, so
  replaying events that the dump already reflects is harmless.

Overflow (issue 16). The kernel reports ENOBUFS only ONCE per congestion:
``netlink_overrun`` sets the socket error only when it sets the socket's
NETLINK_S_CONGESTED bit, and that bit is cleared only by a ``recvmsg`` that
finds (or leaves) the receive queue empty (``netlink_rcv_wake``,
net/netlink/af_netlink.c). While it is set, every further dropped event is
dropped silently. So a resync that dumps as soon as ENOBUFS is seen, while
the flood still fills the queue, misses what is dropped during and after the
dump, with no second ENOBUFS to say so (measured: 60,000 routes added by
``ip -batch``, one ENOBUFS, 20,000-30,000 routes never in RouteStatus).
:meth:`RtnlEvents.settle` therefore reads the socket until it is empty (the
congestion is over: any later drop reports ENOBUFS again) before the caller
dumps; events read from then on queue up and are applied after the dump; an
overflow meanwhile means another round (``NetlinkStatusController``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Callable

from netd.kernel.netlink import (
    AF_UNSPEC,
    NETLINK_ROUTE,
    NLMSGHDR,
    SO_RCVBUFFORCE,
)
from netd.kernel.rtnl_batch import RtnlBatch

log = logging.getLogger("netd.rtnl")

# Raw datagrams queued beyond this count are treated as an overflow: a resync
# is cheaper than an unbounded backlog.
MAX_QUEUED = 200_000

#: Datagrams read per wake-up by a keeping source (the reader fires again while data
#: is left), so a flood cannot starve the loop; a non-keeping one reads up to
#: DRAIN_READS (reading without keeping is cheap).
READS_PER_WAKEUP = 256
DRAIN_READS = 100_000

# A netlink datagram is at most 32 KiB (dump pages; events are smaller).
RECV_SIZE = 64 << 10

#: Receive buffer of an event socket (root passes rmem_max with SO_RCVBUFFORCE). A
#: route event costs ~1 KiB of buffer (skb truesize), so 32 MiB hold ~30,000 events: a
#: burst the loop does not read in time (a dump in progress) overflows far less often.
#: The memory is only used while events wait. Overflow is still handled.
EVENTS_RCVBUF = 32 << 20
#: A burst of events (10,000 routes added at once) becomes one trigger of a spec
#: controller per this many seconds.
WATCH_COALESCE = 0.05

_HDR = NLMSGHDR


def _open(groups: int = 0, rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, NETLINK_ROUTE
    )
    try:
        if rcvbuf is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        else:
            try:
                s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, EVENTS_RCVBUF)
            except OSError:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, EVENTS_RCVBUF)
        s.bind((0, groups))
    except BaseException:
        s.close()
        raise
    return s


class RtnlEvents:
    """One netlink socket subscribed to ``groups`` (see the module docstring).

    ``keep=True``: raw datagrams queue up until :meth:`take`; ``on_ready`` is
    called (on the loop) whenever something new is queued or an overflow
    happened. Use as a context manager, or ``open``/``close``.

    ``keep=False``: :meth:`run` until cancelled; ``on_ready`` once per
    ``coalesce`` seconds of a burst, at (re)open and after a socket error.
    """

    def __init__(
        self,
        groups: int,
        on_ready: Callable[[], None],
        rcvbuf: int | None = None,
        *,
        keep: bool = True,
        coalesce: float = WATCH_COALESCE,
        retry_delay: float = 1.0,
    ) -> None:
        self.groups = groups
        self.on_ready = on_ready
        self.rcvbuf = rcvbuf
        self.keep = keep
        self.coalesce = coalesce
        self.retry_delay = retry_delay
        self.overflowed = False
        self.overflows = 0
        self.datagrams = 0  # read since the last trigger (non-keeping: for the debug log)
        self.error: OSError | None = None
        self._queue: list[bytes] = []
        self._buf = bytearray(RECV_SIZE)
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failed: asyncio.Future[OSError] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._empty = False  # the last read found the socket empty (no congestion left)

    def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.error = None
        self._sock = _open(self.groups, self.rcvbuf)
        self._loop.add_reader(self._sock.fileno(), self._readable)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def __enter__(self) -> RtnlEvents:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def run(self) -> None:
        """Watch until cancelled, reopening the socket after an error (non-keeping use)."""
        loop = asyncio.get_running_loop()
        while True:
            self._failed = loop.create_future()
            self.open()
            try:
                self.on_ready()  # anything that happened before the bind
                e = await self._failed
                log.debug("rtnetlink events %#x: %s; resyncing", self.groups, e)
                self.on_ready()
                await asyncio.sleep(self.retry_delay)
            finally:
                self.close()

    def _read_all(self, limit: int | None = None) -> bool:
        """Read what is queued (a bounded number of datagrams); whether anything was,
        or got lost (ENOBUFS: also "something changed")."""
        sock = self._sock
        if sock is None:
            return False
        got = False
        self._empty = False
        for _ in range(limit or (READS_PER_WAKEUP if self.keep else DRAIN_READS)):
            try:
                n = sock.recv_into(self._buf)
            except BlockingIOError:
                self._empty = True
                break
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    self._overflow()
                    got = True
                    continue  # the socket stays usable; keep draining
                # Anything else: a keeping controller sees it in take() (it restarts and
                # resyncs); run() reopens the socket.
                self.error = e
                if self._loop is not None:
                    self._loop.remove_reader(sock.fileno())
                if self._failed is not None and not self._failed.done():
                    self._failed.set_result(e)
                return True
            if not n:
                break
            got = True
            self.datagrams += 1
            if self.keep:
                self._queue.append(bytes(self._buf[:n]))
                if len(self._queue) > MAX_QUEUED:
                    self._overflow()
        return got

    def _readable(self) -> None:
        if not self._read_all():
            return
        if self.keep or self.error is not None:
            self.on_ready()
        elif self._timer is None and self._loop is not None:
            self._timer = self._loop.call_later(self.coalesce, self._fire)

    def _fire(self) -> None:
        self._timer = None
        log.debug("rtnetlink events %#x: %d datagrams: trigger", self.groups, self.datagrams)
        self.datagrams = 0
        self.on_ready()

    def _overflow(self) -> None:
        self.overflowed = True
        self.overflows += 1
        self._queue.clear()

    async def settle(self, chunk: int = 4096) -> int:
        """Read and drop datagrams until the socket is empty: the kernel's congestion
        state is then over, so a dump started now misses nothing silently (see the module
        docstring). Yields to the loop between chunks. Returns the datagrams dropped."""
        dropped = 0
        while self._sock is not None:
            before = self.datagrams
            self._read_all(chunk)
            dropped += self.datagrams - before
            self._queue.clear()
            if self._empty or self.error is not None:
                break
            await asyncio.sleep(0)
        self.overflowed = False
        return dropped

    def take(self) -> tuple[bool, list[bytes]]:
        """(overflowed since the last take, raw datagrams queued since then);
        raises the socket's error if reading it failed."""
        if self.error is not None:
            raise self.error
        overflowed, queue = self.overflowed, self._queue
        self.overflowed = False
        self._queue = []
        return overflowed, queue

    def drain(self) -> None:
        """Drop the queued events and the pending trigger: the caller is about to read
        the state they report. (Later events trigger as usual.)"""
        if self._sock is None:
            return
        self._read_all()
        self._queue = []
        self.overflowed = False
        self.datagrams = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


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


async def dump(msg_type: int, family: int = AF_UNSPEC) -> list[tuple[int, bytes]]:
    """A full RTM_GET{LINK,ADDR,ROUTE,RULE} dump as raw (type, message) pairs, over a
    short-lived socket of its own (retried when a change interrupted it)."""
    with RtnlBatch(_open(0, rcvbuf=1 << 20)) as batch:
        return await batch.dump_raw_async(msg_type, family)
