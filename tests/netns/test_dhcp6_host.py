"""A stand-alone :class:`OperatorHost` that runs :class:`DHCP6Operator` in a test namespace (no tests here).

Run inside a node's namespaces by ``test_dhcp6.py``::

    python tests/netns/test_dhcp6_host.py --link eth0 --state-dir DIR --out OUT.json [--duid HEX]

It applies the operator's AddressSpecs with ``ip addr replace`` (lifetimes from
validUntil/preferredUntil, as the address spec controller does) and removes withdrawn ones, and
writes everything the operator published (specs, status, drop counters) to ``--out`` after each
change, so a test reads what the operator did without machined. machined itself is tested in
``test_dhcp6.py::test_machined_dhcp6``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo, when run as a script

from netd.resources.enums import Operator
from netd.resources.operator import DHCP6OperatorSpec, OperatorSpec
from netd.resources.operator_status import OperatorStatusSpec
from operators.base import OperatorOutput
from operators.dhcp6 import DHCP6Operator


class NetnsHost:
    def __init__(self, spec: OperatorSpec, state_dir: Path, out: Path) -> None:
        self._spec, self._state_dir, self.out = spec, state_dir, out
        self.output = OperatorOutput()
        self.status: OperatorStatusSpec | None = None
        self.operator: DHCP6Operator | None = None
        self.publishes = 0

    @property
    def spec(self) -> OperatorSpec:
        return self._spec

    @property
    def state_dir(self) -> Path:
        return self._state_dir

    def publish(self, output: OperatorOutput) -> None:
        now = dt.datetime.now(dt.UTC)
        link = self._spec.link_name
        for key, old in self.output.addresses.items():
            if key not in output.addresses:
                subprocess.run(["ip", "addr", "del", str(old.address), "dev", link], check=False)
        for a in output.addresses.values():
            valid, preferred = a.lifetimes(now)
            life = ["valid_lft", str(valid) if valid is not None else "forever"]
            life += ["preferred_lft", str(preferred) if preferred is not None else "forever"]
            subprocess.run(["ip", "addr", "replace", str(a.address), "dev", link, *life], check=True)
        self.output = output
        self.publishes += 1
        self.write()

    def set_status(self, status: OperatorStatusSpec) -> None:
        self.status = status
        self.write()

    async def wait_link_up(self) -> int:
        while True:
            index = self.link_index()
            if index is not None:
                return index
            await asyncio.sleep(0.1)

    def link_index(self) -> int | None:
        try:
            return socket.if_nametoindex(self._spec.link_name)
        except OSError:
            return None

    def write(self) -> None:
        def dump(d: dict[str, Any]) -> dict[str, Any]:
            return {k: v.model_dump(mode="json", by_alias=True) for k, v in d.items()}

        o = self.output
        doc = {
            "addresses": dump(o.addresses), "resolvers": dump(o.resolvers),
            "timeservers": dump(o.timeservers), "hostnames": dump(o.hostnames), "publishes": self.publishes,
            "status": self.status.model_dump(mode="json", by_alias=True) if self.status else None,
            "dropped": dict(self.operator.dropped) if self.operator else {},
        }  # fmt: skip
        tmp = self.out.with_name(self.out.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, self.out)


async def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--link", default="eth0")
    ap.add_argument("--state-dir", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--duid", default="")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s %(message)s")
    spec = OperatorSpec(
        operator=Operator.DHCP6, link_name=args.link, require_up=True, dhcp6=DHCP6OperatorSpec(DUID=args.duid)
    )
    args.state_dir.mkdir(parents=True, exist_ok=True)
    host = NetnsHost(spec, args.state_dir, args.out)
    op = host.operator = DHCP6Operator(spec)
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    host.write()
    try:
        await op.run(host)
    except asyncio.CancelledError:
        host.write()
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
