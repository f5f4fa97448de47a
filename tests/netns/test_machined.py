"""machined as a process in a node: refusals, invalid configs, clean stop."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from harness import Lab, wait_until

MACHINED = str(Path(sys.executable).with_name("machined"))


def machined_args(node: object, *extra: str) -> list[str]:
    return [
        MACHINED,
        "--state-dir",
        str(node.state_dir),  # type: ignore[attr-defined]
        "--etc-dir",
        str(node.etc_dir),  # type: ignore[attr-defined]
        "--log-level",
        "debug",
        *extra,
    ]


def test_refuses_the_initial_network_namespace(tmp_path: Path) -> None:
    r = subprocess.run([MACHINED, "--state-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "refusing to run in the machine's initial network namespace" in r.stderr
    assert not any(tmp_path.iterdir())  # nothing written either


def test_invalid_config_exits_before_touching_the_kernel(lab: Lab) -> None:
    node = lab.node("bad")
    sw = lab.switch("sw")
    lab.connect(node, sw, "eth0")
    cfg = node.dir / "bad.yaml"
    cfg.write_text(
        "version: v1alpha1\nmachine:\n  network:\n    interfaces:\n"
        "      - interface: eth0\n        addresses: [10.0.0.1/255.255.255.0]\n"
        "        vlans:\n          - vlanId: 5000\n"
    )
    before = node.ip_json("addr")
    r = node.run(machined_args(node, "--config", str(cfg)), check=False, timeout=60)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert any(line.startswith("v1alpha1: machine.network.interfaces[0].addresses[0]:") for line in lines)
    assert any(line.startswith("v1alpha1: machine.network.interfaces[0].vlans[0].vlanId:") for line in lines)
    assert "Traceback" not in r.stderr
    assert node.ip_json("addr") == before


def test_sigterm_stops_within_ten_seconds(lab: Lab) -> None:
    node = lab.node("stop")
    proc = node.popen(machined_args(node))
    log = node.log_dir
    wait_until(
        lambda: any("node started" in p.read_text() for p in log.glob("*.log")),
        timeout=30,
        what="machined started",
    )
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    assert time.monotonic() - t0 < 10
    assert proc.returncode == 0
