"""Reconnect backoff of the discovery client (spec §4.6, cenkalti/backoff v4 defaults).

Own copy rather than ``cosi.Backoff`` because the reference caps the *interval*
at 60 s while the jittered wait may reach 90 s, and tests inject the RNG.
"""

from __future__ import annotations

import random

from .constants import (
    DISCOVERY_BACKOFF_INITIAL,
    DISCOVERY_BACKOFF_MAX_INTERVAL,
    DISCOVERY_BACKOFF_MULTIPLIER,
    DISCOVERY_BACKOFF_RANDOMIZATION,
)


class ExponentialBackoff:
    """Never gives up; ``reset()`` after a success starts over at ``initial``."""

    def __init__(
        self,
        initial: float = DISCOVERY_BACKOFF_INITIAL,
        multiplier: float = DISCOVERY_BACKOFF_MULTIPLIER,
        randomization: float = DISCOVERY_BACKOFF_RANDOMIZATION,
        max_interval: float = DISCOVERY_BACKOFF_MAX_INTERVAL,
        rng: random.Random | None = None,
    ) -> None:
        self.initial = initial
        self.multiplier = multiplier
        self.randomization = randomization
        self.max_interval = max_interval
        self._rng = rng or random.Random()
        self._current = initial

    @property
    def current(self) -> float:
        return self._current

    def next(self) -> float:
        base = self._current
        delta = self.randomization * base
        wait = self._rng.uniform(base - delta, base + delta)
        self._current = min(base * self.multiplier, self.max_interval)
        return max(0.0, wait)

    def reset(self) -> None:
        self._current = self.initial
