"""Kernel errors in spec controllers: retried with back-off, logged once.

A spec whose link does not exist yet (ENODEV), or that the kernel refuses
(EEXIST from a conflicting foreign object, EINVAL), must not stop the other
specs nor flood the log: the controller notes the failure per spec, logs it
the first time (and again only if the error changes), and asks for a
reconcile after the smallest pending back-off.
"""

from __future__ import annotations

import logging

from cosi import Backoff, Context


class KernelRetry:
    def __init__(self, log: logging.Logger, initial: float = 0.5, maximum: float = 30.0) -> None:
        self.log = log
        self.initial = initial
        self.maximum = maximum
        self._failing: dict[str, tuple[str, Backoff]] = {}

    def failed(self, key: str, error: BaseException | str) -> None:
        text = str(error)
        prev = self._failing.get(key)
        if prev is None or prev[0] != text:
            self.log.error("%s: %s (will retry)", key, text)
            self._failing[key] = (text, Backoff(initial=self.initial, maximum=self.maximum))

    def succeeded(self, key: str) -> None:
        if self._failing.pop(key, None) is not None:
            self.log.info("%s: applied after retry", key)

    def forget_except(self, keys: set[str]) -> None:
        """Drop failures of specs that no longer exist."""
        for k in [k for k in self._failing if k not in keys]:
            del self._failing[k]

    @property
    def pending(self) -> bool:
        return bool(self._failing)

    def schedule(self, ctx: Context) -> None:
        """Requeue after the shortest back-off among the failing specs (if any)."""
        if self._failing:
            ctx.requeue_after(min(b.next() for _, b in self._failing.values()))
