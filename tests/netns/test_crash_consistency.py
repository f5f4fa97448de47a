"""Crash consistency of what machined creates (issue 16), with a real machined and kernel.

Fault injection: machined applies a config with many objects of every kind it creates
(routes, addresses, rules: one netlink batch each; bridge links: one by one) and gets
SIGKILL at a random point of the apply (one point per seed, the seeds spread over the
apply window measured first). Then

* a restart with the SAME config removes nothing and re-adds nothing it already made
  (``ip monitor`` sees no deletion), and
* after another SIGKILL mid-apply, a restart with a config that drops those objects
  leaves the kernel with exactly the small config's objects plus the foreign ones created
  before the test (compared with the kernel of a clean run of the small config).

Also: a corrupt ``applied.json`` never costs a foreign object, and ``apply-config``
killed during its write-back or during a ``try`` leaves a whole file the node matches.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from harness import Lab, Node, wait_until

from netns.test_api import MACHINED, NETCTL

N_ROUTES = 1500
N_ADDRESSES = 200
N_RULES = 60
N_BRIDGES = 12
SEEDS = (1, 2, 3)

SMALL = """version: v1alpha1
machine:
  type: worker
  network:
    hostname: crash
    interfaces:
      - interface: eth0
        addresses: [192.0.2.10/24]
        routes:
          - network: 198.51.100.0/24
            gateway: 192.0.2.1
