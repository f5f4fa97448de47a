"""Run the link and address spec controllers through a list of phases (a test helper).

    link_kinds_runner.py STATE_DIR PHASES_JSON

Python starts ~10x slower under UML, so one process runs every phase of
``tests/uml/test_link_kinds.py``. PHASES_JSON is a list of phases::

    {"links": [LinkSpec...], "addresses": [AddressSpec...], "restart": false, "monitor": false,
     "wait": 0}

Each phase puts its specs as the merge controllers would (changed ones
updated, missing ones torn down, released and destroyed). ``restart`` first
stops the runtime and starts fresh controllers on a fresh state (same
``applied.json``), as a restarted machined does; ``monitor`` runs ``ip -o
monitor link address`` for the phase, after ``wait`` seconds (the kernel finishes
what the previous phase started: IPv6 DAD, bond slaves coming up after
``updelay``). A bond option ``"primary": "@NAME"`` is replaced with NAME's ifindex
(as the config controller resolves it).

After each phase one JSON line: the controllers' log records of the phase
(every kernel write is logged), the failing specs, ``ip -j -d link``, the
LinkStatus ``bondMaster`` of each bond (decoded as the status controller
does), the monitor's lines, and the phase's seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cosi import Phase, Runtime, State
from netd.controllers.address_spec import AddressSpecController
from netd.controllers.link_spec import LinkSpecController
from netd.kernel.applied import Applied
from netd.kernel.netlink import AF_BRIDGE, RTM_GETLINK
from netd.kernel.rtnl_batch import RtnlBatch
from netd.kernel.rtnl_decode import link_status
from netd.resources import register_all
from netd.resources.address import ADDRESS_SPEC_TYPE, AddressSpec
from netd.resources.link import LINK_SPEC_TYPE, LinkSpec
from netd.resources.namespaces import NETWORK

OWNER = "test.LinkKindsRunner"
LOGGERS = ("network.LinkSpecController", "network.AddressSpecController")


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")


def resolve(raw: dict[str, Any]) -> dict[str, Any]:
    bond = raw.get("bondMaster")
    if bond and isinstance(bond.get("primary"), str):
        raw = {**raw, "bondMaster": {**bond, "primary": socket.if_nametoindex(bond["primary"].lstrip("@"))}}
    return raw


def wanted(phase: dict[str, Any]) -> dict[tuple[str, str], Any]:
    want: dict[tuple[str, str], Any] = {}
    for raw in phase.get("links", []):
        ls = LinkSpec.model_validate(resolve(raw))
        want[(LINK_SPEC_TYPE, ls.name)] = ls
    for raw in phase.get("addresses", []):
        a = AddressSpec.model_validate(raw)
        want[(ADDRESS_SPEC_TYPE, a.id())] = a
    return want


def new_runtime(state_dir: str) -> tuple[State, Runtime, LinkSpecController]:
    state = State()
    register_all(state)
    applied = Applied.in_dir(state_dir)
    rt = Runtime(state)
    links = LinkSpecController(applied)
    rt.register(links)
    rt.register(AddressSpecController(applied))
    return state, rt, links


async def apply(state: State, rt: Runtime, phase: dict[str, Any], started: bool) -> None:
    want = wanted(phase)
    for type_ in (LINK_SPEC_TYPE, ADDRESS_SPEC_TYPE):
        for res in state.list(NETWORK, type_):
            if (type_, res.md.id) not in want and res.md.phase is Phase.RUNNING:
                state.teardown(NETWORK, type_, res.md.id, OWNER)
    for (type_, id_), spec in want.items():
        state.put(NETWORK, type_, id_, spec, OWNER)
    if not started:  # specs first: machined starts the spec controllers after the merge settled
        rt.start()
    for _ in range(10):
        await rt.settle(timeout=20)
        ready = [
            r
            for t in (LINK_SPEC_TYPE, ADDRESS_SPEC_TYPE)
            for r in state.list(NETWORK, t)
            if r.md.phase is Phase.TEARING_DOWN and not r.md.finalizers
        ]
        if not ready:
            return
        for r in ready:
            state.destroy(NETWORK, r.md.type, r.md.id, OWNER)


async def bond_status() -> dict[str, Any]:
    out: dict[str, Any] = {}
    with RtnlBatch() as batch:
        recs = await batch.dump_async(RTM_GETLINK)
    for rec in recs:
        if rec.family != AF_BRIDGE:
            name, status = link_status(rec, with_sysfs=False)
            if status.kind == "bond":
                out[name] = status.bond_master.model_dump(mode="json", by_alias=True)
    return out


async def main(state_dir: str, phases_path: str) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    logging.getLogger("pyroute2").setLevel(logging.WARNING)
    records = Records()
    for name in LOGGERS:
        logging.getLogger(name).addHandler(records)
    phases = json.loads(Path(phases_path).read_text())
    state, rt, links = new_runtime(state_dir)
    started = False
    for phase in phases:
        t0 = time.monotonic()
        if phase.get("restart") and started:
            await rt.stop()
            state, rt, links = new_runtime(state_dir)
            started = False
        await asyncio.sleep(phase.get("wait", 0))
        monitor = None
        if phase.get("monitor"):
            monitor = await asyncio.create_subprocess_exec(
                "ip", "-o", "monitor", "link", "address", stdout=asyncio.subprocess.PIPE
            )
            await asyncio.sleep(0.3)  # subscribed before the controllers start
        records.lines.clear()
        await apply(state, rt, phase, started)
        started = True
        events: list[str] = []
        if monitor is not None:
            await asyncio.sleep(1.0)
            monitor.terminate()
            out, _ = await monitor.communicate()
            events = out.decode().splitlines()
        ip = subprocess.run(["ip", "-j", "-d", "link"], check=True, capture_output=True, text=True).stdout
        report = {
            "log": list(records.lines),
            "failing": sorted(links.retry._failing),
            "links": {lk["ifname"]: lk for lk in json.loads(ip)},
            "bonds": await bond_status(),
            "events": events,
            "seconds": round(time.monotonic() - t0, 2),
        }
        print(json.dumps(report), flush=True)
    await rt.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
