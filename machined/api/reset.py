"""``netctl reset`` (and ``machined --leave``): undo the network config this node applied.

The spec controllers already know how to undo what they applied: each holds a
finalizer on the specs it applied and, when a spec is torn down, removes the
kernel objects it created for it, then releases the spec. So reset is: stop
the controllers that write specs (they would recreate them), tear every spec
down on behalf of its owner, destroy each one as its finalizers are released,
and wait (bounded) until all are gone. Kernel objects that no spec of ours
created are never touched (that is the spec controllers' rule too), and the
loopback (``lo`` up with 127.0.0.1/8, which the kernel sets up by itself) stays.

Leaving the cluster comes first (:func:`leave_cluster`): every controller that
can leave (the discovery service controller) sends its delete right away,
while the network still works, instead of letting the record expire by its
TTL (kubespan.md §4.6 decision). A plain SIGTERM never gets here.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol, runtime_checkable

from cosi import Phase, Resource, Runtime, State
from cosi.errors import StateError
from netd.resources.address import ADDRESS_SPEC_TYPE
from netd.resources.link import LINK_SPEC_TYPE
from netd.resources.namespaces import NETWORK
from netd.resources.nftables import NFTABLES_CHAIN_TYPE

log = logging.getLogger("machined.reset")

RESET_TIMEOUT = 8.0
SPEC_SUFFIX = "Specs.net.talos.dev"
LOOPBACK = ("127.0.0.1/8", "::1/128")


@runtime_checkable
class Leaver(Protocol):
    """A controller with something to withdraw from the cluster when the node leaves."""

    async def leave(self) -> bool: ...


async def leave_cluster(runtime: Runtime, timeout: float = RESET_TIMEOUT) -> None:
    """Ask every :class:`Leaver` controller to leave, concurrently, bounded by ``timeout``."""
    leavers = [c for c in runtime.controllers if isinstance(c, Leaver)]
    if not leavers:
        return
    async def timed(c: Leaver) -> bool:
        t0 = asyncio.get_running_loop().time()
        try:
            return await asyncio.wait_for(c.leave(), timeout)
        finally:
            log.info("reset: %s left in %.2fs", getattr(c, "name", c), asyncio.get_running_loop().time() - t0)

    results = await asyncio.gather(*(timed(c) for c in leavers), return_exceptions=True)
    for c, r in zip(leavers, results, strict=True):
        if isinstance(r, BaseException):
            log.error("reset: %s could not leave: %s", c.name, r or type(r).__name__)


def kept(res: Resource) -> bool:
    """The loopback stays: ``lo`` and its 127.0.0.1/8 are the kernel's, not this node's config
    (the address spec only adopts them, and tearing it down would delete the address)."""
    spec = res.spec
    if res.md.type == LINK_SPEC_TYPE:
        return getattr(spec, "name", None) == "lo"
    if res.md.type == ADDRESS_SPEC_TYPE:
        return getattr(spec, "link_name", None) == "lo" and str(getattr(spec, "address", "")) in LOOPBACK
    return False


def reset_kinds(state: State) -> list[tuple[str, str]]:
    """The (namespace, type) of every desired-state resource that spec controllers apply."""
    kinds = [
        (NETWORK, d.type)
        for d in state.registry.all()
        if d.type.endswith(SPEC_SUFFIX) or d.type == NFTABLES_CHAIN_TYPE
    ]
    return sorted(kinds)


async def stop_controllers(runtime: Runtime, names: list[str]) -> None:
    """Stop some controllers and leave the others running.

    ``cosi.Runtime`` has no public per-controller stop yet, so this cancels
    their supervisor tasks; ``Runtime.stop`` later skips them.
    """
    tasks = []
    for name in names:
        task = runtime._tasks.pop(name, None)
        if task is not None:
            task.cancel()
            tasks.append(task)
        ctx = runtime.contexts.get(name)
        if ctx is not None:
            ctx.close()
    await asyncio.gather(*tasks, return_exceptions=True)


async def reset_network(state: State, runtime: Runtime, timeout: float = RESET_TIMEOUT) -> list[str]:
    """Tear every applied spec down and wait until the spec controllers released them.

    Returns the specs still held by a finalizer at the deadline (as
    ``Type(namespace/id)``), empty on a complete reset.
    """
    kinds = set(reset_kinds(state))
    writers = sorted(
        c.name for c in runtime.controllers if any((o.namespace, o.type) in kinds for o in c.outputs())
    )
    log.info("reset: stopping %d spec writers, tearing down %d spec types", len(writers), len(kinds))
    await stop_controllers(runtime, writers)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = []
        for ns, type_ in sorted(kinds):
            for r in state.list(ns, type_):
                if kept(r):
                    continue
                try:
                    if r.md.phase is Phase.RUNNING:
                        state.teardown(ns, type_, r.md.id, r.md.owner)
                        r = state.must_get(ns, type_, r.md.id)
                    if not r.md.finalizers:
                        state.destroy(ns, type_, r.md.id, r.md.owner)
                        continue
                except StateError as e:  # a writer we did not stop: report, do not loop forever
                    log.error("reset: %s", e)
                left.append(f"{type_}({ns}/{r.md.id})")
        if not left:
            log.info("reset: every spec is gone")
            return []
        if loop.time() >= deadline:
            log.error("reset: still held by finalizers after %.0fs: %s", timeout, ", ".join(left))
            return left
        await asyncio.sleep(0.05)
