"""LinkSpecController on a real kernel: bridges, ports, physical links, ownership, restarts.

The controller runs in a node through ``link_runner.py`` (a fresh controller per run,
so every run after the first is a restart on the same kernel state). Bridge ports are
veths to their own stubs: never plugged into a test switch (L2 loop).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import Lab, wait_until

RUNNER = str(Path(__file__).with_name("link_runner.py"))
ETHER = "ether"


def bridge(name: str, stp: bool, up: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "logical": True,
        "up": up,
        "kind": "bridge",
        "type": ETHER,
        "bridgeMaster": {"stp": {"enabled": stp}},
    }


def phys(name: str, up: bool = True, mtu: int = 0, bridge: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "up": up, "mtu": mtu, "type": ETHER}
    if bridge:
        spec["bridgeSlave"] = {"masterName": bridge}
    return spec


def write_specs(node: Any, specs: list[dict[str, Any]]) -> Path:
    path: Path = node.dir / f"specs.{time.monotonic_ns()}.json"
    path.write_text(json.dumps(specs))
    return path


def run_specs(
    node: Any, specs: list[dict[str, Any]], then: list[dict[str, Any]] | None = None, settle: float = 5.0
) -> list[Any]:
    """Run a fresh controller on ``specs`` (then ``then``); its report lines."""
    path = write_specs(node, specs)
    argv = [sys.executable, RUNNER, str(node.state_dir), str(path), "--settle", str(settle)]
    if then is not None:
        then_path = path.with_suffix(".then.json")
        then_path.write_text(json.dumps(then))
        argv += ["--then", str(then_path)]
    out = node.run(argv, timeout=60).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def link(node: Any, name: str) -> dict[str, Any] | None:
    links = node.ip_json("-d", "link", "show")
    return next((lk for lk in links if lk["ifname"] == name), None)


def stp_state(node: Any, name: str) -> int:
    lk = link(node, name)
    assert lk is not None
    return int(lk["linkinfo"]["info_data"]["stp_state"])


def applied(node: Any) -> dict[str, Any]:
    path = node.state_dir / "applied.json"
    return json.loads(path.read_text()).get("link", {}) if path.exists() else {}


def test_bridge_ports_mtu_up_and_restarts(lab: Lab) -> None:
    node = lab.node("n")
    lab.stub(node, "p1", up=False)
    lab.stub(node, "p2", up=False)
    lab.stub(node, "eth1", up=False)
    node.sh("ip link add brx type bridge")  # hand-made, no spec: never touched

    specs = [
        bridge("br0", stp=True),
        phys("p1", bridge="br0"),
        phys("p2", bridge="br0"),
        phys("eth1", mtu=1400),
    ]
    [rep] = run_specs(node, specs)
    assert rep["failing"] == []
    assert rep["applied"] == {"br0": {"kind": "bridge"}}
    assert all(f == ["network.LinkSpecController"] for f in rep["finalizers"].values())
    br0 = link(node, "br0")
    assert br0 is not None and br0["linkinfo"]["info_kind"] == "bridge" and "UP" in br0["flags"]
    assert stp_state(node, "br0") == 1
    for port in ("p1", "p2"):
        lk = link(node, port)
        assert lk is not None and lk["master"] == "br0" and "UP" in lk["flags"]
    eth1 = link(node, "eth1")
    assert eth1 is not None and eth1["mtu"] == 1400 and "UP" in eth1["flags"]
    assert applied(node) == {"br0": {"kind": "bridge"}}
    node.sh("ip addr add 192.0.2.1/24 dev br0")  # an address applied by hand

    # A restart with STP on writes nothing either (its link events are the kernel's own
    # STP port transitions, so the write log is what is checked here; see below).
    r = node.run([sys.executable, RUNNER, str(node.state_dir), str(write_specs(node, specs))])
    assert json.loads(r.stdout)["failing"] == []
    assert "network.LinkSpecController" not in r.stderr

    # STP off, p2 leaves the bridge, eth1 down: converges in the same controller run.
    changed = [
        bridge("br0", stp=False),
        phys("p1", bridge="br0"),
        phys("p2"),
        phys("eth1", up=False, mtu=1400),
    ]
    _, then = run_specs(node, specs, then=changed)
    assert then["failing"] == []
    assert stp_state(node, "br0") == 0
    p2 = link(node, "p2")
    assert p2 is not None and "master" not in p2 and "UP" in p2["flags"]
    p1 = link(node, "p1")
    assert p1 is not None and p1["master"] == "br0"
    eth1 = link(node, "eth1")
    assert eth1 is not None and "UP" not in eth1["flags"] and eth1["mtu"] == 1400
    addrs = node.ip_json("addr", "show", "dev", "br0")
    assert [a["local"] for a in addrs[0]["addr_info"] if a["family"] == "inet"] == ["192.0.2.1"]

    # Restart on the same kernel state with the same specs: not a single link event.
    # (Checked with STP off: with STP on, the kernel itself reports each port's
    # listening → learning → forwarding steps for 30 s. Carrier changes of the
    # previous run reach the monitor through linkwatch up to a second later.)
    wait_until(lambda: "LOWER_UP" in (link(node, "p1") or {}).get("flags", []), what="p1 carrier")
    time.sleep(1.5)
    mon_log = node.dir / "monitor.log"
    mon = node.popen(["ip", "monitor", "link"], log=mon_log, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    r = node.run([sys.executable, RUNNER, str(node.state_dir), str(write_specs(node, changed))])
    time.sleep(0.5)
    mon.send_signal(signal.SIGTERM)
    mon.wait(timeout=5)
    assert mon_log.read_text().strip() == ""
    assert json.loads(r.stdout)["failing"] == []
    assert "network.LinkSpecController" not in r.stderr  # nothing done, nothing logged
    assert stp_state(node, "br0") == 0

    # Restart with the bridge gone from the specs: recorded as ours, so deleted; its
    # former ports stay, and so does the hand-made bridge.
    [rep] = run_specs(node, [phys("p1"), phys("p2"), phys("eth1", up=False)])
    assert rep["failing"] == []
    assert link(node, "br0") is None
    assert applied(node) == {}
    for name in ("p1", "p2", "eth1", "brx"):
        assert link(node, name) is not None, name
    p1 = link(node, "p1")
    assert p1 is not None and "master" not in p1

    # A physical link whose spec is torn down is neither deleted nor brought down.
    _, then = run_specs(node, [phys("p1")], then=[])
    assert then["finalizers"] == {}
    p1 = link(node, "p1")
    assert p1 is not None and "UP" in p1["flags"]
    assert link(node, "brx") is not None


def test_teardown_deletes_only_our_bridge(lab: Lab) -> None:
    node = lab.node("n")
    lab.stub(node, "p1", up=False)
    node.sh("ip link add brh type bridge")  # exists before its spec: adopted, not ours
    node.sh("ip link add brx type bridge")  # no spec at all
    specs = [bridge("br0", stp=True), bridge("brh", stp=True), phys("p1", bridge="br0")]
    first, then = run_specs(node, specs, then=[phys("p1")])
    assert first["failing"] == [] and first["applied"] == {"br0": {"kind": "bridge"}}
    assert then["failing"] == []
    assert then["finalizers"] == {"p1": ["network.LinkSpecController"]}  # the others released
    assert link(node, "br0") is None  # created by us: deleted with its spec
    brh = link(node, "brh")
    assert brh is not None  # adopted: configured while its spec lived, left in place after
    assert stp_state(node, "brh") == 1
    assert link(node, "brx") is not None
    p1 = link(node, "p1")
    assert p1 is not None and "master" not in p1
    assert applied(node) == {}

    # A restart with applied.json present still leaves the foreign bridges alone.
    run_specs(node, [bridge("br0", stp=False)])
    [rep] = run_specs(node, [])
    assert rep["applied"] == {}
    assert link(node, "br0") is None
    assert link(node, "brh") is not None and link(node, "brx") is not None


def test_kind_mismatch_not_ours_is_left_alone(lab: Lab) -> None:
    node = lab.node("n")
    lab.stub(node, "br9", up=False)  # a veth named like the bridge we want
    [rep] = run_specs(node, [bridge("br9", stp=False)], settle=1.0)
    assert rep["failing"] == ["link br9"]
    lk = link(node, "br9")
    assert lk is not None and lk["linkinfo"]["info_kind"] == "veth"
    assert rep["applied"] == {}


def test_recreates_our_link_of_the_wrong_kind(lab: Lab) -> None:
    node = lab.node("n")
    (node.state_dir / "applied.json").write_text(json.dumps({"link": {"br7": {"kind": "bridge"}}}))
    node.sh("ip link add br7 type veth peer name br7p")  # ours by the record, now the wrong kind
    [rep] = run_specs(node, [bridge("br7", stp=True)])
    assert rep["failing"] == []
    lk = link(node, "br7")
    assert lk is not None and lk["linkinfo"]["info_kind"] == "bridge"
    assert stp_state(node, "br7") == 1


def test_master_appearing_later_is_joined(lab: Lab) -> None:
    node = lab.node("n")
    lab.stub(node, "p1", up=False)
    path = node.dir / "specs.json"
    path.write_text(json.dumps([phys("p1", bridge="brm")]))
    log = node.dir / "runner.log"
    proc = node.popen(
        [sys.executable, RUNNER, str(node.state_dir), str(path), "--hold", "--settle", "1"], log=log
    )
    wait_until(lambda: '"phase": "applied"' in log.read_text(), timeout=30, what="first settle")
    assert '"failing": ["link p1"]' in log.read_text()
    p1 = link(node, "p1")
    assert p1 is not None and "master" not in p1 and "UP" in p1["flags"]  # up/MTU still applied
    node.sh("ip link add brm type bridge")
    wait_until(lambda: (link(node, "p1") or {}).get("master") == "brm", timeout=10, what="p1 joins brm")
    wait_until(lambda: "UP" in (link(node, "p1") or {}).get("flags", []), timeout=10, what="p1 up again")
    assert proc.poll() is None
    assert applied(node) == {}  # brm is not ours


def test_generic_kind_created_and_deleted_by_name(lab: Lab) -> None:
    # ifb stands in for the kinds without a module (the host kernel has no dummy).
    node = lab.node("n")
    ifb = {"name": "ifb7", "logical": True, "up": True, "mtu": 1400, "kind": "ifb", "type": ETHER}
    first, then = run_specs(node, [ifb], then=[])
    assert first["failing"] == [] and first["applied"] == {"ifb7": {"kind": "ifb"}}
    assert then["applied"] == {} and then["finalizers"] == {}
    assert link(node, "ifb7") is None
    [rep] = run_specs(node, [ifb])
    lk = link(node, "ifb7")
    assert (
        lk is not None and lk["linkinfo"]["info_kind"] == "ifb" and lk["mtu"] == 1400 and "UP" in lk["flags"]
    )
    assert rep["applied"] == {"ifb7": {"kind": "ifb"}}
