"""OperatorSpecController: runs one operator per merged OperatorSpec (operators.md §1.3, §1.4).

Inputs: OperatorSpecs and LinkStatuses in ``network``. Outputs: the six spec
kinds the operators produce, in ``network-config`` (shared with the config
controllers), and OperatorStatus in ``network`` (decisions.md "Operator status").

Reconcile: read the specs and links → decide which operators should run (link
present, and up or ``unknown`` when ``requireUp``) → stop those that should
not (or whose spec changed, ``layer`` aside), start the missing ones → write
the union of the running operators' outputs, ids ``<operator id>/<natural id>``
→ destroy what no running operator wants (a stopped operator's output goes at
once, §1.4).

Each operator is an asyncio task (:meth:`OperatorSpecController._supervise`):
``run()`` raising restarts a *new* instance after the controller back-off of
§1.3 (0.5 s, times 1.5, ±50 %, at most 60 s), its last output staying published meanwhile
(a crashed operator does not take a valid lease down); ``run()`` returning is
the end of it. A stopped operator's successor for the same id starts only once
the old task has finished (a VIP steps down, a DHCP client closes its socket,
before the next one begins).

Operators signal new output or status through :class:`OperatorHost`; the
signal is a trigger of this controller, so a burst of changes is one write.

machined's stop (the controller cancelled) cancels the operators and waits for
them, but leaves their outputs alone: kernel state stays through a restart
(decisions.md "Restarts"). ``netctl reset`` / ``machined --leave`` call
:meth:`leave`: each operator is stopped, then its ``leave()`` runs (DHCPRELEASE).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel

from cosi import Context, Controller, Input, Output, OutputKind, Phase
from cosi.controller import Backoff
from netd.resources.address import ADDRESS_SPEC_TYPE
from netd.resources.enums import ConfigLayer, OperationalState
from netd.resources.hostname import HOSTNAME_SPEC_TYPE
from netd.resources.ids import operator_spec_id
from netd.resources.link import LINK_SPEC_TYPE, LINK_STATUS_TYPE, LinkStatus
from netd.resources.namespaces import NETWORK, NETWORK_CONFIG
from netd.resources.operator import OPERATOR_SPEC_TYPE, OperatorSpec
from netd.resources.operator_status import OPERATOR_STATUS_TYPE, OperatorStatusSpec
from netd.resources.resolver import RESOLVER_SPEC_TYPE
from netd.resources.route import ROUTE_SPEC_TYPE
from netd.resources.timeserver import TIME_SERVER_SPEC_TYPE
from operators.base import Operator, OperatorOutput
from operators.registry import OperatorRegistry

log = logging.getLogger("network.OperatorSpecController")

#: OperatorOutput field → the spec type it is published as.
OUTPUT_TYPES: tuple[tuple[str, str], ...] = (
    ("addresses", ADDRESS_SPEC_TYPE),
    ("routes", ROUTE_SPEC_TYPE),
    ("links", LINK_SPEC_TYPE),
    ("hostnames", HOSTNAME_SPEC_TYPE),
    ("resolvers", RESOLVER_SPEC_TYPE),
    ("timeservers", TIME_SERVER_SPEC_TYPE),
)

#: A link counts as up in these operational states (§1.3 step 1: ``unknown`` too, e.g. tun).
UP_STATES = frozenset({OperationalState.UP, OperationalState.UNKNOWN})

#: A run that lasted this long before it raised restarts with the back-off reset.
BACKOFF_RESET_AFTER = 60.0

#: How long machined's stop waits for the operators to finish (VIP resigns within its own bound).
STOP_WAIT = 7.0


def should_run(spec: OperatorSpec, links: Mapping[str, LinkStatus]) -> bool:
    """§1.3 step 2: the link has a LinkStatus, and is up unless the spec does not require it."""
    link = links.get(spec.link_name)
    return link is not None and (not spec.require_up or link.operational_state in UP_STATES)


def state_dir_name(operator_id: str) -> str:
    """The operator's directory name under ``<state-dir>/operators`` (``dhcp4/eth0`` → ``dhcp4_eth0``)."""
    return operator_id.replace("/", "_")


