"""DHCPv4: time from link up to the leased address in the kernel, ours against busybox udhcpc.

Issue 14 Bench. One lab (tests/harness): switch ``sw``, node ``srv`` running kea-dhcp4 (leases
kept in memory, so every run gets the same address), node ``n1`` the client. Each run:

* ours: machined is running with ``dhcp: true`` on eth0 while the switch port is down (eth0
  ``lowerLayerDown``: no operator runs); the lease file is removed (a full DORA, not INIT-REBOOT)
  and the address flushed; t0 = switch port up; done when ``10.0.0.50`` is on eth0 (polled every
  5 ms). This is the real path: LinkStatus → runner → operator → spec → address controller.
* udhcpc: the port goes up and ``busybox udhcpc -f -q`` starts at once (t0 just before the port
  goes up); its script adds the address; done as above.

20 runs each (alternating), medians printed as JSON. Goal (issue 14): ours ≤ 1.2 times udhcpc.

    .venv/bin/python bench/dhcp.py [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "netns")]

UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
  bound|renew) ip addr add "$ip/$subnet" dev "$interface" ;;
esac
exit 0
"""


def has(node: Any, ip: str) -> bool:
    out = node.run(["ip", "-4", "-o", "addr", "show", "dev", "eth0"], check=False).stdout
    return f" {ip}/" in out


def wait_addr(node: Any, ip: str, timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if has(node, ip):
            return time.monotonic()
        time.sleep(0.005)
    raise TimeoutError(f"{ip} not on eth0 after {timeout}s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=20)
    a = p.parse_args(argv)
    from harness import Lab, wait_until
    from test_dhcp4 import Kea, setup

    ours: list[float] = []
    theirs: list[float] = []
    with Lab() as lab:
        srv, m = setup(lab)
        Kea(srv, valid=600).start()
        sw = lab.members["sw"]
        port = next(p for p in sw.ports if p.startswith("n1"))  # type: ignore[attr-defined]
        node = m.node
        script = lab.dir / "udhcpc.sh"
        script.write_text(UDHCPC_SCRIPT)
        script.chmod(0o755)
        lease = node.state_dir / "operators" / "dhcp4_eth0" / "lease.json"
        busybox = shutil.which("busybox") or "/usr/bin/busybox"
        for i in range(a.runs):
            # ---- ours
            sw.run(["ip", "link", "set", port, "down"])
            if m.proc is None:
                m.start()
            wait_until(lambda: not m.specs("operators"), timeout=30, what="operator stopped")
            lease.unlink(missing_ok=True)
            node.run(["ip", "addr", "flush", "dev", "eth0", "scope", "global"])
            time.sleep(0.3)
            t0 = time.monotonic()
            sw.run(["ip", "link", "set", port, "up"])
            ours.append(wait_addr(node, "10.0.0.50") - t0)
            # ---- udhcpc (machined stopped: one client on the link at a time)
            assert m.stop() == 0
            m.proc = None
            sw.run(["ip", "link", "set", port, "down"])
            node.run(["ip", "addr", "flush", "dev", "eth0", "scope", "global"])
            node.run(["ip", "link", "set", "eth0", "up"])
            time.sleep(0.3)
            t0 = time.monotonic()
            sw.run(["ip", "link", "set", port, "up"])
            proc = node.popen([busybox, "udhcpc", "-f", "-q", "-i", "eth0", "-s", str(script)])
            theirs.append(wait_addr(node, "10.0.0.50") - t0)
            proc.wait(timeout=30)
            node.run(["ip", "addr", "flush", "dev", "eth0", "scope", "global"])
            print(
                f"run {i + 1}: ours {ours[-1] * 1000:.0f} ms, udhcpc {theirs[-1] * 1000:.0f} ms",
                file=sys.stderr,
            )
    mo, mt = statistics.median(ours), statistics.median(theirs)
    print(
        json.dumps(
            {
                "runs": a.runs,
                "ours_median_ms": round(mo * 1000, 1),
                "udhcpc_median_ms": round(mt * 1000, 1),
                "ratio": round(mo / mt, 2),
                "goal": "ours <= 1.2 x udhcpc",
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
