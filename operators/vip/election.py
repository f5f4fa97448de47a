"""The VIP election over etcd v3 (operators.md §4.3), with one deliberate improvement: never two holders.

The protocol is etcd's own election recipe (Go ``concurrency.Election``), which the reference uses:
every candidate owns one key ``<prefix>/<lease id hex>`` attached to its lease; the key with the
smallest create revision is the leader; a candidate waits for the deletion of the newest key older
than its own, and a leader that goes (resign, crash, lease expiry) lets the next one in.

The improvement (issue 15, "never two holders"): the reference holder keeps the VIP until it has
had no keep-alive reply for a whole TTL, while the server may expire its lease, and elect the next
candidate, earlier. Here the holder reckons when its lease *may* expire on the server: a lease that
a keep-alive refreshed lives on the server until at least (the moment the server handled it) + TTL,
and the server handled it after we sent it. So :class:`LeaseClock` keeps, for the last *answered*
keep-alive, the time it was *sent*; ``sent + TTL - margin`` is the holder's deadline, and the
session counts as lost there, ``margin`` (default 5 s) before the earliest possible server expiry:
enough to take the address off the link before anybody else can win.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from etcd_client import Compare, EtcdClient, EtcdError, EventType, KeyValue, Op, Sort, prefix_end
from netd.netip import Addr, format_addr

log = logging.getLogger(__name__)

T = TypeVar("T")

#: operators.md §4.3: the election prefix, followed by the VIP's canonical text.
ELECTION_PREFIX = "talos:v1:vip:election:"


def election_prefix(vip: Addr) -> bytes:
    """``talos:v1:vip:election:10.0.0.100`` (candidate keys live under it, after a ``/``)."""
    return f"{ELECTION_PREFIX}{format_addr(vip)}".encode()


def candidate_key(prefix: bytes, lease_id: int) -> bytes:
    """``<prefix>/<lease id as lowercase hex, no padding>`` (operators.md §4.3)."""
    return prefix + b"/" + f"{lease_id:x}".encode()


class SessionLost(Exception):
    """The lease expired, or may have expired on the server (no keep-alive answer in time)."""


@dataclass
class LeaseClock:
    """When a holder must be gone: ``send time of the last answered keep-alive + TTL - margin``.

    Pure bookkeeping (no I/O, times from whatever clock the caller uses), so the rule is unit-tested
    with a fake clock. ``margin`` covers removing the address and the clock-rate difference between
    us and the etcd leader; it must be below the TTL.
    """

    margin: float
    answered_sent_at: float = -math.inf
    ttl: float = 0.0

    def answered(self, sent_at: float, ttl: float) -> None:
        """A keep-alive (or the grant) sent at ``sent_at`` was answered with ``ttl`` seconds."""
        if sent_at >= self.answered_sent_at:  # a late answer to an older request proves less
            self.answered_sent_at, self.ttl = sent_at, ttl

    @property
    def deadline(self) -> float:
        return self.answered_sent_at + self.ttl - self.margin

    def expired(self, now: float) -> bool:
        return now >= self.deadline


class Session:
    """An etcd lease with its keep-alive (every TTL/3, a failed one retried after ``retry``);
    ``lost`` is set when the lease expired or :class:`LeaseClock` says it may have."""

    def __init__(
        self,
        client: EtcdClient,
        ttl: float,
        margin: float,
        *,
        retry: float = 1.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not 0 <= margin < ttl:
            raise ValueError(f"VIP step-down margin {margin}s must be below the lease TTL {ttl}s")
        self.client = client
        self.ttl = ttl
        self.retry = retry
        self.lease_clock = LeaseClock(margin)
        self.lease_id = 0
        self.lost = asyncio.Event()
        self.lost_reason = ""
        self._clock = clock or asyncio.get_running_loop().time
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> Session:
        sent = self._clock()
        lease = await self.client.lease_grant(max(1, math.ceil(self.ttl)))
        self.lease_id = lease.id
        # Keep the TTL we asked for when etcd grants more (its minimum): the shorter is safe.
        self.lease_clock.answered(sent, min(float(lease.ttl), self.ttl))
        self._tasks = [
            asyncio.create_task(self._keep_alive(), name=f"vip-keepalive-{lease.id:x}"),
            asyncio.create_task(self._watchdog(), name=f"vip-lease-watchdog-{lease.id:x}"),
        ]
        return self

    def _lose(self, reason: str) -> None:
        if not self.lost.is_set():
            self.lost_reason = reason
            log.warning("etcd lease %x: session lost: %s", self.lease_id, reason)
            self.lost.set()

    async def _keep_alive(self) -> None:
        interval = self.ttl / 3
        while not self.lost.is_set():
            sent = self._clock()
            # No point waiting for an answer past the deadline: it could not save the session.
            timeout = max(0.1, min(self.client.timeout, self.lease_clock.deadline - sent))
            try:
                left = await self.client.lease_keepalive_once(self.lease_id, timeout=timeout)
            except EtcdError as e:
                log.info("etcd lease %x: keep-alive failed: %s", self.lease_id, e)
                await asyncio.sleep(min(self.retry, interval))
                continue
            if left <= 0:
                self._lose("the lease expired on the server")
                return
            self.lease_clock.answered(sent, min(float(left), self.ttl))
            await asyncio.sleep(interval)

    async def _watchdog(self) -> None:
        while not self.lost.is_set():
            now = self._clock()
            if self.lease_clock.expired(now):
                self._lose(
                    f"no keep-alive answer for {now - self.lease_clock.answered_sent_at:.1f}s "
                    f"(TTL {self.ttl:g}s, margin {self.lease_clock.margin:g}s)"
                )
                return
            await asyncio.sleep(self.lease_clock.deadline - now)

    async def until_lost(self, aw: Awaitable[T]) -> T:
        """Await ``aw``; raise :class:`SessionLost` (cancelling it) if the session is lost first."""
        task = asyncio.ensure_future(aw)
        lost = asyncio.create_task(self.lost.wait())
        try:
            await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if task.done() and not task.cancelled():
            return task.result()
        raise SessionLost(self.lost_reason)

    async def close(self, timeout: float) -> None:
        """Stop the keep-alive and revoke the lease (its keys go with it); errors only logged."""
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self.lease_id and not self.lost.is_set():
            try:
                await asyncio.wait_for(self.client.lease_revoke(self.lease_id), timeout)
            except (EtcdError, TimeoutError) as e:
                log.info("etcd lease %x: revoke failed (it expires by its TTL): %s", self.lease_id, e)


class Election:
    """One candidacy: :meth:`campaign` returns once we lead; :meth:`hold` returns when we no longer
    do; :meth:`resign` deletes our key. ``value`` is the node's identity (its hostname)."""

    def __init__(self, client: EtcdClient, prefix: bytes, value: bytes) -> None:
        self.client = client
        self.prefix = prefix
        self.value = value
        self.key = b""
        self.create_revision = 0
        self._range_end = prefix_end(prefix + b"/")

    async def leader(self) -> KeyValue | None:
        """The current leader's key: the oldest (smallest create revision) under the prefix."""
        res = await self.client.get_range(self.prefix + b"/", self._range_end, limit=1, sort=Sort("create"))
        return res.kvs[0] if res.kvs else None

    async def delete_stale(self) -> bool:
        """operators.md §4.3 step 2: a leader key with our value is left from an earlier run of this
        node (a crash): delete it (guarded on its create revision) so the election moves on now
        rather than after its TTL. True if one was deleted."""
        kv = await self.leader()
        if kv is None or kv.value != self.value:
            return False
        res = await self.client.txn(
            [Compare.create_revision_is(kv.key, kv.create_revision)], [Op.delete(kv.key)]
        )
        if res.succeeded:
            log.info("VIP election: deleted the stale leader key %s of an earlier run", kv.key.decode())
        return res.succeeded

    async def campaign(self, lease_id: int) -> None:
        """Put our key (create-if-absent), then wait until no older key is left."""
        key = candidate_key(self.prefix, lease_id)
        res = await self.client.txn(
            [Compare.absent(key)], [Op.put(key, self.value, lease_id)], failure=[Op.get(key)]
        )
        if res.succeeded:
            self.create_revision = res.revision
        else:
            got = res.ranges[0]
            kv = got.kvs[0] if got is not None and got.kvs else None
            if kv is None:
                raise EtcdError(f"VIP election: {key.decode()} vanished during the campaign")
            self.create_revision = kv.create_revision
            if kv.value != self.value:
                await self.client.txn(
                    [Compare.create_revision_is(key, kv.create_revision)], [Op.put(key, self.value, lease_id)]
                )
        self.key = key
        await self._wait_for_older()
        # We are the oldest: make sure our key still exists (a lease that expired meanwhile would
        # have taken it, and somebody else may lead).
        mine = await self.client.get(self.key)
        if mine is None or mine.create_revision != self.create_revision:
            raise EtcdError(f"VIP election: our key {self.key.decode()} is gone")

    async def _wait_for_older(self) -> None:
        while True:
            res = await self.client.get_range(
                self.prefix + b"/", self._range_end, limit=1,
                sort=Sort("create", descending=True), max_create_revision=self.create_revision - 1,
            )  # fmt: skip
            if not res.kvs:
                return
            older = res.kvs[0]
            log.debug("VIP election: waiting for %s to go", older.key.decode())
            await self._wait_deleted(older.key, res.revision + 1)

    async def _wait_deleted(self, key: bytes, from_revision: int) -> None:
        watch = self.client.watch(key, start_revision=from_revision)
        try:
            async for batch in watch:
                if any(ev.type is EventType.DELETE for ev in batch.events):
                    return
        finally:
            watch.cancel()

    async def hold(self) -> str:
        """While leading: return (with the reason) when our key is deleted or changes hands."""
        watch = self.client.watch(self.key, start_revision=self.create_revision + 1)
        try:
            async for batch in watch:
                for ev in batch.events:
                    if ev.type is EventType.DELETE:
                        return "our election key was deleted"
                    if ev.kv.value != self.value:
                        return f"our election key now says {ev.kv.value.decode(errors='replace')!r}"
        finally:
            watch.cancel()
        return "the election watch ended"

    async def resign(self) -> None:
        """Delete our key, guarded on its create revision (operators.md §4.3 step 6.3)."""
        if not self.key:
            return
        await self.client.txn(
            [Compare.create_revision_is(self.key, self.create_revision)], [Op.delete(self.key)]
        )
        self.key = b""
