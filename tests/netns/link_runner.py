"""Run the LinkSpecController inside a node (a test helper, not a test).

    link_runner.py STATE_DIR SPECS_JSON [--then SPECS_JSON] [--hold] [--settle SECONDS]

Puts the LinkSpecs of SPECS_JSON (a list of LinkSpec dicts, camelCase keys)
into a fresh state as the merge controller would, starts a runtime with the
controller (``applied.json`` in STATE_DIR), waits until it settles and prints
one JSON line: ``{"phase": "applied", "applied": {...}, "failing": [...],
"finalizers": {...}}``. With ``--then`` it then switches the same running
controller to a second spec set (changed specs updated, missing ones torn
down, released and destroyed, as the merge controller does) and prints a
second line (phase ``then``). With ``--hold`` it keeps running (reacting to
link events) until killed. ``--settle`` bounds each wait (a failing spec keeps
a retry timer pending, so the runtime never settles: the report then comes
after that many seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from cosi import Runtime, State
from netd.controllers.link_spec import APPLIED_KIND, LinkSpecController
from netd.kernel.applied import Applied
from netd.resources import register_all
from netd.resources.link import LINK_SPEC_TYPE, LinkSpec
from netd.resources.namespaces import NETWORK

OWNER = "network.LinkMergeController"


def report(phase: str, state: State, applied: Applied, ctl: LinkSpecController) -> None:
    out = {
        "phase": phase,
        "applied": applied.items(APPLIED_KIND),
        "failing": sorted(ctl.retry._failing),
        "finalizers": {r.md.id: list(r.md.finalizers) for r in state.list(NETWORK, LINK_SPEC_TYPE)},
    }
    print(json.dumps(out), flush=True)


def put_specs(state: State, path: str) -> set[str]:
    names = set()
    for raw in json.loads(Path(path).read_text()):
        spec = LinkSpec.model_validate(raw)
        state.put(NETWORK, LINK_SPEC_TYPE, spec.name, spec, OWNER)
        names.add(spec.name)
    return names


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("state_dir")
    p.add_argument("specs")
    p.add_argument("--then", default="")
    p.add_argument("--hold", action="store_true")
    p.add_argument("--settle", type=float, default=5.0)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    logging.getLogger("pyroute2").setLevel(logging.WARNING)

    state = State()
    register_all(state)
    put_specs(state, args.specs)
    applied = Applied.in_dir(args.state_dir)
    ctl = LinkSpecController(applied)
    runtime = Runtime(state)
    runtime.register(ctl)
    async with runtime:
        await runtime.settle(timeout=args.settle)
        report("applied", state, applied, ctl)
        if args.then:
            keep = put_specs(state, args.then)
            gone = [r.md.id for r in state.list(NETWORK, LINK_SPEC_TYPE) if r.md.id not in keep]
            for n in gone:
                state.teardown(NETWORK, LINK_SPEC_TYPE, n, OWNER)
            await runtime.settle(timeout=args.settle)
            for n in gone:
                r = state.get(NETWORK, LINK_SPEC_TYPE, n)
                if r is not None and not r.md.finalizers:
                    state.destroy(NETWORK, LINK_SPEC_TYPE, n, OWNER)
            report("then", state, applied, ctl)
        while args.hold:
            await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main())
