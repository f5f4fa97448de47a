"""Watch fan-out: per-cluster subscribers, each with a bounded, coalescing buffer (§4.8 Watch).

A subscriber does not queue every notification: it keeps, per affiliate, only the latest one not
yet sent (a newer export of an affiliate supersedes an older one, a delete supersedes an update).
When the Watch stream is ready for more, it takes everything pending at once (`Batch`) and sends
it in at most two WatchResponses (the deletions, then the updates). A watcher that keeps up thus
gets one response per notification, exactly as before; a slow one gets fewer, larger responses
that always carry the latest state of every affiliate, so under load the per-message cost is
amortised instead of piling up latency.

Equivalence for a client applying §4.6 apply(): for every affiliate, its final state after the
coalesced responses is the one it would have had after the full sequence. An affiliate deleted
and then re-created while pending is sent as a delete followed by its latest export, so a client
never keeps the old incarnation's data when the new one has none yet (apply() skips data-less
updates instead of replacing).

`buffer` bounds the number of distinct affiliates pending: a subscriber that falls that far behind
is cut off ("lost update") instead of slowing the publisher or growing without bound; its client
re-watches and gets a fresh snapshot. Publishing never awaits, so a store can publish while
holding its (synchronous) state consistent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from .model import AffiliateView, Notification


class LostUpdate(Exception):
    """The subscriber's buffer overflowed; the stream must end with ABORTED."""


class SubscriptionClosed(Exception):
    """The store shut the subscription down (server stopping)."""


@dataclass(slots=True)
class Batch:
    """Everything pending for one subscriber: `deleted` (sent first, as one `deleted` response)
    then `updated` (the latest export of each affiliate, one response). An affiliate may be in
    both (deleted, then re-created); never twice in one list."""

    deleted: list[Notification]
    updated: list[Notification]

    def __len__(self) -> int:
        return len(self.deleted) + len(self.updated)


class Subscription:
    def __init__(self, hub: Hub, cluster_id: str, buffer: int) -> None:
        self.hub = hub
        self.cluster_id = cluster_id
        self._buffer = buffer
        self._pending: dict[str, Notification] = {}  # affiliate id → latest notification
        self._recreated: set[str] = set()  # deleted, then updated again, while pending
        self._waiter: asyncio.Future[None] | None = None
        self.lost = False
        self.closed = False

    def push(self, n: Notification) -> None:
        if self.lost or self.closed:
            return
        aid = n.view.id
        prev = self._pending.get(aid)
        if prev is None:
            if len(self._pending) >= self._buffer:
                self.lost = True
                self._pending.clear()
                self._recreated.clear()
                self.hub.unsubscribe(self)
                self._wake()
                return
        elif prev.deleted and not n.deleted:
            self._recreated.add(aid)
        self._pending[aid] = n
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def take(self) -> Batch:
        """Everything pending (possibly nothing), which is then no longer pending."""
        deleted: list[Notification] = []
        updated: list[Notification] = []
        for n in self._pending.values():
            (deleted if n.deleted else updated).append(n)
        if self._recreated:
            deleted += [Notification(AffiliateView(aid), deleted=True) for aid in self._recreated
                        if not self._pending[aid].deleted]  # fmt: skip
            self._recreated.clear()
        self._pending.clear()
        return Batch(deleted, updated)

    async def next(self) -> Batch:
        """What is pending, once there is something; raises LostUpdate after an overflow."""
        while True:
            if self.lost:
                raise LostUpdate("lost update")
            if self._pending:
                return self.take()
            if self.closed:
                raise SubscriptionClosed("subscription closed")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def pending(self) -> int:
        """Distinct affiliates pending."""
        return len(self._pending)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.hub.unsubscribe(self)
            self._wake()


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
        subs = self._subs.get(cluster_id)
        if subs:
            for sub in list(subs):
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
