"""Runs the link, address, route and routing rule spec controllers inside a node, driven over stdin.

Usage: ``operator_grace_runner.py STATE_DIR``. Each stdin line is a JSON object
``{"links": [LinkSpec...], "addresses": [...], "routes": [...], "rules": [...]}``
(spec keys as in YAML, ``layer`` included): the desired set, put into ``network``
as the merge controllers would. Specs not in it are torn down (and destroyed once
released). The runtime starts after the first line (as machined starts the spec
controllers after the merge settled). After each line, once settled, one JSON line
is printed: ``{"applied": {kind: {id: record}}}``. EOF stops the runtime, which
keeps the kernel state (a restart when started again). ``OPERATOR_RESTART_GRACE``
comes from ``NETD_TUNABLES`` as in machined.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

from cosi import Phase, Runtime, State
from netd.controllers.address_spec import AddressSpecController
from netd.controllers.link_spec import LinkSpecController
from netd.controllers.route_spec import RouteSpecController
from netd.controllers.rule_spec import RoutingRuleSpecController
from netd.kernel.applied import Applied
from netd.resources import register_all
from netd.resources.address import ADDRESS_SPEC_TYPE, AddressSpec
from netd.resources.link import LINK_SPEC_TYPE, LinkSpec
from netd.resources.namespaces import NETWORK
from netd.resources.route import ROUTE_SPEC_TYPE, RouteSpec
from netd.resources.routing_rule import ROUTING_RULE_SPEC_TYPE, RoutingRuleSpec

TYPES = (LINK_SPEC_TYPE, ADDRESS_SPEC_TYPE, ROUTE_SPEC_TYPE, ROUTING_RULE_SPEC_TYPE)
KINDS = ("link", "address", "route", "rule")
OWNER = "test.Runner"


def desired(cmd: dict[str, Any]) -> dict[tuple[str, str], Any]:
    want: dict[tuple[str, str], Any] = {}
    for d in cmd.get("links", []):
        ls = LinkSpec.model_validate(d)
        want[(LINK_SPEC_TYPE, ls.name)] = ls
    for d in cmd.get("addresses", []):
        a = AddressSpec.model_validate(d)
        want[(ADDRESS_SPEC_TYPE, a.id())] = a
    for d in cmd.get("routes", []):
        r = RouteSpec.model_validate(d)
        want[(ROUTE_SPEC_TYPE, r.id())] = r
    for d in cmd.get("rules", []):
        rr = RoutingRuleSpec.model_validate(d)
        want[(ROUTING_RULE_SPEC_TYPE, rr.id())] = rr
    return want


async def main(state_dir: str) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("pyroute2").setLevel(logging.WARNING)
    state = State()
    register_all(state)
    applied = Applied.in_dir(state_dir)
    rt = Runtime(state)
    for c in (
        LinkSpecController(applied),
        AddressSpecController(applied),
        RouteSpecController(applied),
        RoutingRuleSpecController(applied),
    ):
        rt.register(c)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    started = False
    while line := await reader.readline():
        want = desired(json.loads(line))
        for type_ in TYPES:
            for res in state.list(NETWORK, type_):
                if (type_, res.md.id) not in want:
                    state.teardown(NETWORK, type_, res.md.id, OWNER)
        for (type_, id_), spec in want.items():
            state.put(NETWORK, type_, id_, spec, OWNER)
        if not started:
            rt.start()
            started = True
        for _ in range(20):
            await rt.settle(timeout=15)
            await asyncio.sleep(0.1)
            released = [
                r
                for t in TYPES
                for r in state.list(NETWORK, t)
                if r.md.phase is Phase.TEARING_DOWN and not r.md.finalizers
            ]
            if not released:
                break
            for r in released:
                state.destroy(NETWORK, r.md.type, r.md.id, OWNER)
        out = {"applied": {k: applied.items(k) for k in KINDS}, "restarts": rt.restarts}
        print(json.dumps(out), flush=True)
    await rt.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
