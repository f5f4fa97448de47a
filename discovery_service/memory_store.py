"""In-process state (§4.8): clusters of affiliates, mutated synchronously so each RPC is atomic.

GC decision for quirk Q1 (kubespan.md §11): when only some endpoints of a live affiliate expire,
watchers get a normal update with the full affiliate (not the reference's `deleted:true`), so
clients never drop a live peer until its next refresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import LimitExceeded
from .limits import Limits
from .model import AffiliateRecord, AffiliateView, Notification, expire, merge_update
from .statefile import Snapshot
from .store import StoreStats
from .subscriptions import Hub, Subscription


@dataclass(slots=True)
class Cluster:
    affiliates: dict[str, AffiliateRecord] = field(default_factory=dict)


class MemoryStore:
    def __init__(self, limits: Limits | None = None, clock: Callable[[], float] = time.time) -> None:
        self.limits = limits or Limits()
        self._clock = clock
        self._clusters: dict[str, Cluster] = {}
        self._hub = Hub()

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        self._hub.close_all()

    def _cluster(self, cluster_id: str) -> Cluster:
        # §4.8: created on first reference by List/Watch/AffiliateUpdate/AffiliateDelete.
        c = self._clusters.get(cluster_id)
        if c is None:
            c = self._clusters[cluster_id] = Cluster()
        return c

    async def update(
        self, cluster_id: str, affiliate_id: str, data: bytes | None, endpoints: list[bytes], ttl: float
    ) -> None:
        c = self._cluster(cluster_id)
        old = c.affiliates.get(affiliate_id)
        if old is None and len(c.affiliates) >= self.limits.max_affiliates:
            raise LimitExceeded(f"cluster already has {self.limits.max_affiliates} affiliates")
        new, changed = merge_update(
            old, affiliate_id, data, endpoints, self._clock() + ttl, self.limits.max_endpoints
        )
        c.affiliates[affiliate_id] = new
        if changed:
            self._hub.publish(cluster_id, Notification(new.view()))

    async def delete(self, cluster_id: str, affiliate_id: str) -> None:
        c = self._cluster(cluster_id)
        if c.affiliates.pop(affiliate_id, None) is not None:
            self._hub.publish(cluster_id, Notification(AffiliateView(affiliate_id), deleted=True))

    async def list_affiliates(self, cluster_id: str) -> list[AffiliateView]:
        return [r.view() for r in self._cluster(cluster_id).affiliates.values()]

    def watch(self, cluster_id: str) -> tuple[list[AffiliateView], Subscription]:
        c = self._cluster(cluster_id)
        sub = self._hub.subscribe(cluster_id, self.limits.watch_buffer)
        return [r.view() for r in c.affiliates.values()], sub

    async def gc(self) -> None:
        self.collect(self._clock())

    def collect(self, now: float) -> None:
        for cid, c in list(self._clusters.items()):
            for aid, rec in list(c.affiliates.items()):
                new, changed = expire(rec, now)
                if new is None:
                    del c.affiliates[aid]
                    self._hub.publish(cid, Notification(AffiliateView(aid), deleted=True))
                elif changed:
                    c.affiliates[aid] = new
                    self._hub.publish(cid, Notification(new.view()))  # Q1: a normal update
            if not c.affiliates and not self._hub.has_subscribers(cid):
                del self._clusters[cid]

    def stats(self) -> StoreStats:
        affs = [r for c in self._clusters.values() for r in c.affiliates.values()]
        return StoreStats(
            clusters=len(self._clusters),
            affiliates=len(affs),
            endpoints=sum(len(r.endpoints) for r in affs),
            subscriptions=self._hub.count(),
        )

    def dump(self) -> Snapshot:
        return {
            cid: [r.copy() for r in c.affiliates.values()]
            for cid, c in self._clusters.items()
            if c.affiliates
        }

    def restore(self, state: Snapshot) -> None:
        for cid, records in state.items():
            c = self._cluster(cid)
            for r in records:
                c.affiliates[r.id] = r
