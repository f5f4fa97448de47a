"""Status controllers against a real kernel (netd.md §5.7, §2.5, §2.6, §2.12, §7.2).

The controllers run in a small runner process inside a node (this file run as a
script): it prints one JSON line per resource event of the watched types, and
takes commands from a FIFO (``ids TYPE``, ``stats``, ``pause SECONDS``,
``put-route-status``), so a test can change the kernel with ``ip`` and wait for
the events it expects.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness import Lab, Node

HERE = Path(__file__).resolve()
ROOT = HERE.parents[2]

SHORT = {
    "LinkStatus": "LinkStatuses.net.talos.dev",
    "AddressStatus": "AddressStatuses.net.talos.dev",
    "RouteStatus": "RouteStatuses.net.talos.dev",
    "HardwareAddr": "HardwareAddresses.net.talos.dev",
    "NetworkStatus": "NetworkStatuses.net.talos.dev",
}


# ---- the runner (inside the node) --------------------------------------------------------


async def _runner(fifo: str, watch: list[str], rcvbuf: int | None) -> None:
    sys.path.insert(0, str(ROOT))
    from cosi import Runtime, State
    from netd.controllers.status import NetlinkStatusController, status_controllers
    from netd.resources import register_all

    def out(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    state = State()
    register_all(state)
    runtime = Runtime(state)
    controllers = status_controllers(rcvbuf)
    for c in controllers:
        runtime.register(c)
    watchers = [(short, state.watch("network", SHORT[short])) for short in watch]

    async def pump(short: str, w: Any) -> None:
        while True:
            for e in await w.next_batch():
                r = e.resource
                out(
                    {
                        "ev": str(e.type),
                        "type": short,
                        "id": r.md.id if r is not None else None,
                        "spec": r.spec.model_dump(by_alias=True, mode="json") if r is not None else None,
                    }
                )

    loop = asyncio.get_running_loop()
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    commands: asyncio.Queue[str] = asyncio.Queue()
    buf = b""

    def readable() -> None:
        nonlocal buf
        try:
            buf += os.read(fd, 65536)
        except BlockingIOError:
            return
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            commands.put_nowait(line.decode().strip())

    loop.add_reader(fd, readable)
    start = time.perf_counter()
    runtime.start()
    tasks = [asyncio.create_task(pump(s, w)) for s, w in watchers]
    await runtime.settle(timeout=60)
    routes = len(state.list("network", SHORT["RouteStatus"]))
    out({"ready": time.perf_counter() - start, "routes": routes})
    while True:
        cmd = await commands.get()
        words = cmd.split()
        if not words:
            continue
        if words[0] == "ids":
            await runtime.settle(timeout=60)
            out({"ids": words[1], "list": [r.md.id for r in state.list("network", SHORT[words[1]])]})
        elif words[0] == "specs":
            await runtime.settle(timeout=60)
            items = state.list("network", SHORT[words[1]])
            out(
                {
                    "specs": words[1],
                    "items": {r.md.id: r.spec.model_dump(by_alias=True, mode="json") for r in items},
                }
            )
        elif words[0] == "stats":
            await runtime.settle(timeout=60)
            out(
                {
                    "stats": {
                        c.name: {"resyncs": c.resyncs, "overflows": c.overflows, "models": len(c.model)}
                        for c in controllers
                        if isinstance(c, NetlinkStatusController)
                    },
                    "restarts": runtime.restarts,
                }
            )
        elif words[0] == "pause":
            out({"paused": float(words[1])})
            time.sleep(float(words[1]))  # blocks the loop: netlink events pile up in the kernel
            out({"resumed": True})
    for t in tasks:
        t.cancel()


class Runner:
    """The runner process seen from the test: JSON lines out, commands in."""

    def __init__(
        self, node: Node, *, watch: tuple[str, ...] = tuple(SHORT), rcvbuf: int | None = None
    ) -> None:
        self.fifo = node.dir / f"status-runner.{time.monotonic_ns()}.fifo"
        os.mkfifo(self.fifo)
        argv = [sys.executable, str(HERE), "runner", str(self.fifo), ",".join(watch)]
        if rcvbuf is not None:
            argv.append(str(rcvbuf))
        self.proc = node.popen(argv, stdout=subprocess.PIPE, stderr=None, log=None)
        assert self.proc.stdout is not None
        self._fd = self.proc.stdout.fileno()
        os.set_blocking(self._fd, False)
        self._buf = b""
        self.lines: list[dict[str, Any]] = []
        self._pending: list[dict[str, Any]] = []
        self.ready = self.wait_for(lambda m: "ready" in m, timeout=60)

    def _read(self, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self._fd], [], [], left)
            if r:
                chunk = os.read(self._fd, 1 << 20)
                if not chunk:
                    raise AssertionError(f"runner exited: {self.proc.wait()}")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        msg: dict[str, Any] = json.loads(line)
        if "ev" not in msg:
            return msg
        self.lines.append(msg)
        return msg

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        """The first not yet consumed line matching ``pred`` (lines skipped on the
        way stay available to later waits, until :meth:`forget`)."""
        for i, msg in enumerate(self._pending):
            if pred(msg):
                del self._pending[i]
                return msg
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read(max(0.0, deadline - time.monotonic()))
            if msg is None:
                raise AssertionError(
                    f"timed out waiting for a runner event; unconsumed: {self._pending[-20:]}"
                )
            if pred(msg):
                return msg
            self._pending.append(msg)

    def forget(self) -> None:
        """Drop unconsumed lines, so that later waits see only what happens next."""
        while self._read(0.05) is not None:
            pass
        self._pending.clear()

    def event(self, ev: str, type_: str, id_: str, timeout: float = 10.0) -> dict[str, Any]:
        return self.wait_for(
            lambda m: m.get("ev") == ev and m.get("type") == type_ and m.get("id") == id_, timeout
        )

    def event_where(
        self, ev: str, type_: str, pred: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        return self.wait_for(lambda m: m.get("ev") == ev and m.get("type") == type_ and pred(m), timeout)

    def command(self, text: str, reply_key: str, timeout: float = 60.0) -> dict[str, Any]:
        with open(self.fifo, "w") as f:
            f.write(text + "\n")
        return self.wait_for(lambda m: reply_key in m, timeout)

    def specs(self, type_: str) -> dict[str, dict[str, Any]]:
        items: dict[str, dict[str, Any]] = self.command(f"specs {type_}", "specs")["items"]
        return items


# ---- helpers --------------------------------------------------------------------------


def _kernel_routes(node: Node) -> set[tuple[str, str, str, str, int]]:
    """(table, dst, gateway, dev, metric) of every kernel route, from `ip -j`."""
    out: set[tuple[str, str, str, str, int]] = set()
    for fam in ("-4", "-6"):
        for r in node.ip_json(fam, "route", "show", "table", "all"):
            dst = r["dst"]
            if dst == "default":
                dst = ""
            elif "/" not in dst:
                dst += "/128" if ":" in dst else "/32"
            out.add(
                (str(r.get("table", "main")), dst, r.get("gateway", ""), r.get("dev", ""), r.get("metric", 0))
            )
    return out


def _status_routes(specs: dict[str, dict[str, Any]]) -> set[tuple[str, str, str, str, int]]:
    return {
        (s["table"], s["dst"], s["gateway"], s.get("outLinkName", ""), s["priority"]) for s in specs.values()
    }


VETH_UP = """ip link add v0 type veth peer name v1
ip link set v0 up
ip link set v1 up
ip addr add 10.0.0.1/16 dev v0
"""

# ---- tests ----------------------------------------------------------------------------


def test_links_addresses_routes_appear_and_vanish(lab: Lab) -> None:
    node = lab.node("n")
    r = Runner(node)
    r.event("created", "LinkStatus", "lo")

    # A veth pair: kind, MAC, operational state follows the peer.
    node.sh("ip link add v0 address 02:00:00:00:00:10 type veth peer name v1 address 02:00:00:00:00:11")
    ls = r.event("created", "LinkStatus", "v0")["spec"]
    assert ls["kind"] == "veth"
    assert ls["hardwareAddr"] == "02:00:00:00:00:10"
    assert ls["type"] == "ether"
    assert ls["operationalState"] == "down"
    r.forget()
    node.sh("ip link set v0 up")  # peer still down: lowerLayerDown
    r.event_where(
        "updated",
        "LinkStatus",
        lambda m: m["id"] == "v0" and m["spec"]["operationalState"] == "lowerLayerDown",
    )
    node.sh("ip link set v1 up")
    up = r.event_where(
        "updated", "LinkStatus", lambda m: m["id"] == "v0" and m["spec"]["operationalState"] == "up"
    )
    assert up["spec"]["linkState"] is True
    assert up["spec"]["driver"] == "veth"
    assert up["spec"]["duplex"] == "Full"
    assert up["spec"]["speedMbit"] == 10000
    r.forget()
    node.sh("ip link set v1 down")
    down = r.event_where(
        "updated",
        "LinkStatus",
        lambda m: m["id"] == "v0" and m["spec"]["operationalState"] == "lowerLayerDown",
    )
    assert down["spec"]["linkState"] is False
    node.sh("ip link set v1 up")
    r.event_where(
        "updated", "LinkStatus", lambda m: m["id"] == "v0" and m["spec"]["operationalState"] == "up"
    )

    # Addresses of both families: flags and scope.
    node.sh("ip addr add 192.0.2.5/24 dev v0\nip addr add 2001:db8::5/64 dev v0 nodad")
    a4 = r.event("created", "AddressStatus", "v0/192.0.2.5/24")["spec"]
    assert a4["family"] == "inet4" and a4["scope"] == "global" and a4["linkName"] == "v0"
    assert "permanent" in a4["flags"]
    a6 = r.event("created", "AddressStatus", "v0/2001:db8::5/64")["spec"]
    assert a6["family"] == "inet6" and "nodad" in a6["flags"] and "permanent" in a6["flags"]
    r.event_where("created", "AddressStatus", lambda m: m["id"].startswith("v0/fe80::"))
    lo = r.specs("AddressStatus")["lo/127.0.0.1/8"]
    assert lo["scope"] == "host"

    # Routes: table, metric, protocol, gateway.
    node.sh("ip route add 198.51.100.0/24 via 192.0.2.1 metric 77 proto static table 100")
    rt = r.event("created", "RouteStatus", "RoutingTable(100)/inet4/192.0.2.1/198.51.100.0/24/77")["spec"]
    assert rt["table"] == "RoutingTable(100)" and rt["priority"] == 77 and rt["protocol"] == "static"
    assert rt["gateway"] == "192.0.2.1" and rt["outLinkName"] == "v0"
    node.sh("ip -6 route add 2001:db8:1::/48 via 2001:db8::1 metric 5 proto boot")
    rt6 = r.event("created", "RouteStatus", "v0/inet6/2001:db8::1/2001:db8:1::/48/5")["spec"]
    assert rt6["protocol"] == "boot" and rt6["table"] == "main"

    # NetworkStatus flips connectivityReady with a default route.
    assert r.specs("NetworkStatus")["status"]["connectivityReady"] is False
    node.sh("ip route add default via 192.0.2.1")
    r.event("created", "RouteStatus", "inet4/192.0.2.1//0")
    r.event_where("updated", "NetworkStatus", lambda m: m["spec"]["connectivityReady"] is True)
    node.sh("ip route del default via 192.0.2.1")
    r.event("destroyed", "RouteStatus", "inet4/192.0.2.1//0")
    r.event_where("updated", "NetworkStatus", lambda m: m["spec"]["connectivityReady"] is False)

    # Removal.
    node.sh("ip route del 198.51.100.0/24 table 100")
    r.event("destroyed", "RouteStatus", "RoutingTable(100)/inet4/192.0.2.1/198.51.100.0/24/77")
    node.sh("ip addr del 192.0.2.5/24 dev v0")
    r.event("destroyed", "AddressStatus", "v0/192.0.2.5/24")
    # Link down: the kernel flushes IPv4 routes of the link without telling; we must notice.
    node.sh("ip addr add 192.0.2.6/24 dev v0\nip route add 203.0.113.0/24 via 192.0.2.1")
    r.event("created", "RouteStatus", "inet4/192.0.2.1/203.0.113.0/24/0")
    node.sh("ip link set v0 down")
    r.event("destroyed", "RouteStatus", "inet4/192.0.2.1/203.0.113.0/24/0")
    node.sh("ip link del v0")
    r.event("destroyed", "LinkStatus", "v0")
    r.event("destroyed", "LinkStatus", "v1")
    r.event("destroyed", "AddressStatus", "v0/2001:db8::5/64")

    # Everything we report matches the kernel at the end.
    assert _status_routes(r.specs("RouteStatus")) == _kernel_routes(node)
    stats = r.command("stats", "stats")
    assert stats["restarts"] == {}


def test_bridge_master_and_hardware_addr(lab: Lab) -> None:
    node = lab.node("n")
    r = Runner(node, watch=("LinkStatus", "HardwareAddr"))
    node.sh(
        "ip link add br0 type bridge\n"
        "ip link add p0 address 02:00:00:00:01:00 type veth peer name p1\n"
        "ip link set p0 master br0"
    )
    br = r.event("created", "LinkStatus", "br0")["spec"]
    assert br["kind"] == "bridge"
    assert "bridgeMaster" not in br or br["bridgeMaster"]["stp"]["enabled"] is False
    p0 = r.wait_for(  # created with its master if the start-up dump came after the enslave, else updated
        lambda m: m.get("ev") in ("created", "updated")
        and m.get("type") == "LinkStatus"
        and m["id"] == "p0"
        and bool(m["spec"].get("masterIndex"))
    )
    assert p0["spec"]["masterIndex"] == br["index"]
    assert p0["spec"]["slaveKind"] == "bridge"
    # Releasing the port (a bridge-family RTM_DELLINK, too) keeps the link and clears masterIndex.
    node.sh("ip link set p0 nomaster")
    r.event_where("updated", "LinkStatus", lambda m: m["id"] == "p0" and not m["spec"].get("masterIndex"))
    assert "p0" in r.command("ids LinkStatus", "ids")["list"]
    # A rename (the link must be down): the old ID goes, the new one comes, same index.
    node.sh("ip link set p1 name q1")
    r.event("destroyed", "LinkStatus", "p1")
    assert r.event("created", "LinkStatus", "q1")["spec"]["kind"] == "veth"

    # HardwareAddr: only physical links count (type ether, no kind): veths and bridges do not.
    assert "first" not in r.command("ids HardwareAddr", "ids")["list"]


def test_overflow_resyncs_to_the_kernel_state(lab: Lab, tmp_path: Path) -> None:
    node = lab.node("n")
    node.sh(VETH_UP)
    # A tiny receive buffer (the kernel's minimum) and a paused runner: 5,000 route adds overflow it.
    r = Runner(node, watch=("NetworkStatus",), rcvbuf=1)
    before = r.command("stats", "stats")["stats"]["network.RouteStatusController"]["resyncs"]
    batch = tmp_path / "routes.batch"
    lines = [f"route add 172.16.{i // 256}.{i % 256}/32 via 10.0.0.2 metric {i % 7}" for i in range(5000)]
    lines += [f"route add 2001:db8:{i:x}::/64 dev v0 metric 9" for i in range(200)]
    batch.write_text("\n".join(lines) + "\n")
    with open(r.fifo, "w") as f:
        f.write("pause 3\n")
    r.wait_for(lambda m: "paused" in m)
    node.run(["ip", "-batch", str(batch)])
    node.sh("ip route del 172.16.0.0/32 via 10.0.0.2 metric 0")
    r.wait_for(lambda m: "resumed" in m, timeout=30)
    stats = r.command("stats", "stats")["stats"]["network.RouteStatusController"]
    assert stats["overflows"] >= 1, "expected ENOBUFS"
    assert stats["resyncs"] > before
    got = _status_routes(r.specs("RouteStatus"))
    want = _kernel_routes(node)
    assert got == want
    assert len(got) > 5000
    # And deltas keep working after the resync.
    node.sh("ip route add 198.51.100.0/24 via 10.0.0.2 proto static")
    specs = r.specs("RouteStatus")
    for _ in range(50):
        if "inet4/10.0.0.2/198.51.100.0/24/0" in specs:
            break
        time.sleep(0.05)
        specs = r.specs("RouteStatus")
    assert specs["inet4/10.0.0.2/198.51.100.0/24/0"]["protocol"] == "static"


def test_cold_start_with_10k_routes(lab: Lab, tmp_path: Path) -> None:
    node = lab.node("n")
    # no IPv6: its link-local and local routes appear when DAD ends, which would race the count
    node.sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1")
    node.sh(VETH_UP)
    batch = tmp_path / "routes.batch"
    batch.write_text(
        "".join(
            f"route add 172.{16 + i // 65536}.{(i // 256) % 256}.{i % 256}/32 via 10.0.0.2\n"
            for i in range(10000)
        )
    )
    node.run(["ip", "-batch", str(batch)])
    r = Runner(node, watch=("NetworkStatus",))
    kernel = len(_kernel_routes(node))
    assert r.ready["routes"] == kernel >= 10000
    print(f"cold start with {kernel} routes: {r.ready['ready']:.3f} s")
    # ~0.5 s on an idle 2-CPU machine; the bound leaves room for a machine busy with other tests.
    assert r.ready["ready"] < 5.0


if __name__ == "__main__" and len(sys.argv) >= 4 and sys.argv[1] == "runner":
    asyncio.run(
        _runner(
            sys.argv[2],
            [w for w in sys.argv[3].split(",") if w],
            int(sys.argv[4]) if len(sys.argv) > 4 else None,
        )
    )
