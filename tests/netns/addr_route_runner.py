"""Runs the address, route and routing rule spec controllers inside a node, driven over stdin.

Usage: ``addr_route_runner.py STATE_DIR``. Each stdin line is a JSON object
``{"addresses": [AddressSpec...], "routes": [RouteSpec...], "rules": [RoutingRuleSpec...]}`` (spec keys as in
YAML): the desired set. Specs not in it are torn down (and destroyed once the
controllers released them). After the runtime settled, one JSON line is
printed: the spec IDs with their phase and finalizers, and the Applied record.
EOF stops the runtime (like a machined restart when started again).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

from cosi import Phase, Runtime, State
from netd.controllers.address_spec import AddressSpecController
from netd.controllers.route_spec import RouteSpecController
from netd.controllers.rule_spec import RoutingRuleSpecController
from netd.kernel.applied import Applied
from netd.resources import register_all
from netd.resources.address import ADDRESS_SPEC_TYPE, AddressSpec
from netd.resources.namespaces import NETWORK
from netd.resources.route import ROUTE_SPEC_TYPE, RouteSpec
from netd.resources.routing_rule import ROUTING_RULE_SPEC_TYPE, RoutingRuleSpec

TYPES = (ADDRESS_SPEC_TYPE, ROUTE_SPEC_TYPE, ROUTING_RULE_SPEC_TYPE)

OWNER = "test.Runner"


async def settle(rt: Runtime) -> None:
    for _ in range(2):
        await rt.settle(timeout=15)
        await asyncio.sleep(0.1)


async def main(state_dir: str) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    state = State()
    register_all(state)
    applied = Applied.in_dir(state_dir)
    rt = Runtime(state)
    rt.register(AddressSpecController(applied))
    rt.register(RouteSpecController(applied))
    rt.register(RoutingRuleSpecController(applied))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 << 20)  # a line may hold thousands of specs
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    started = False
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd: dict[str, Any] = json.loads(line)
        want: dict[tuple[str, str], Any] = {}
        for d in cmd.get("addresses", []):
            a = AddressSpec.model_validate(d)
            want[(ADDRESS_SPEC_TYPE, a.id())] = a
        for d in cmd.get("routes", []):
            rs = RouteSpec.model_validate(d)
            want[(ROUTE_SPEC_TYPE, rs.id())] = rs
        for d in cmd.get("rules", []):
            rr = RoutingRuleSpec.model_validate(d)
            want[(ROUTING_RULE_SPEC_TYPE, rr.id())] = rr
        for type_ in TYPES:
            for res in state.list(NETWORK, type_):
                if (type_, res.md.id) not in want:
                    state.teardown(NETWORK, type_, res.md.id, OWNER)
        for (type_, id_), spec in want.items():
            state.put(NETWORK, type_, id_, spec, OWNER)
        if not started:  # specs first, as machined starts spec controllers after the merge settled
            rt.start()
            started = True
        for _ in range(20):
            await settle(rt)
            ready = [
                r
                for t in TYPES
                for r in state.list(NETWORK, t)
                if r.md.phase is Phase.TEARING_DOWN and not r.md.finalizers
            ]
            if not ready:
                break
            for r in ready:
                state.destroy(NETWORK, r.md.type, r.md.id, OWNER)
        out = {
            "specs": {
                r.md.id: {"phase": str(r.md.phase), "finalizers": list(r.md.finalizers)}
                for t in TYPES
                for r in state.list(NETWORK, t)
            },
            # "rule" only once rules were applied (the address/route tests compare the whole dict)
            "applied": {k: sorted(applied.items(k)) for k in ("address", "route", "rule") if k != "rule" or applied.items(k)},  # noqa: E501
            "restarts": rt.restarts,
            "reconciles": {name: ctx.reconciles for name, ctx in rt.contexts.items()},
        }
        print(json.dumps(out), flush=True)
    await rt.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