def with_operator_layer(spec: BaseModel) -> BaseModel:
    """The spec with ``layer: operator`` unless the operator set a layer itself."""
    if "layer" in spec.model_fields_set or not hasattr(spec, "layer"):
        return spec
    return spec.model_copy(update={"layer": ConfigLayer.OPERATOR})


class OperatorInstance:
    """One running operator and the :class:`operators.base.OperatorHost` it is given."""

    def __init__(self, runner: OperatorSpecController, spec: OperatorSpec, operator: Operator) -> None:
        self._runner = runner
        self._spec = spec
        self.id = spec.id()
        self.operator = operator
        self.output = OperatorOutput()
        self.status: OperatorStatusSpec | None = None
        self.task: asyncio.Task[None] | None = None
        self.restarts = 0

    # ---- OperatorHost -------------------------------------------------------------------

    @property
    def spec(self) -> OperatorSpec:
        return self._spec

    @property
    def state_dir(self) -> Path:
        d = self._runner.state_dir / "operators" / state_dir_name(self.id)
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        return d

    def publish(self, output: OperatorOutput) -> None:
        self.output = output
        self._runner.changed()

    def set_status(self, status: OperatorStatusSpec) -> None:
        self.status = status
        self._runner.changed()

    def link_index(self) -> int | None:
        link = self._runner.links.get(self._spec.link_name)
        return None if link is None else link.index

    async def wait_link_up(self) -> int:
        while True:
            link = self._runner.links.get(self._spec.link_name)
            if link is not None and (not self._spec.require_up or link.operational_state in UP_STATES):
                return link.index
            await self._runner.links_changed()


