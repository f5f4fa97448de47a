"""The `Store` protocol: what the gRPC servicer needs from a state backend.

Two implementations share the §4.8 rules of model.py: `MemoryStore` (one process, optional state
file) and `EtcdStore` (replicas sharing etcd). Watch is synchronous on purpose: subscribing and
taking the snapshot happen without an await in between, so no notification can fall between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .limits import Limits
from .model import AffiliateView
from .subscriptions import Subscription


@dataclass(frozen=True, slots=True)
class StoreStats:
    clusters: int
    affiliates: int
    endpoints: int
    subscriptions: int


class Store(Protocol):
    limits: Limits

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def update(
        self, cluster_id: str, affiliate_id: str, data: bytes | None, endpoints: list[bytes], ttl: float
    ) -> None:
        """Validated AffiliateUpdate; raises LimitExceeded (1024 affiliates, 64 endpoints)."""
        ...

    async def delete(self, cluster_id: str, affiliate_id: str) -> None: ...

    async def list_affiliates(self, cluster_id: str) -> list[AffiliateView]: ...

    def watch(self, cluster_id: str) -> tuple[list[AffiliateView], Subscription]:
        """Atomically: subscribe and snapshot the cluster's affiliates."""
        ...

    async def gc(self) -> None:
        """Drop expired affiliates and endpoints, notify watchers, remove empty clusters."""
        ...

    def stats(self) -> StoreStats: ...
