"""Per-client-IP token buckets (§4.8 Rate limiting).

Like the reference, a request *waits* for its token rather than failing at once; only when the
wait would outlast the request's deadline is it refused (RESOURCE_EXHAUSTED). A reservation takes
the token immediately (the bucket may go negative), so concurrent requests queue in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst ≥ 1")
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def _refill(self, key: str, now: float) -> _Bucket:
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = _Bucket(self.burst, now)
        else:
            b.tokens = min(self.burst, b.tokens + (now - b.updated) * self.rate)
            b.updated = now
        return b

    def reserve(self, key: str, max_wait: float | None = None) -> float | None:
        """Take one token for `key`; return how long to wait before proceeding, or None (nothing
        taken) when that wait would exceed `max_wait`."""
        b = self._refill(key, self._clock())
        wait = 0.0 if b.tokens >= 1 else (1 - b.tokens) / self.rate
        if max_wait is not None and wait > max_wait:
            return None
        b.tokens -= 1
        return wait

    def collect(self) -> int:
        """Forget buckets that refilled completely (idle clients); return how many were dropped."""
        now = self._clock()
        idle = [k for k in self._buckets if self._refill(k, now).tokens >= self.burst]
        for k in idle:
            del self._buckets[k]
        return len(idle)

    def __len__(self) -> int:
        return len(self._buckets)