class OperatorSpecController(Controller):
    name = "network.OperatorSpecController"

    def __init__(
        self,
        state_dir: str | Path,
        registry: OperatorRegistry | None = None,
        backoff: Callable[[], Backoff] = Backoff,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.registry = registry or OperatorRegistry()
        self.backoff = backoff
        self.links: dict[str, LinkStatus] = {}
        self.running: dict[str, OperatorInstance] = {}
        self._stopping: dict[str, asyncio.Task[None]] = {}
        self._links_event = asyncio.Event()
        self._ctx: Context | None = None
        self._leaving = False

    def inputs(self) -> Sequence[Input]:
        return [Input(NETWORK, OPERATOR_SPEC_TYPE), Input(NETWORK, LINK_STATUS_TYPE)]

    def outputs(self) -> Sequence[Output]:
        return [
            *(Output(NETWORK_CONFIG, t, OutputKind.SHARED) for _, t in OUTPUT_TYPES),
            Output(NETWORK, OPERATOR_STATUS_TYPE),
        ]

    # ---- signals from the operators ------------------------------------------------------

    def changed(self) -> None:
        if self._ctx is not None:
            self._ctx.trigger()

    async def links_changed(self) -> None:
        await self._links_event.wait()

    def _set_links(self, links: dict[str, LinkStatus]) -> None:
        self.links = links
        self._links_event.set()
        self._links_event = asyncio.Event()

    # ---- the loop -------------------------------------------------------------------------

    async def run(self, ctx: Context) -> None:
        self._ctx = ctx
        try:
            await super().run(ctx)
        except asyncio.CancelledError:
            await self._shutdown()
            raise

    async def reconcile(self, ctx: Context) -> None:
        self._ctx = ctx
        self._set_links({r.id: r.spec for r in ctx.list(NETWORK, LINK_STATUS_TYPE)})  # type: ignore[misc]
        specs: dict[str, OperatorSpec] = {
            r.id: r.spec  # type: ignore[misc]
            for r in ctx.list(NETWORK, OPERATOR_SPEC_TYPE)
            if r.md.phase is Phase.RUNNING
        }
        want = {} if self._leaving else {k: s for k, s in specs.items() if should_run(s, self.links)}
        if not self._leaving:
            for id_, inst in list(self.running.items()):
                spec = want.get(id_)
                if spec is None or not inst.spec.same_operator(spec):
                    why = "spec changed" if spec is not None else "link down or spec gone"
                    log.info("operator %s stopped: %s", id_, why)
                    self._stop(ctx, inst)
            for id_, spec in sorted(want.items()):
                if id_ in self.running or id_ in self._stopping:
                    continue  # a stopping predecessor's end triggers the next pass
                self._start(spec)
        self._publish(ctx)

    def _start(self, spec: OperatorSpec) -> None:
        op = self.registry.create(spec)
        if op is None:
            return
        inst = OperatorInstance(self, spec, op)
        self.running[inst.id] = inst
        inst.task = asyncio.create_task(self._supervise(inst), name=f"operator {inst.id}")
        log.info("operator %s started", inst.id)

    def _stop(self, ctx: Context, inst: OperatorInstance) -> None:
        del self.running[inst.id]
        task = inst.task
        if task is None or task.done():
            return
        task.cancel()
        self._stopping[inst.id] = task

        def finished(t: asyncio.Task[None]) -> None:
            if self._stopping.get(inst.id) is t:
                del self._stopping[inst.id]
            ctx.trigger()

        task.add_done_callback(finished)

    async def _supervise(self, inst: OperatorInstance) -> None:
        """Run the operator; a failure restarts a fresh instance after the back-off (§1.3)."""
        backoff = self.backoff()
        while True:
            started = time.monotonic()
            try:
                await inst.operator.run(inst)
                log.info("operator %s returned; not restarted", inst.id)
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if time.monotonic() - started > BACKOFF_RESET_AFTER:
                    backoff.reset()
                delay = backoff.next()
                inst.restarts += 1
                log.exception("operator %s failed, restarting in %.2fs", inst.id, delay)
                base = inst.status or OperatorStatusSpec(
                    operator=str(inst.spec.operator), link_name=inst.spec.link_name
                )
                error = str(e) or type(e).__name__
                inst.set_status(base.model_copy(update={"state": "restarting", "error": error}))
                await asyncio.sleep(delay)
                op = self.registry.create(inst.spec)
                if op is None:
                    return
                inst.operator = op

    def _publish(self, ctx: Context) -> None:
        """§1.4: every running operator's output, ids prefixed; the rest destroyed."""
        for field, type_ in OUTPUT_TYPES:
            desired: dict[str, BaseModel] = {}
            for _, inst in sorted(self.running.items()):
                specs: Mapping[str, BaseModel] = getattr(inst.output, field)
                for natural, spec in specs.items():
                    full = operator_spec_id(inst.spec.operator, inst.spec.link_name, natural)
                    desired[full] = with_operator_layer(spec)
            ctx.reconcile_owned(NETWORK_CONFIG, type_, desired)
        ctx.reconcile_owned(
            NETWORK,
            OPERATOR_STATUS_TYPE,
            {id_: inst.status for id_, inst in self.running.items() if inst.status is not None},
        )

    # ---- stop and leave -------------------------------------------------------------------

    async def _cancel_all(self, timeout: float) -> None:
        tasks = [t for t in (*(i.task for i in self.running.values()), *self._stopping.values()) if t]
        for t in tasks:
            t.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for t in pending:
                log.error("operator task %s did not stop within %.0fs", t.get_name(), timeout)

    async def _shutdown(self) -> None:
        """machined stops: the operators stop, their outputs (and kernel state) stay."""
        await self._cancel_all(STOP_WAIT)

    async def leave(self) -> bool:
        """The node leaves (machined/api/reset.py Leaver): stop every operator, then run its
        ``leave()`` (DHCPRELEASE); no operator starts again afterwards."""
        self._leaving = True
        insts = list(self.running.values())
        await self._cancel_all(STOP_WAIT)
        results = await asyncio.gather(*(i.operator.leave(i) for i in insts), return_exceptions=True)
        ok = True
        for inst, r in zip(insts, results, strict=True):
            if isinstance(r, BaseException):
                ok = False
                log.error("operator %s could not leave: %s", inst.id, r or type(r).__name__)
        return ok
