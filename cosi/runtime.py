"""The controller runtime: runs each controller as an asyncio task.

A controller that raises is logged under its own name and restarted after a
back-off; the others keep running. The runtime also knows the dependency
graph (controllers and the resource types they read and write).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from cosi.controller import Backoff, Context, Controller, InputKind, OutputKind
from cosi.state import State

log = logging.getLogger("cosi.runtime")


class Runtime:
    def __init__(self, state: State, backoff: Callable[[], Backoff] = Backoff) -> None:
        self.state = state
        self._backoff = backoff
        self._controllers: dict[str, Controller] = {}
        self.contexts: dict[str, Context] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.restarts: dict[str, int] = {}

    def register(self, c: Controller) -> None:
        """Add a controller; exclusive outputs are claimed now, so a conflict is
        found at start-up rather than at the first write."""
        if not c.name:
            raise ValueError(f"controller {type(c).__name__} has no name")
        if c.name in self._controllers:
            raise ValueError(f"controller {c.name} registered twice")
        for o in c.outputs():
            if o.kind is OutputKind.EXCLUSIVE:
                self.state.claim_exclusive(o.namespace, o.type, c.name)
        self._controllers[c.name] = c

    @property
    def controllers(self) -> list[Controller]:
        return list(self._controllers.values())

    def start(self) -> None:
        for name, c in self._controllers.items():
            if name not in self._tasks:
                ctx = Context(self.state, c, self._backoff())
                self.contexts[name] = ctx
                self._tasks[name] = asyncio.create_task(self._supervise(c, ctx), name=name)

    async def _supervise(self, c: Controller, ctx: Context) -> None:
        while True:
            try:
                await c.run(ctx)
                ctx.log.debug("controller returned")
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                delay = ctx.backoff.next()
                self.restarts[c.name] = self.restarts.get(c.name, 0) + 1
                ctx.log.exception("controller failed, restarting in %.2fs", delay)
                await asyncio.sleep(delay)
                ctx.trigger()  # a restarted controller reconciles at once

    async def settle(self, timeout: float = 10.0, quiet_rounds: int = 3) -> bool:
        """Wait until every controller is idle with nothing pending, several polls in a
        row (a one-shot run such as ``netctl plan``); False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        quiet = 0
        while quiet < quiet_rounds:
            await asyncio.sleep(0.002)
            if all(ctx.quiet for ctx in self.contexts.values()):
                quiet += 1
            else:
                quiet = 0
            if loop.time() > deadline:
                return False
        return True

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for ctx in self.contexts.values():
            ctx.close()
        self._tasks.clear()

    async def __aenter__(self) -> Runtime:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def dependencies(self) -> str:
        """The controller ↔ resource graph as graphviz text (``netctl inspect dependencies``).

        Inputs are edges from a type to its controller (weak dashed, strong
        solid, destroy-ready dotted); outputs from a controller to a type
        (exclusive bold, shared solid).
        """
        lines = ["digraph dependencies {", "  rankdir=LR;", '  node [fontname="sans"];']
        types: set[str] = set()
        edges: list[str] = []
        style_in = {InputKind.WEAK: "dashed", InputKind.STRONG: "solid", InputKind.DESTROY_READY: "dotted"}
        style_out = {OutputKind.EXCLUSIVE: "bold", OutputKind.SHARED: "solid"}
        for name in sorted(self._controllers):
            c = self._controllers[name]
            lines.append(f'  "{name}" [shape=box, style=filled, fillcolor=lightblue];')
            for i in c.inputs():
                t = f"{i.namespace}/{i.type}"
                types.add(t)
                edges.append(f'  "{t}" -> "{name}" [style={style_in[i.kind]}];')
            for o in c.outputs():
                t = f"{o.namespace}/{o.type}"
                types.add(t)
                edges.append(f'  "{name}" -> "{t}" [style={style_out[o.kind]}];')
        lines.extend(f'  "{t}" [shape=ellipse];' for t in sorted(types))
        lines.extend(edges)
        lines.append("}")
        return "\n".join(lines) + "\n"
