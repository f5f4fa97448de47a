"""Watch fan-out: per-cluster subscribers, each with a bounded buffer (§4.8 Watch).

A subscriber that falls `buffer` notifications behind is cut off ("lost update") instead of
slowing the publisher or growing without bound; its client re-watches and gets a fresh snapshot.
Publishing never awaits, so a store can publish while holding its (synchronous) state consistent.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from .model import Notification


class LostUpdate(Exception):
    """The subscriber's buffer overflowed; the stream must end with ABORTED."""


class SubscriptionClosed(Exception):
    """The store shut the subscription down (server stopping)."""


class Subscription:
    def __init__(self, hub: Hub, cluster_id: str, buffer: int) -> None:
        self.hub = hub
        self.cluster_id = cluster_id
        self._buffer = buffer
        self._queue: deque[Notification] = deque()
        self._wakeup = asyncio.Event()
        self.lost = False
        self.closed = False

    def push(self, n: Notification) -> None:
        if self.lost or self.closed:
            return
        if len(self._queue) >= self._buffer:
            self.lost = True
            self._queue.clear()
            self.hub.unsubscribe(self)
        else:
            self._queue.append(n)
        self._wakeup.set()

    async def next(self) -> Notification:
        """The next notification; raises LostUpdate after an overflow."""
        while True:
            if self.lost:
                raise LostUpdate("lost update")
            if self._queue:
                return self._queue.popleft()
            if self.closed:
                raise SubscriptionClosed("subscription closed")
            self._wakeup.clear()
            await self._wakeup.wait()

    def pending(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.hub.unsubscribe(self)
            self._wakeup.set()


class Hub:
    """Subscribers by cluster id. `on_empty(cluster_id)` runs when a cluster's last one leaves,
    so the store can drop a cluster that has neither affiliates nor subscribers (§4.8 GC)."""

    def __init__(self, on_empty: Callable[[str], None] | None = None) -> None:
        self._subs: dict[str, set[Subscription]] = {}
        self._on_empty = on_empty

    def subscribe(self, cluster_id: str, buffer: int) -> Subscription:
        sub = Subscription(self, cluster_id, buffer)
        self._subs.setdefault(cluster_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.cluster_id)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._subs[sub.cluster_id]
            if self._on_empty is not None:
                self._on_empty(sub.cluster_id)

    def publish(self, cluster_id: str, n: Notification) -> None:
        for sub in list(self._subs.get(cluster_id, ())):
            sub.push(n)

    def has_subscribers(self, cluster_id: str) -> bool:
        return cluster_id in self._subs

    def count(self) -> int:
        return sum(len(s) for s in self._subs.values())

    def cluster_ids(self) -> set[str]:
        return set(self._subs)

    def close_all(self) -> None:
        for subs in list(self._subs.values()):
            for sub in list(subs):
                sub.close()