"""


def big_config() -> str:
    lines = [SMALL.rstrip("\n")]
    lines += [
        f"          - network: 10.200.{i // 256}.{i % 256}/32\n            gateway: 192.0.2.1"
        for i in range(N_ROUTES)
    ]
    lines.append("      - interface: eth1\n        addresses:")
    lines += [f"          - 10.201.{i // 256}.{i % 256}/32" for i in range(N_ADDRESSES)]
    for b in range(N_BRIDGES):
        lines.append(f"      - interface: fbr{b}\n        bridge:\n          interfaces: []")
    for r in range(N_RULES):
        lines.append(
            f'---\napiVersion: v1alpha1\nkind: RoutingRuleConfig\nname: "{2000 + r}"\n'
            f'src: 10.202.{r}.0/24\ntable: "100"'
        )
    return "\n".join(lines) + "\n"


def snapshot(node: Node) -> dict[str, Any]:
    """Everything of the kinds machined creates, from ``ip -j``."""
    routes = {
        (str(r.get("table", "main")), r["dst"], r.get("gateway", ""), r.get("dev", ""), r.get("metric", 0),
         r.get("protocol", ""))
        for r in node.ip_json("-4", "route", "show", "table", "all")
    }  # fmt: skip
    addrs = {
        (link["ifname"], f"{a['local']}/{a['prefixlen']}")
        for link in node.ip_json("-4", "addr", "show")
        for a in link.get("addr_info", [])
    }
    links = {
        (lk["ifname"], lk.get("linkinfo", {}).get("info_kind", ""))
        for lk in node.ip_json("-d", "link", "show")
    }
    rules = {
        (r["priority"], r.get("src", ""), str(r.get("table", ""))) for r in node.ip_json("-4", "rule", "show")
    }
    return {"routes": routes, "addresses": addrs, "links": links, "rules": rules}


def counts(node: Node) -> tuple[int, int, int, int]:
    s = snapshot(node)
    return (
        sum(1 for r in s["routes"] if r[1].startswith("10.200.") and r[1] != "10.200.200.1"),
        sum(1 for a in s["addresses"] if a[1].startswith("10.201.") and a[1] != "10.201.200.1/32"),
        sum(1 for lk in s["links"] if lk[0].startswith("fbr") and lk[0] != "fbr-foreign"),
        sum(1 for r in s["rules"] if 2000 <= r[0] < 2000 + N_RULES),
    )


FULL = (N_ROUTES, N_ADDRESSES, N_BRIDGES, N_RULES)


class Daemon:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.config = node.dir / "config.yaml"
        self.api = str(node.dir / "api.sock")
        self.proc: subprocess.Popen[str] | None = None

    def start(self, text: str | None = None) -> float:
        if text is not None:
            self.config.write_text(text)
        n = self.node
        self.proc = n.popen(
            [
                MACHINED, "--config", str(self.config), "--state-dir", str(n.state_dir),
                "--etc-dir", str(n.etc_dir), "--api", self.api, "--log-level", "info",
            ]
        )  # fmt: skip
        return time.monotonic()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)

    def netctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.node.run([NETCTL, *args, "--endpoint", self.api], check=check, timeout=60)


def make_node(lab: Lab) -> Node:
    node = lab.node("c")
    lab.stub(node, "eth0")
    lab.stub(node, "eth1")
    node.sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1")
    # Foreign objects, there before machined: never removed.
    node.sh(
        "ip link set eth0 up\nip link add fbr-foreign type bridge\n"
        "ip addr add 192.0.2.77/32 dev eth0\n"
        "ip addr add 10.201.200.1/32 dev eth1\n"  # inside the config's address range, not in it
        "ip route add 172.31.0.0/24 via 192.0.2.1 dev eth0 onlink proto static\n"
        "ip route add 10.200.200.1/32 via 192.0.2.1 dev eth0 onlink proto static\n"  # like ours, not ours
        "ip rule add priority 2500 from 10.202.250.0/24 lookup 100\n"
    )
    return node


def converge(node: Node, want: dict[str, Any], timeout: float = 60) -> None:
    last: list[dict[str, Any]] = [{}]

    def ok() -> bool:
        last[0] = snapshot(node)
        return last[0] == want

    try:
        wait_until(ok, timeout=timeout, interval=0.3, what="kernel == reference")
    except Exception:
        diff = {k: (sorted(want[k] - last[0][k])[:5], sorted(last[0][k] - want[k])[:5]) for k in want}
        raise AssertionError(f"kernel differs (missing, extra): {diff}") from None


def test_sigkill_during_apply_leaks_nothing_and_restart_keeps_everything(lab: Lab) -> None:
    node = make_node(lab)
    d = Daemon(node)
    # The reference: the small config, applied by a clean run.
    d.start(SMALL)
    wait_until(lambda: d.netctl("get", "ns", check=False).returncode == 0, timeout=30, what="API up")
    wait_until(
        lambda: any(r[1] == "198.51.100.0/24" for r in snapshot(node)["routes"]),
        timeout=30,
        what="small config",
    )
    time.sleep(1)
    reference = snapshot(node)
    d.stop()
    # The apply window of the big config: from the start until everything is in the kernel.
    t0 = d.start(big_config())
    wait_until(lambda: counts(node) == FULL, timeout=60, interval=0.02, what="big config applied")
    window = time.monotonic() - t0
    d.stop()
    d.start(SMALL)
    converge(node, reference)
    d.stop()

    for k, seed in enumerate(SEEDS):
        rng = random.Random(seed)
        # One kill point per seed, in its own slice of the window (start-up included:
        # the first objects appear well after the process starts).
        lo, hi = 0.3 + k / len(SEEDS) * 0.8, 0.3 + (k + 1) / len(SEEDS) * 0.8
        delay = window * rng.uniform(lo, hi)
        t0 = d.start(big_config())
        time.sleep(max(0.0, delay - (time.monotonic() - t0)))
        d.kill()
        at_kill = counts(node)
        # Same config: nothing made before the kill is removed and added again.
        mon_log = node.dir / f"monitor.{seed}.log"
        mon = node.popen(["ip", "-o", "monitor", "link", "address", "route", "rule"], log=mon_log)
        time.sleep(0.2)
        d.start()
        wait_until(lambda: counts(node) == FULL, timeout=60, what="big config applied after the crash")
        time.sleep(0.5)
        mon.terminate()
        mon.wait(timeout=5)
        deleted = [ln for ln in mon_log.read_text().splitlines() if ln.startswith("Deleted")]
        assert not deleted, f"seed {seed} (killed at {delay:.2f}s, {at_kill}): {deleted[:5]}"
        d.kill()
        # Killed again mid-apply (objects half made on a kernel that has them all: the
        # restart adopts, re-applies from a crash-state record), then the small config.
        t0 = d.start()
        time.sleep(max(0.0, delay - (time.monotonic() - t0)))
        d.kill()
        node.sh("ip route flush root 10.200.0.0/16 proto static; true")  # part gone: a second apply
        # the foreign one back
        node.sh("ip route replace 10.200.200.1/32 via 192.0.2.1 dev eth0 onlink proto static")
        t0 = d.start()
        time.sleep(max(0.0, delay - (time.monotonic() - t0)))
        d.kill()
        at_kill = counts(node)
        d.start(SMALL)
        try:
            converge(node, reference)
        except AssertionError as e:
            raise AssertionError(
                f"seed {seed} (killed at {delay:.2f}s of {window:.2f}s, {at_kill}): {e}"
            ) from None
        d.stop()
        print(f"seed {seed}: killed at {delay:.2f}s of a {window:.2f}s apply with {at_kill} made: ok")


def test_corrupt_applied_json_keeps_foreign_objects(lab: Lab) -> None:
    node = make_node(lab)
    d = Daemon(node)
    d.start(big_config())
    wait_until(lambda: counts(node) == FULL, timeout=60, what="big config applied")
    d.kill()
    before = snapshot(node)
    applied = node.state_dir / "applied.json"
    applied.write_bytes(applied.read_bytes()[: applied.stat().st_size // 2])  # truncated
    d.start(SMALL)
    wait_until(lambda: d.netctl("get", "ns", check=False).returncode == 0, timeout=30, what="API up")
    wait_until(
        lambda: "ignoring unreadable" in "".join(p.read_text() for p in node.log_dir.glob("*machined*.log")),
        timeout=10,
        what="the corruption logged",
    )
    time.sleep(3)
    after = snapshot(node)
    # Nothing removed: without the record, what the old config made looks foreign.
    for k in before:
        assert before[k] <= after[k], (k, sorted(before[k] - after[k])[:5])
    # And ownership recovered from what the current specs match: the small config's route,
    # removed by the next config that drops it.
    d.config.write_text(
        SMALL.replace("          - network: 198.51.100.0/24\n            gateway: 192.0.2.1\n", "")
    )
    d.netctl("apply-config", str(d.config))
    wait_until(
        lambda: not any(r[1] == "198.51.100.0/24" for r in snapshot(node)["routes"]),
        timeout=20,
        what="the adopted route removed with its spec",
    )
    assert ("eth0", "192.0.2.77/32") in snapshot(node)["addresses"]
    d.stop()


def test_sigkill_during_apply_config_and_try(lab: Lab, tmp_path: Path) -> None:
    node = make_node(lab)
    d = Daemon(node)
    d.start(SMALL)
    wait_until(lambda: d.netctl("get", "ns", check=False).returncode == 0, timeout=30, what="API up")
    new = SMALL.replace("198.51.100.0/24", "203.0.113.0/24")
    new_file = tmp_path / "new.yaml"
    new_file.write_text(new)
    rng = random.Random(7)
    for _ in range(3):
        cur = d.config.read_text()
        call = node.popen([NETCTL, "apply-config", str(new_file), "--endpoint", d.api])
        time.sleep(rng.uniform(0.0, 0.3))
        d.kill()
        call.wait(timeout=30)
        text = d.config.read_text()
        assert text in (cur, new), "config file truncated or mixed"
        d.start()
        dst = "203.0.113.0/24" if text == new else "198.51.100.0/24"
        wait_until(lambda d=dst: any(r[1] == d for r in snapshot(node)["routes"]), timeout=30, what=dst)
        d.config.write_text(SMALL)
        d.stop()
        d.start()
        wait_until(lambda: d.netctl("get", "ns", check=False).returncode == 0, timeout=30, what="API up")
    # A try, then SIGKILL: the previous config wins at the restart.
    d.netctl("apply-config", str(new_file), "--mode", "try", "--timeout", "60s")
    wait_until(
        lambda: any(r[1] == "203.0.113.0/24" for r in snapshot(node)["routes"]), timeout=30, what="try"
    )
    d.kill()
    assert d.config.read_text() == SMALL
    d.start()
    wait_until(
        lambda: (
            not any(r[1] == "203.0.113.0/24" for r in snapshot(node)["routes"])
            and any(r[1] == "198.51.100.0/24" for r in snapshot(node)["routes"])
        ),
        timeout=30,
        what="try rolled back",
    )
    assert d.config.read_text() == SMALL
    d.stop()
