"""Objects of operator-layer specs survive a restart for the grace period (decisions.md
"Restarts and objects that operators and KubeSpan own"), on a real kernel.

A first run of the link/address/route/rule spec controllers (``operator_grace_runner.py``)
creates what KubeSpan would: a link (a bridge here: no wireguard needed), an address on
it, a table-180 route through it and a fwmark rule to table 180, all from operator-layer
specs, plus an ordinary address and bridge from the machine config. After a restart
without any spec, the ordinary objects go at once, the operator's stay for the grace
(``OPERATOR_RESTART_GRACE`` shortened through ``NETD_TUNABLES``) and go after it. If the
operator republishes during the grace, nothing is removed nor re-added.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Lab, Node, wait_until

from netns.test_address_route_spec import route, wait_dad

pytestmark = pytest.mark.netns

RUNNER = str(Path(__file__).with_name("operator_grace_runner.py"))
GRACE = 3.0

OP = "operator"
CFG = "configuration"


def link_spec(name: str, layer: str) -> dict[str, Any]:
    return {
        "name": name,
        "logical": True,
        "up": True,
        "kind": "bridge",
        "type": "ether",
        "bridgeMaster": {"stp": {"enabled": False}},
        "layer": layer,
    }


def addr(address: str, link: str, layer: str) -> dict[str, Any]:
    return {
        "address": address,
        "linkName": link,
        "family": "inet4",
        "scope": "global",
        "flags": "permanent",
        "layer": layer,
    }


def _with(d: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {**d, **kw}


OPERATOR_SPECS: dict[str, list[dict[str, Any]]] = {
    "links": [link_spec("ks0", OP)],
    "addresses": [addr("10.77.0.1/24", "ks0", OP)],
    "routes": [
        _with(
            route("inet4", "10.88.0.0/16", table="RoutingTable(180)", link="ks0", metric=1, proto="boot"),
            layer=OP,
        )
    ],
    "rules": [
        {
            "family": "inet4",
            "priority": 1400,
            "action": "unicast",
            "fwMark": 0x40,
            "fwMask": 0x60,
            "table": "RoutingTable(180)",
            "layer": OP,
        }
    ],
}
CONFIG_SPECS: dict[str, list[dict[str, Any]]] = {
    "links": [link_spec("cf0", CFG)],
    "addresses": [addr("192.0.2.50/24", "eth0", CFG)],
}


def both() -> dict[str, list[dict[str, Any]]]:
    return {
        k: OPERATOR_SPECS.get(k, []) + CONFIG_SPECS.get(k, [])
        for k in ("links", "addresses", "routes", "rules")
    }


class Runner:
    def __init__(self, node: Node, tunables: Path) -> None:
        self.node = node
        self.log = open(node.log_dir / "grace-runner.log", "a")  # noqa: SIM115 - closed in stop()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            node.wrap([sys.executable, RUNNER, str(node.state_dir)]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            start_new_session=True,
            env={**os.environ, "NETD_TUNABLES": str(tunables)},
        )

    def apply(self, specs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(specs) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            pytest.fail(f"runner died: {self.logs()}")
        out: dict[str, Any] = json.loads(line)
        assert out["restarts"] == {}, self.logs()
        return out["applied"]

    def logs(self) -> str:
        self.log.flush()
        return (self.node.log_dir / "grace-runner.log").read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()


@pytest.fixture
def node(lab: Lab) -> Node:
    n = lab.node("n")
    lab.stub(n, "eth0")
    wait_dad(n, "eth0")
    return n


@pytest.fixture
def runners(node: Node, tmp_path: Path) -> Iterator[list[Runner]]:
    started: list[Runner] = []
    yield started
    for r in started:
        r.stop()


def start(node: Node, runners: list[Runner]) -> Runner:
    path = node.dir / "tunables.yaml"
    path.write_text(f"OPERATOR_RESTART_GRACE: {GRACE}\n")
    r = Runner(node, path)
    runners.append(r)
    return r


# ---- what the kernel has ---------------------------------------------------------------------------


def ifindex(node: Node, name: str) -> int | None:
    links = node.ip_json("link", "show")
    return next((int(lk["ifindex"]) for lk in links if lk["ifname"] == name), None)


def has_addr(node: Node, address: str) -> bool:
    ip, plen = address.split("/")
    return any(
        a.get("local") == ip and int(a["prefixlen"]) == int(plen)
        for lk in node.ip_json("addr", "show")
        for a in lk.get("addr_info", [])
    )


def has_route(node: Node) -> bool:
    return any(r.get("dst") == "10.88.0.0/16" for r in node.ip_json("route", "show", "table", "180"))


def has_rule(node: Node) -> bool:
    return any(r.get("priority") == 1400 and r.get("table") == "180" for r in node.ip_json("rule", "show"))


def operator_objects(node: Node) -> dict[str, bool]:
    return {
        "link": ifindex(node, "ks0") is not None,
        "address": has_addr(node, "10.77.0.1/24"),
        "route": has_route(node),
        "rule": has_rule(node),
    }


ALL_PRESENT = {"link": True, "address": True, "route": True, "rule": True}
ALL_GONE = {"link": False, "address": False, "route": False, "rule": False}


def first_run(node: Node, runners: list[Runner]) -> dict[str, Any]:
    r = start(node, runners)
    applied = r.apply(both())
    assert operator_objects(node) == ALL_PRESENT, r.logs()
    assert ifindex(node, "cf0") is not None and has_addr(node, "192.0.2.50/24")
    # Every record of an operator-layer spec says so; the others do not.
    for kind, records in applied.items():
        for key, rec in records.items():
            is_op = key == "ks0" or "10.77.0.1" in key or "10.88.0.0" in key or kind == "rule"
            assert (rec.get("layer") == "operator") == is_op, (kind, key, rec)
    assert set(applied["link"]) == {"ks0", "cf0"} and len(applied["address"]) == 2
    assert len(applied["route"]) == 1 and len(applied["rule"]) == 1
    r.stop()
    return applied


# ---- the tests --------------------------------------------------------------------------------------


def test_operator_objects_outlive_a_restart_for_the_grace_only(node: Node, runners: list[Runner]) -> None:
    first_run(node, runners)
    r = start(node, runners)
    applied = r.apply({})  # restarted without any spec: the operator has not republished
    elapsed = time.monotonic() - r.started
    assert elapsed < GRACE, "the runner took too long to start for this test to mean anything"
    # The machine config's leftovers go at once ...
    assert ifindex(node, "cf0") is None and not has_addr(node, "192.0.2.50/24")
    # ... the operator's wait for the grace.
    assert operator_objects(node) == ALL_PRESENT, r.logs()
    assert set(applied["link"]) == {"ks0"} and len(applied["address"]) == 1
    assert len(applied["route"]) == 1 and len(applied["rule"]) == 1
    time.sleep(max(0.0, GRACE - 1.0 - (time.monotonic() - r.started)))
    assert operator_objects(node) == ALL_PRESENT, r.logs()  # still, a second before the end

    wait_until(lambda: operator_objects(node) == ALL_GONE, timeout=GRACE + 10, what="grace over: swept")
    assert time.monotonic() - r.started >= GRACE
    assert r.apply({}) == {"link": {}, "address": {}, "route": {}, "rule": {}}
    assert "keeping" in r.logs()


def test_operator_republishing_in_the_grace_keeps_everything_in_place(
    node: Node, runners: list[Runner]
) -> None:
    first_run(node, runners)
    index = ifindex(node, "ks0")
    # The kernel's own IPv6 link-local address of the new bridge: its DAD would show up below.
    wait_until(
        lambda: any(
            a.get("scope") == "link" and not a.get("tentative")
            for lk in node.ip_json("-6", "addr", "show", "dev", "ks0")
            for a in lk.get("addr_info", [])
        ),
        timeout=10,
        what="ks0's link-local address",
    )
    monitor = node.popen(
        ["ip", "-ts", "monitor", "link", "address", "route", "rule"],
        log=node.log_dir / "grace-monitor.log",
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    r = start(node, runners)
    applied = r.apply({})
    assert operator_objects(node) == ALL_PRESENT
    time.sleep(1.0)  # the operator (KubeSpan) takes its time
    applied = r.apply(OPERATOR_SPECS)
    assert time.monotonic() - r.started < GRACE
    time.sleep(GRACE + 1.0)  # well past the grace
    assert operator_objects(node) == ALL_PRESENT, r.logs()
    assert ifindex(node, "ks0") == index
    applied = r.apply(OPERATOR_SPECS)
    assert set(applied["link"]) == {"ks0"} and len(applied["address"]) == 1
    assert len(applied["route"]) == 1 and len(applied["rule"]) == 1
    assert all(rec.get("layer") == "operator" for recs in applied.values() for rec in recs.values())
    time.sleep(0.3)
    monitor.terminate()
    monitor.wait(timeout=10)
    events = (node.log_dir / "grace-monitor.log").read_text().splitlines()
    ours = [e for e in events if any(s in e for s in ("ks0", "10.77.0.", "10.88.0.", "1400:", "table 180"))]
    # Only the config's leftovers were removed (cf0, 192.0.2.50); ours were never touched.
    assert ours == [], "\n".join(events)
    assert any("cf0" in e for e in events), "\n".join(events)
