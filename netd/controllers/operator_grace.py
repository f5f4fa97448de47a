"""Objects of operator-layer specs survive a restart until their operator had its chance.

decisions.md "Restarts and objects that operators and KubeSpan own": a restart
keeps kernel state, and the objects an operator (DHCP, VIP, KubeSpan) made us
create must not be removed before that operator has republished its specs,
or every restart would flap them (KubeSpan's link, address, table-180 routes
and fwmark rules would be deleted and added again a few seconds later).

So every kernel spec controller (the :mod:`kernel_spec` skeleton, and the
link controller) marks the Applied record of an object whose merged spec came
from the operator layer: ``"layer": "operator"`` next to the controller's own
fields (:func:`tag`; a record without the key, as in older files, is an
ordinary one). On the first passes after a start, the restart sweep ("stale"
records no spec wants) leaves such a record alone while the grace period
runs (:class:`Grace`, tunable ``OPERATOR_RESTART_GRACE``, 30 s by default,
counted from the controller's first pass):

* if the operator republishes the spec meanwhile, the spec finds its object
  in the kernel and adopts it as usual: nothing is deleted nor re-added;
* when the grace is over, the records still unwanted are swept like any stale
  record (a VIP that this node no longer holds, an old DHCP lease, KubeSpan
  since disabled).

The controller is woken when the grace ends (:meth:`Grace.wake`), so the sweep
does not wait for an unrelated event. Ordinary stale records are swept at once,
as before.

There is no separate "operator ready" signal: the merged specs in ``network``
do not say which operator they come from, so a readiness flag could not tell
which records it releases. An operator that has republished simply has its
objects adopted; only objects no operator wants any more wait for the grace.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from cosi import Context
from netd import tunables
from netd.resources.enums import ConfigLayer

#: The Applied record key holding the spec's layer, and its one value so far.
LAYER_KEY = "layer"
OPERATOR_LAYER = "operator"

TUNABLE = "OPERATOR_RESTART_GRACE"


def from_operator(spec: Any) -> bool:
    """The merged spec (any spec model with a ``layer``) came from the operator layer."""
    return getattr(spec, "layer", None) is ConfigLayer.OPERATOR


def tag(record: Mapping[str, Any], spec: Any) -> dict[str, Any]:
    """A copy of ``record`` that says whether ``spec`` comes from the operator layer."""
    out = {k: v for k, v in record.items() if k != LAYER_KEY}
    if from_operator(spec):
        out[LAYER_KEY] = OPERATOR_LAYER
    return out


def retag(record: Mapping[str, Any], spec: Any) -> dict[str, Any] | None:
    """The record re-tagged for ``spec`` if its tag is wrong (the spec's layer changed
    since the object was recorded, or an older record), else None (cheap: every pass
    checks every in-sync spec)."""
    return tag(record, spec) if is_operator(record) != from_operator(spec) else None


def is_operator(record: Mapping[str, Any]) -> bool:
    """The record is of an object an operator-layer spec made."""
    return record.get(LAYER_KEY) == OPERATOR_LAYER


class Grace:
    """The grace period of one controller after its start.

    :meth:`start` at the first pass (idempotent); :meth:`deferred` tells whether the
    restart sweep must leave a record alone for now; :meth:`wake` makes sure the
    controller gets a pass when the grace ends (its own timer: the Context's single
    requeue timer belongs to the retry back-off); :meth:`close` when the controller stops.
    """

    def __init__(self, seconds: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds  # None: the tunable, read at start()
        self.clock = clock
        self.started: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._logged = False

    def start(self) -> None:
        if self.started is None:
            if self.seconds is None:
                self.seconds = tunables.seconds(TUNABLE)
            self.started = self.clock()

    def remaining(self) -> float:
        """Seconds left (0 once over; the whole grace before :meth:`start`)."""
        seconds = self.seconds if self.seconds is not None else tunables.seconds(TUNABLE)
        if self.started is None:
            return seconds
        return max(0.0, self.started + seconds - self.clock())

    @property
    def over(self) -> bool:
        return self.started is not None and self.remaining() <= 0

    def deferred(self, record: Mapping[str, Any]) -> bool:
        """The restart sweep must keep this record (an operator's object) for now."""
        return is_operator(record) and not self.over

    def wake(self, ctx: Context, kept: int, what: str) -> None:
        """``kept`` records were deferred by this pass: log it (once) and trigger a pass
        when the grace ends."""
        if not self._logged:
            self._logged = True
            ctx.log.info(
                "keeping %d %s(s) of operator-layer specs for up to %.1f s, until their operators republish",
                kept,
                what,
                self.remaining(),
            )
        loop = asyncio.get_running_loop()
        if self._timer is None or self._loop is not loop:
            # A timer may fire a little early (loop clock resolution): the pass then finds
            # the grace not quite over and arms it again.
            self.close()
            self._loop = loop
            self._timer = loop.call_later(self.remaining(), self._fire, ctx)

    def _fire(self, ctx: Context) -> None:
        self._timer = None
        ctx.trigger()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
