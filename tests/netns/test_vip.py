"""VIP operator on three nodes of one switch with a real etcd (operators.md §4, issue 15).

Until the operator runner drives it inside machined, each node runs the operator alone through a
small OperatorHost (this file run as a script: ``python test_vip.py node ...``) that applies the
published AddressSpec with ``ip addr`` and writes the OperatorStatus to a JSON file. Timers are
shortened through NETD_TUNABLES (lease TTL 6 s, step-down margin 2 s).

A sampler reads the VIP off every node's eth0 every ~50 ms for the whole test: never two holders.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

VIP = "10.0.0.50"
ETCD_IP = "10.0.0.254"
CLIENT_IP = "10.0.0.100"
TTL = 6.0
MARGIN = 2.0
TUNABLES = f"VIP_LEASE_TTL: {TTL}\nVIP_STEPDOWN_MARGIN: {MARGIN}\nVIP_DIAL_TIMEOUT: 1\n"


# ---- the node side: a minimal OperatorHost -------------------------------------------------


def _node_main(argv: list[str]) -> None:  # pragma: no cover - runs inside a node namespace
    import logging

    from netd.netip import format_prefix
    from netd.resources.enums import ConfigLayer, Operator
    from netd.resources.operator import OperatorSpec, VIPOperatorSpec
    from netd.resources.operator_status import OperatorStatusSpec
    from operators.base import OperatorOutput
    from operators.vip import VIPOperator

    vip, endpoint, state = argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    spec = OperatorSpec(
        operator=Operator.VIP, link_name="eth0", require_up=True, layer=ConfigLayer.CONFIGURATION,
        vip=VIPOperatorSpec(ip=vip, gratuitousARP=True),
    )  # fmt: skip
    state_dir = Path(state)

    class Host:
        def __init__(self) -> None:
            self.applied: set[str] = set()

        @property
        def spec(self) -> OperatorSpec:
            return spec

        @property
        def state_dir(self) -> Path:
            return state_dir

        def publish(self, output: OperatorOutput) -> None:
            want = {format_prefix(a.address) for a in output.addresses.values() if a.address is not None}
            for a in want - self.applied:
                subprocess.run(["ip", "addr", "add", a, "dev", "eth0"], check=False)
            for a in self.applied - want:
                subprocess.run(["ip", "addr", "del", a, "dev", "eth0"], check=False)
            self.applied = want

        def set_status(self, status: OperatorStatusSpec) -> None:
            tmp = state_dir / "status.json.tmp"
            tmp.write_text(status.model_dump_json(by_alias=True))
            tmp.rename(state_dir / "status.json")

        async def wait_link_up(self) -> int:
            while True:
                idx = self.link_index()
                if idx is not None and Path("/sys/class/net/eth0/operstate").read_text().strip() == "up":
                    return idx
                await asyncio.sleep(0.1)

        def link_index(self) -> int | None:
            try:
                return socket.if_nametoindex("eth0")
            except OSError:
                return None

    async def main() -> None:
        task = asyncio.create_task(VIPOperator(spec, [endpoint]).run(Host()))
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            logging.info("stopped")

    asyncio.run(main())


if __name__ == "__main__" and sys.argv[1:2] == ["node"]:
    _node_main(sys.argv[2:])
    sys.exit(0)


# ---- the test side ---------------------------------------------------------------------------

from harness import Lab, Node  # noqa: E402
from harness.sysutil import wait_until  # noqa: E402

MACS = {f"n{i}": f"02:00:00:00:00:0{i}" for i in (1, 2, 3)}


class Sampler(threading.Thread):
    """Who has the VIP on an up eth0, every ~50 ms; remembers every sample with two holders."""

    def __init__(self, nodes: dict[str, Node], vip: str) -> None:
        super().__init__(daemon=True)
        self.nodes = nodes
        self.vip = vip
        self.stop = threading.Event()
        self.doubles: list[tuple[float, list[str]]] = []
        self.samples = 0
        self.last: list[str] = []

    def holders(self) -> list[str]:
        out = []
        for name, n in self.nodes.items():
            r = subprocess.run(
                ["ip", "-n", n.netns, "-j", "addr", "show", "dev", "eth0"], capture_output=True, text=True
            )
            if r.returncode != 0 or not r.stdout.strip():
                continue
            link = json.loads(r.stdout)[0]
            up = "UP" in link.get("flags", []) and "LOWER_UP" in link.get("flags", [])
            if up and any(a.get("local") == self.vip for a in link.get("addr_info", [])):
                out.append(name)
        return out

    def run(self) -> None:
        while not self.stop.is_set():
            h = self.holders()
            self.samples += 1
            self.last = h
            if len(h) > 1:
                self.doubles.append((time.monotonic(), h))
            time.sleep(0.05)


class World:
    def __init__(self, lab: Lab, vip: str = VIP) -> None:
        self.lab = lab
        self.vip = vip
        sw = lab.switch("sw")
        self.etcd = lab.node("etcd")
        lab.connect(self.etcd, sw)
        self.etcd.ip("addr", "add", f"{ETCD_IP}/24", "dev", "eth0")
        self.client = lab.node("client")
        lab.connect(self.client, sw, mac="02:00:00:00:00:64")
        self.client.ip("addr", "add", f"{CLIENT_IP}/24", "dev", "eth0")
        self.nodes: dict[str, Node] = {}
        for i, (name, mac) in enumerate(MACS.items(), start=1):
            n = lab.node(name, hostname=f"host-{name}")
            lab.connect(n, sw, mac=mac)
            n.ip("addr", "add", f"10.0.0.{i}/24", "dev", "eth0")
            self.nodes[name] = n
        self.tunables = lab.dir / "tunables.yaml"
        self.tunables.write_text(TUNABLES)
        self.env = {**os.environ, "NETD_TUNABLES": str(self.tunables)}
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.etcd_proc = self.etcd.popen(
            [
                "etcd", "--name", "t", "--data-dir", str(self.etcd.dir / "etcd"),
                "--listen-client-urls", f"http://{ETCD_IP}:2379", "--advertise-client-urls", f"http://{ETCD_IP}:2379",
                "--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
                "--initial-cluster", "t=http://127.0.0.1:2380", "--log-level", "warn",
            ]
        )  # fmt: skip
        health = [
            sys.executable,
            "-c",
            f"import httpx; print(httpx.get('http://{ETCD_IP}:2379/health').text)",
        ]
        wait_until(
            lambda: '"health":"true"' in self.etcd.run(health, check=False).stdout, timeout=30, what="etcd"
        )
        self.sampler = Sampler(self.nodes, vip)

    def start(self, name: str) -> None:
        n = self.nodes[name]
        argv = [sys.executable, __file__, "node", self.vip, f"http://{ETCD_IP}:2379", str(n.state_dir)]
        self.procs[name] = n.popen(argv, env=self.env)

    def status(self, name: str) -> dict[str, Any]:
        p = self.nodes[name].state_dir / "status.json"
        return json.loads(p.read_text()) if p.exists() else {}

    def one_holder(self, timeout: float) -> str:
        def check() -> str | None:
            h = self.sampler.holders()
            return h[0] if len(h) == 1 else None

        wait_until(lambda: check() is not None, timeout=timeout, what="exactly one VIP holder")
        holder = check()
        assert holder is not None
        return holder

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-3000:]}"
            for n in self.nodes.values()
            for p in n.log_dir.glob("*.log")
        )


@pytest.fixture
def world(lab: Lab) -> World:
    return World(lab)


def _neigh_mac(client: Node, vip: str = VIP) -> str:
    r = client.run(["ip", "-j", "neigh", "show", vip, "dev", "eth0"], check=False)
    entries = json.loads(r.stdout or "[]")
    return str(entries[0].get("lladdr", "")) if entries else ""


def test_vip_election_failover_and_partition(world: World) -> None:
    w = world
    w.sampler.start()
    try:
        _scenario(w)
    except BaseException:
        print(w.logs())
        raise
    finally:
        w.sampler.stop.set()
        w.sampler.join(5)
    assert w.sampler.samples > 100
    assert not w.sampler.doubles, f"two holders at once: {w.sampler.doubles[:5]}"


def _scenario(w: World) -> None:
    for name in w.nodes:
        w.start(name)
    holder = w.one_holder(15)
    st = w.status(holder)
    assert st["holder"] is True and st["operator"] == "vip" and st["term"] and st["since"], st
    for other in set(w.nodes) - {holder}:
        wait_until(lambda o=other: w.status(o).get("state") == "campaigning", timeout=10, what="candidates")
        assert not w.status(other).get("holder")
    # the client talks to the VIP: its neighbour entry points at the holder
    w.client.run(["ping", "-c1", "-W2", VIP])
    assert _neigh_mac(w.client) == MACS[holder]

    # --- graceful: SIGTERM resigns at once; the client follows the announcement
    tcpdump = w.client.popen(["tcpdump", "-i", "eth0", "-l", "-n", "-e", "arp"], stdout=None)
    time.sleep(1)
    t0 = time.monotonic()
    w.procs[holder].send_signal(signal.SIGTERM)
    new = None

    def moved() -> bool:
        nonlocal new
        h = w.sampler.holders()
        new = h[0] if len(h) == 1 and h[0] != holder else None
        return new is not None

    wait_until(moved, timeout=6, what="graceful failover")  # goal ≤ 2 s, with a 3x margin
    graceful = time.monotonic() - t0
    assert new is not None
    assert w.procs[holder].wait(timeout=10) == 0
    wait_until(lambda: _neigh_mac(w.client) == MACS[new], timeout=5, what="client neighbour entry moved")
    time.sleep(2.5)  # the 3 announcements
    tcpdump.send_signal(signal.SIGTERM)
    tcpdump.wait(timeout=5)
    log = next(iter(sorted(w.client.log_dir.glob("*tcpdump*.log")))).read_text()
    garps = [ln for ln in log.splitlines() if f"Request who-has {VIP} ({MACS[new]}) tell {VIP}" in ln]
    assert len(garps) >= 3, log
    print(f"graceful failover {graceful:.2f}s")
    w.start(holder)  # back as a candidate

    # --- crash: SIGKILL + link down (the /32 stays in the dead node's kernel)
    crashed = new
    t0 = time.monotonic()
    w.procs[crashed].kill()
    w.procs[crashed].wait(timeout=10)
    w.nodes[crashed].ip("link", "set", "eth0", "down")
    wait_until(
        lambda: (h := w.sampler.holders()) != [] and crashed not in h, timeout=TTL + 6, what="crash failover"
    )
    print(f"crash failover {time.monotonic() - t0:.2f}s")
    # restarted with the leftover still on its (down) link: removed before the link comes back
    w.start(crashed)
    leftover = w.nodes[crashed]
    wait_until(
        lambda: VIP not in leftover.sh("ip -4 addr show dev eth0"), timeout=10, what="leftover removed"
    )
    leftover.ip("link", "set", "eth0", "up")

    # --- partition: the holder's etcd traffic dropped, its link up: it steps down first
    holder = w.one_holder(10)
    cut = w.nodes[holder]
    cut.sh(
        "nft add table inet vipcut\n"
        "nft add chain inet vipcut out '{ type filter hook output priority 0; }'\n"
        "nft add chain inet vipcut in '{ type filter hook input priority 0; }'\n"
        f"nft add rule inet vipcut out ip daddr {ETCD_IP} tcp dport 2379 drop\n"
        f"nft add rule inet vipcut in ip saddr {ETCD_IP} tcp sport 2379 drop\n"
    )
    t0 = time.monotonic()
    wait_until(
        lambda: holder not in w.sampler.holders(), timeout=TTL + 3, what="partitioned holder stepped down"
    )
    stepped = time.monotonic() - t0
    assert stepped <= TTL - MARGIN + 2, stepped  # from the last answered keep-alive, sent ≤ TTL/3 before
    wait_until(lambda: (h := w.sampler.holders()) != [] and holder not in h, timeout=TTL + 6, what="takeover")
    print(f"partition: stepped down after {stepped:.2f}s, taken over after {time.monotonic() - t0:.2f}s")
    assert not w.status(holder).get("holder")
    cut.sh("nft delete table inet vipcut")
    time.sleep(TTL)  # healed: it campaigns again, and nobody doubles up meanwhile
    assert len(w.sampler.holders()) == 1


VIP6 = "fd00::50"


def test_vip_ipv6_holder_and_graceful_failover_with_unsolicited_na(lab: Lab) -> None:
    w = World(lab, VIP6)
    for n in (*w.nodes.values(), w.client):
        n.sh("sysctl -qw net.ipv6.conf.eth0.accept_dad=0")  # keeps the test short; DAD is the kernel's
    w.client.ip("addr", "add", "fd00::100/64", "dev", "eth0")
    for i, n in enumerate(w.nodes.values(), start=1):
        n.ip("addr", "add", f"fd00::{i}/64", "dev", "eth0")
    w.sampler.start()
    try:
        for name in w.nodes:
            w.start(name)
        holder = w.one_holder(15)
        w.client.run(["ping", "-6", "-c1", "-W2", VIP6])
        assert _neigh_mac(w.client, VIP6) == MACS[holder]
        tcpdump = w.client.popen(["tcpdump", "-i", "eth0", "-l", "-n", "-e", "icmp6 and ip6[40] == 136"])
        time.sleep(1)
        w.procs[holder].send_signal(signal.SIGTERM)
        new = wait_until(
            lambda: (h := w.sampler.holders()) and h[0] != holder and len(h) == 1 and h[0],
            timeout=6,
            what="failover",
        )
        wait_until(
            lambda: _neigh_mac(w.client, VIP6) == MACS[new], timeout=5, what="client entry moved by the NA"
        )
        time.sleep(2.5)
        tcpdump.send_signal(signal.SIGTERM)
        tcpdump.wait(timeout=5)
        log = next(iter(sorted(w.client.log_dir.glob("*tcpdump*.log")))).read_text()
        nas = [ln for ln in log.splitlines() if f"tgt is {VIP6}" in ln and MACS[new] in ln]
        assert len(nas) >= 3, log
    except BaseException:
        print(w.logs())
        raise
    finally:
        w.sampler.stop.set()
        w.sampler.join(5)
    assert not w.sampler.doubles, w.sampler.doubles[:5]
