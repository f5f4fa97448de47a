"""Applying routes and addresses to the kernel: our batched codec against ``ip -batch``.

Creates its own network namespace (``netd-bench-<pid>``, removed also on
failure and Ctrl-C) with a veth pair, then for each case

* **ours**: re-executes itself inside the namespace (``--inner``), builds the
  RouteSpecs/AddressSpecs (not timed) and times spec → message encoding, the
  batched sends and the last ack (:mod:`netd.kernel.rtnl_batch`);
  (``rule controller``: the time from the RoutingRuleSpecController's start until
  its first pass has put 1,000 merged specs in the kernel, finalizers and Applied
  records included: the product path);
* **ip -batch**: ``ip -n <ns> -batch FILE`` adding the same objects
  (process start included, as a user would run it);

flushing between runs, median of ``--reps`` runs. Then the observations, with
10,000 routes in the namespace:

* cold start: the time until every RouteStatus exists in a ``cosi.State``,
  decoded by our codec, and by the RouteStatusController of
  :mod:`netd.controllers.status` started in a ``cosi.Runtime`` (wall and CPU
  time: on a loaded machine the wall time says little);
* machined, in its own mount/UTS namespaces inside the bench's namespace, in
  three cases (``--cases``): ``foreign`` (10,000 routes added by hand, no route
  in the config), ``adopt`` (the config has 10,000 routes, already in the
  kernel) and ``create`` (the config has 10,000 routes, none in the kernel: the
  time from the start until all are in the kernel). Then, once machined is idle
  (3 s without CPU use, at most ``--settle`` s): rtnetlink writes/min
  (RTM_NEW*/DEL*/SET* messages it sends, counted by strace over ``--observe``
  s), RSS, and how long SIGTERM takes to stop it (for ``create`` also while it
  applies the routes). ``--observe 0`` skips machined.

Prints a table, then ``ratio_vs_ip_batch=<x>`` (10,000 routes) as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ROUTE_TABLE = 100
GATEWAY = "192.0.2.1"
ROUTE_LINK = "v0"  # holds 192.0.2.10/24, so the gateway is reachable
ADDR_LINK = "v1"


def route_dst(i: int) -> str:
    return (
        f"10.{(i >> 8) & 255}.{i & 255}.0/24" if i < 65536 else f"11.{(i >> 16) & 255}.{(i >> 8) & 255}.0/24"
    )


def addr_ip(i: int) -> str:
    return f"172.16.{(i >> 8) & 255}.{i & 255}/32"


# ---- inside the namespace -------------------------------------------------------------------


def _route_specs(n: int) -> list[Any]:
    from netd.netip import parse_addr, parse_prefix
    from netd.resources.enums import ConfigLayer, Family, RouteProtocol, RouteType, RoutingTable, Scope
    from netd.resources.route import RouteSpec

    gw = parse_addr(GATEWAY)
    return [
        RouteSpec(
            family=Family.INET4,
            dst=parse_prefix(route_dst(i)),
            gateway=gw,
            out_link_name=ROUTE_LINK,
            table=RoutingTable(ROUTE_TABLE),
            priority=1024,
            scope=Scope.GLOBAL,
            type=RouteType.UNICAST,
            protocol=RouteProtocol.STATIC,
            layer=ConfigLayer.CONFIGURATION,
        )
        for i in range(n)
    ]


def inner_routes(n: int) -> dict[str, Any]:
    from netd.controllers.route_spec import desired_route
    from netd.kernel.rtnl import add_route
    from netd.kernel.rtnl_batch import RtnlBatch

    specs = _route_specs(n)
    with RtnlBatch() as b:
        t0 = time.perf_counter()
        oif = socket.if_nametoindex(ROUTE_LINK)
        res = b.run([add_route(desired_route(s, oif)) for s in specs])
        t1 = time.perf_counter()
    return {"seconds": t1 - t0, "errors": len(res.failed())}


def inner_addresses(n: int) -> dict[str, Any]:
    from netd.kernel.rtnl import add_address
    from netd.kernel.rtnl_batch import RtnlBatch
    from netd.netip import parse_prefix
    from netd.resources.address import AddressSpec
    from netd.resources.enums import ConfigLayer

    specs = [
        AddressSpec.configured(parse_prefix(addr_ip(i)), ADDR_LINK, ConfigLayer.CONFIGURATION)
        for i in range(n)
    ]
    with RtnlBatch() as b:
        t0 = time.perf_counter()
        index = socket.if_nametoindex(ADDR_LINK)
        res = b.run([add_address(index, s.address, int(s.scope), int(s.flags)) for s in specs if s.address])
        t1 = time.perf_counter()
    return {"seconds": t1 - t0, "errors": len(res.failed())}


def rule_src(i: int) -> str:
    return f"10.{100 + i // 256}.{i % 256}.0/24"


async def _rules_through_controller(n: int) -> float:
    """Time from the rule spec controller's start until its first pass put ``n`` rules
    in the kernel (specs already merged, as in machined's second start phase)."""
    from cosi import Runtime, State
    from netd.controllers.rule_spec import RoutingRuleSpecController
    from netd.kernel.applied import Applied
    from netd.kernel.netlink import RTM_GETRULE
    from netd.kernel.rtnl_batch import RtnlBatch
    from netd.netip import parse_prefix
    from netd.resources import register_all
    from netd.resources.enums import ConfigLayer, Family, RoutingTable
    from netd.resources.namespaces import NETWORK
    from netd.resources.routing_rule import ROUTING_RULE_SPEC_TYPE, RoutingRuleSpec

    state = State()
    register_all(state)
    for i in range(n):
        spec = RoutingRuleSpec(
            family=Family.INET4,
            src=parse_prefix(rule_src(i)),
            table=RoutingTable(ROUTE_TABLE),
            priority=1000 + i,
            layer=ConfigLayer.CONFIGURATION,
        )
        state.put(NETWORK, ROUTING_RULE_SPEC_TYPE, spec.id(), spec, "bench")
    with tempfile.TemporaryDirectory() as tmp:
        rt = Runtime(state)
        rt.register(RoutingRuleSpecController(Applied.in_dir(tmp)))
        t0 = time.perf_counter()
        rt.start()
        await rt.settle(timeout=60)
        t1 = time.perf_counter()
        await rt.stop()
    with RtnlBatch() as b:
        got = sum(1 for r in b.dump(RTM_GETRULE) if 1000 <= (r.priority or 0) < 1000 + n)
    if got != n:
        raise RuntimeError(f"rule controller: {got} of {n} rules in the kernel")
    return t1 - t0


def inner_rules(n: int) -> dict[str, Any]:
    """As for routes: spec → message (the rule controller's ``desired_rule``) and the batch."""
    from netd.controllers.rule_spec import desired_rule
    from netd.kernel.rtnl import add_rule
    from netd.kernel.rtnl_batch import RtnlBatch
    from netd.netip import parse_prefix
    from netd.resources.enums import RoutingTable
    from netd.resources.routing_rule import RoutingRuleSpec

    specs = [
        RoutingRuleSpec(src=parse_prefix(rule_src(i)), table=RoutingTable(ROUTE_TABLE), priority=1000 + i)
        for i in range(n)
    ]
    with RtnlBatch() as b:
        t0 = time.perf_counter()
        res = b.run([add_rule(desired_rule(s)) for s in specs])
        t1 = time.perf_counter()
    return {"seconds": t1 - t0, "errors": len(res.failed())}


def inner_rule_controller(n: int) -> dict[str, Any]:
    return {"seconds": asyncio.run(_rules_through_controller(n)), "errors": 0}


async def _cold_ours() -> tuple[float, float, int]:
    from cosi import State
    from netd.kernel import rtnl_codec as c
    from netd.kernel.rtnl_batch import RtnlBatch
    from netd.resources import register_all
    from netd.resources.namespaces import NETWORK
    from netd.resources.route import ROUTE_STATUS_TYPE

    state = State()
    register_all(state)
    t0, c0 = time.perf_counter(), time.process_time()
    async with RtnlBatch() as b:
        names = {lk.index: lk.ifname or "" for lk in await b.dump_async(c.RTM_GETLINK) if lk.family != 7}
        routes = await b.dump_async(c.RTM_GETROUTE)
    for r in routes:
        if r.family in (2, 10):
            status = c.route_status(r, names)
            state.put(NETWORK, ROUTE_STATUS_TYPE, status.id(), status, owner="bench")
    t1, c1 = time.perf_counter(), time.process_time()
    return t1 - t0, c1 - c0, len(state.list(NETWORK, ROUTE_STATUS_TYPE))


async def _cold_controller(expected: int) -> tuple[float, float, int]:
    from cosi import Runtime, State
    from netd.controllers.status import RouteStatusController
    from netd.resources import register_all
    from netd.resources.namespaces import NETWORK
    from netd.resources.route import ROUTE_STATUS_TYPE

    state = State()
    register_all(state)
    rt = Runtime(state)
    rt.register(RouteStatusController())
    t0, c0 = time.perf_counter(), time.process_time()
    rt.start()
    try:
        deadline = t0 + 60
        while len(state.list(NETWORK, ROUTE_STATUS_TYPE)) < expected and time.perf_counter() < deadline:
            await asyncio.sleep(0.001)
        t1, c1 = time.perf_counter(), time.process_time()
    finally:
        await rt.stop()
    return t1 - t0, c1 - c0, len(state.list(NETWORK, ROUTE_STATUS_TYPE))


async def _cold_pyroute2() -> tuple[float, float, int]:
    from pyroute2 import AsyncIPRoute

    t0, c0 = time.perf_counter(), time.process_time()
    async with AsyncIPRoute() as ipr:
        n = 0
        async for _msg in await ipr.route("dump", family=socket.AF_UNSPEC):
            n += 1
    return time.perf_counter() - t0, time.process_time() - c0, n


def inner_cold(n: int) -> dict[str, Any]:
    inner_routes(n)  # the namespace now holds n routes (not timed here)
    out: dict[str, Any] = {}
    ours, ours_cpu, count = asyncio.run(_cold_ours())
    out.update(ours=ours, ours_cpu=ours_cpu, count=count)
    out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        theirs, theirs_cpu, tcount = asyncio.run(_cold_controller(count))
        out.update(controller=theirs, controller_cpu=theirs_cpu, controller_count=tcount)
    except ImportError as e:
        out["controller_error"] = str(e)
    pr, pr_cpu, pcount = asyncio.run(_cold_pyroute2())
    out.update(pyroute2_dump=pr, pyroute2_cpu=pr_cpu, pyroute2_count=pcount)
    return out


async def _in_sync_passes(n: int, reps: int = 5) -> tuple[float, float, int]:
    from cosi import Backoff, Context, State
    from netd.controllers.route_spec import RouteSpecController
    from netd.kernel.applied import Applied
    from netd.resources import register_all
    from netd.resources.namespaces import NETWORK
    from netd.resources.route import ROUTE_SPEC_TYPE

    state = State()
    register_all(state)
    for spec in _route_specs(n):
        state.put(NETWORK, ROUTE_SPEC_TYPE, spec.id(), spec, "bench")
    c = RouteSpecController(Applied())
    ctx = Context(state, c, Backoff())
    writes = 0
    try:
        await c.reconcile(ctx)  # adopts the routes
        assert c.rtnl is not None
        write = c.rtnl.write

        async def counting(requests: Any) -> Any:
            nonlocal writes
            writes += len(requests)
            return await write(requests)

        c.rtnl.write = counting  # type: ignore[method-assign]
        walls, cpus = [], []
        for _ in range(reps):
            t0, c0 = time.perf_counter(), time.process_time()
            await c.reconcile(ctx)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    finally:
        if c.rtnl is not None:
            c.rtnl.close()
    return statistics.median(walls), statistics.median(cpus), writes


def inner_in_sync(n: int) -> dict[str, Any]:
    """A RouteSpecController pass over ``n`` specs whose routes are all in the kernel."""
    inner_routes(n)
    wall, cpu, writes = asyncio.run(_in_sync_passes(n))
    return {"wall": wall, "cpu": cpu, "writes": writes}


async def _routes_through_controller(n: int, state_dir: str | None) -> tuple[float, int]:
    """Time from the route spec controller's start until its first pass put ``n`` routes in
    the kernel, with its Applied records in ``state_dir`` (None: no file at all), and the
    number of writes of applied.json."""
    from cosi import Runtime, State
    from netd.controllers.route_spec import RouteSpecController
    from netd.kernel.applied import Applied
    from netd.resources import register_all
    from netd.resources.namespaces import NETWORK
    from netd.resources.route import ROUTE_SPEC_TYPE

    state = State()
    register_all(state)
    for spec in _route_specs(n):
        state.put(NETWORK, ROUTE_SPEC_TYPE, spec.id(), spec, "bench")
    applied = Applied.in_dir(state_dir)
    rt = Runtime(state)
    rt.register(RouteSpecController(applied))
    t0 = time.perf_counter()
    rt.start()
    await rt.settle(timeout=120)
    t1 = time.perf_counter()
    await rt.stop()
    return t1 - t0, applied.saves


def inner_intent(n: int) -> dict[str, Any]:
    """The cost of durable records (intent before action, issue 16) on the apply window of
    ``n`` routes: the controller with applied.json (pending before the batch, confirmed
    after: two fsynced writes) against the same controller without any file."""
    out: dict[str, Any] = {"durable": [], "none": []}
    with tempfile.TemporaryDirectory(dir=os.environ.get("NETD_BENCH_STATE_DIR")) as tmp:
        for rep in range(3):
            for mode in ("none", "durable"):
                d = os.path.join(tmp, f"{mode}{rep}") if mode == "durable" else None
                secs, saves = asyncio.run(_routes_through_controller(n, d))
                out[mode].append(secs)
                out[f"{mode}_saves"] = saves
                subprocess.run(["ip", "route", "flush", "table", str(ROUTE_TABLE)], check=True)
    return out


async def _flood(n: int) -> dict[str, Any]:
    """``ip -batch`` adds ``n`` routes behind the status controllers' back: the time from
    its end until the RouteStatus count equals the kernel's, and the socket overflows."""
    from cosi import Runtime, State
    from netd.controllers.status import NetlinkStatusController, status_controllers
    from netd.kernel.netlink import RTM_GETROUTE
    from netd.kernel.rtnl_events import dump
    from netd.resources import register_all
    from netd.resources.route import ROUTE_STATUS_TYPE

    state = State()
    register_all(state)
    rt = Runtime(state)
    controllers = status_controllers(None)
    for c in controllers:
        rt.register(c)
    rt.start()
    await rt.settle(timeout=60)
    table = ROUTE_TABLE + 1
    with tempfile.NamedTemporaryFile("w", suffix=".batch") as f:
        f.writelines(
            f"route add {100 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.0/24 via {GATEWAY} table {table}\n"
            for i in range(n)
        )
        f.flush()
        t0 = time.perf_counter()
        proc = await asyncio.create_subprocess_exec("ip", "-batch", f.name)
        await proc.wait()
    t1 = time.perf_counter()
    kernel = len(await dump(RTM_GETROUTE))
    checked = time.perf_counter()
    while True:
        have = len(state.list("network", ROUTE_STATUS_TYPE))
        if have == kernel or time.perf_counter() - t1 > 300:
            break
        await asyncio.sleep(0.01)
        if time.perf_counter() - checked > 0.25:  # (IPv6 link-local routes may still come)
            kernel, checked = len(await dump(RTM_GETROUTE)), time.perf_counter()
    t2 = time.perf_counter()
    rc = next(c for c in controllers if c.name == "network.RouteStatusController")
    assert isinstance(rc, NetlinkStatusController)
    await rt.stop()
    return {
        "flood": t1 - t0,
        "converge": t2 - t1,
        "kernel": kernel,
        "status": have,
        "overflows": rc.overflows,
        "resyncs": rc.resyncs,
    }


def inner_flood(n: int) -> dict[str, Any]:
    out = asyncio.run(_flood(n))
    subprocess.run(["ip", "route", "flush", "table", str(ROUTE_TABLE + 1)], check=True)
    return out


INNER = {
    "intent": inner_intent,
    "flood": inner_flood,
    "routes": inner_routes,
    "addresses": inner_addresses,
    "rules": inner_rules,
    "rule_controller": inner_rule_controller,
    "cold": inner_cold,
    "in_sync": inner_in_sync,
}


# ---- outside: namespace, ip -batch, the table --------------------------------------------------


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


class Namespace:
    """The bench's namespace: created with a veth pair, removed on exit (also on signals)."""

    def __init__(self) -> None:
        self.name = f"netd-bench-{os.getpid()}"

    def __enter__(self) -> Namespace:
        sh("ip", "netns", "add", self.name)
        try:
            for cmd in (
                "link set lo up",
                f"link add {ROUTE_LINK} type veth peer name {ADDR_LINK}",
                f"link set {ROUTE_LINK} up",
                f"link set {ADDR_LINK} up",
                f"addr add 192.0.2.10/24 dev {ROUTE_LINK}",
            ):
                sh("ip", "-n", self.name, *cmd.split())
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        sh("ip", "netns", "del", self.name, check=False)

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "-n", self.name, *args, check=check)

    def inner(self, case: str, n: int) -> dict[str, Any]:
        me = str(Path(__file__).resolve())
        cmd = ["ip", "netns", "exec", self.name, sys.executable, me, "--inner", case, "-n", str(n)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
        return dict(json.loads(out.strip().splitlines()[-1]))

    def ip_batch(self, lines: list[str]) -> float:
        with tempfile.NamedTemporaryFile("w", prefix="netd-bench-", suffix=".batch") as f:
            f.write("\n".join(lines) + "\n")
            f.flush()
            t0 = time.perf_counter()
            r = sh("ip", "-n", self.name, "-batch", f.name, check=False)
            t1 = time.perf_counter()
        if r.returncode != 0:
            raise RuntimeError(f"ip -batch failed: {r.stderr.strip()[:500]}")
        return t1 - t0

    def count_routes(self) -> int:
        out = self.ip("-j", "route", "show", "table", str(ROUTE_TABLE)).stdout.strip()
        return len(json.loads(out)) if out else 0

    def count_addresses(self) -> int:
        links = json.loads(self.ip("-j", "addr", "show", "dev", ADDR_LINK).stdout)
        return sum(1 for lk in links for a in lk["addr_info"] if a["family"] == "inet")

    def count_rules(self) -> int:
        rules = json.loads(self.ip("-j", "-4", "rule", "show").stdout)
        return sum(1 for r in rules if 1000 <= r["priority"] < 32766)

    def flush(self) -> None:
        self.ip("route", "flush", "table", str(ROUTE_TABLE), check=False)  # fails when empty
        self.ip("-4", "addr", "flush", "dev", ADDR_LINK)
        # Only the bench's rules: `ip rule flush` would also take the kernel's main/default rules.
        prios = [r["priority"] for r in json.loads(self.ip("-j", "-4", "rule", "show").stdout)]
        ours = [f"rule del priority {p}" for p in prios if 1000 <= p < 32766]
        if ours:
            self.ip_batch(ours)


def run_case(ns: Namespace, what: str, n: int, reps: int) -> tuple[float, float]:
    if what == "routes":
        how = f"via {GATEWAY} dev {ROUTE_LINK} proto static metric 1024 table {ROUTE_TABLE}"
        lines = [f"route add {route_dst(i)} {how}" for i in range(n)]
        count = ns.count_routes
    elif what in ("rules", "rule_controller"):
        lines = [f"rule add priority {1000 + i} from {rule_src(i)} lookup {ROUTE_TABLE}" for i in range(n)]
        count = ns.count_rules
    else:
        lines = [f"addr add {addr_ip(i)} dev {ADDR_LINK}" for i in range(n)]
        count = ns.count_addresses
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(reps):
        ns.flush()
        got = ns.inner(what, n)
        if got["errors"] or count() != n:
            raise RuntimeError(f"ours: {what} N={n}: {got['errors']} errors, {count()} in the kernel")
        ours.append(got["seconds"])
        ns.flush()
        theirs.append(ns.ip_batch(lines))
        if count() != n:
            raise RuntimeError(f"ip -batch: {what} N={n}: {count()} in the kernel")
    ns.flush()
    return statistics.median(ours), statistics.median(theirs)


# ---- steady state: machined with N routes ------------------------------------------------------

MACHINED = Path(sys.executable).with_name("machined")
_NLMSG_TYPE = re.compile(r"nlmsg_type=(0x[0-9a-fA-F]+|[0-9]+|RTM_[A-Z]+)")


def _rtm_kind(token: str) -> str:
    """``write`` (RTM_NEW*/DEL*/SET*), ``get`` (RTM_GET*) or ``other`` for one strace'd message type
    (strace prints names or, for a socket in another netns, numbers)."""
    if token.startswith("RTM_"):
        return "get" if token.startswith("RTM_GET") else "write"
    t = int(token, 0)
    if not 16 <= t < 0x100:  # not rtnetlink (genetlink, nfnetlink, control messages)
        return "other"
    return "get" if t % 4 == 2 else "write"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM machined's session, SIGKILL it if still there after 10 s (a busy loop
    does not get to its signal handler)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _netlink_calls(pid: int, seconds: float) -> tuple[int, int] | None:
    """(netlink writes, netlink dump/get requests) machined sends in ``seconds``, by strace."""
    if shutil.which("strace") is None:
        return None
    with tempfile.NamedTemporaryFile("r", prefix="netd-bench-strace-") as out:
        cmd = ["strace", "-f", "-qq", "-yy", "-e", "trace=sendto,sendmsg", "-o", out.name, "-p", str(pid)]
        tracer = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(seconds)
        finally:
            tracer.terminate()
            tracer.wait(timeout=10)
        text = Path(out.name).read_text()
    kinds = [
        _rtm_kind(t) for line in text.splitlines() if "NETLINK" in line for t in _NLMSG_TYPE.findall(line)
    ]
    return kinds.count("write"), kinds.count("get")


#: The machined cases: (name, routes added by hand before the start (with which protocol),
#: routes in the config).
CASES = {
    "foreign": "10,000 foreign routes (proto boot), no route specs",
    "adopt": "10,000 routes in the config, already in the kernel (adopted)",
    "create": "10,000 routes in the config, none in the kernel yet",
}


def _config(tmp: Path, routes: int) -> Path:
    lines = [
        "version: v1alpha1",
        "machine:",
        "  network:",
        "    interfaces:",
        f"      - interface: {ROUTE_LINK}",
        "        addresses: [192.0.2.10/24]",
    ]
    if routes:
        lines.append("        routes:")
        lines += [
            f"          - network: {route_dst(i)}\n            gateway: {GATEWAY}" for i in range(routes)
        ]
    cfg = tmp / "config.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def _start_machined(ns: Namespace, tmp: Path, cfg: Path) -> tuple[subprocess.Popen[bytes], Path]:
    for d in ("/run/machined", "/var/run/wireguard"):
        Path(d).mkdir(parents=True, exist_ok=True)
    level = os.environ.get("NETD_BENCH_LOG_LEVEL", "info")
    daemon = f"{MACHINED} --state-dir {tmp}/state --etc-dir {tmp}/etc --config {cfg} --log-level {level}"
    script = "mount -t tmpfs tmpfs /run/machined && mount -t tmpfs tmpfs /var/run/wireguard && exec " + daemon
    argv = ["ip", "netns", "exec", ns.name, "unshare", "--uts", "--mount", "--propagation", "private", "--",
            "sh", "-c", script]  # fmt: skip
    log_path = tmp / "machined.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return proc, log_path


def _static_routes(ns: Namespace) -> int:
    out = ns.ip("-4", "route", "show", "proto", "static", check=False).stdout
    return out.count("\n")


#: Seconds after "node started" at which the busy machined gets its SIGTERM.
BUSY_DELAY = 0.2


def _stop_time(proc: subprocess.Popen[bytes]) -> float | None:
    """Seconds machined takes to exit after SIGTERM (None: killed after 10 s)."""
    t0 = time.monotonic()
    _stop(proc)
    took = time.monotonic() - t0
    return took if took < 10 else None


def steady_state(ns: Namespace, n: int, settle_timeout: float, observe: float, case: str) -> dict[str, Any]:
    """machined in one of :data:`CASES`: time until all routes are in the kernel
    (``create``), time to go idle, then netlink writes and RSS over ``observe``
    seconds, and how long SIGTERM takes to stop it."""
    ns.flush()
    ns.ip("route", "flush", "proto", "static", check=False)
    ns.ip("route", "flush", "proto", "boot", "dev", ROUTE_LINK, check=False)
    tmp = Path(tempfile.mkdtemp(prefix="netd-bench-machined-"))
    out: dict[str, Any] = {"settled": None}
    try:
        cfg = _config(tmp, 0 if case == "foreign" else n)
        if case != "create":
            proto = "static" if case == "adopt" else "boot"
            ns.ip_batch(
                [
                    f"route add {route_dst(i)} via {GATEWAY} dev {ROUTE_LINK} proto {proto} metric 1024"
                    for i in range(n)
                ]
            )
        proc, log_path = _start_machined(ns, tmp, cfg)
        try:
            t0 = time.monotonic()
            if case == "create":
                while time.monotonic() - t0 < settle_timeout and proc.poll() is None:
                    if _static_routes(ns) >= n:
                        out["all_in_kernel"] = time.monotonic() - t0
                        break
                    time.sleep(0.2)
            time.sleep(0.5)
            last, quiet = _cpu_seconds(proc.pid), 0
            while time.monotonic() - t0 < settle_timeout:
                time.sleep(1)
                if proc.poll() is not None:
                    out["error"] = f"machined exited {proc.returncode}: {log_path.read_text()[-300:]}"
                    return out
                cpu = _cpu_seconds(proc.pid)
                busy, last = cpu - last, cpu
                started = "node started" in log_path.read_text(errors="replace")
                quiet = quiet + 1 if started and busy < 0.05 else 0
                if quiet >= 3:
                    out["settled"] = time.monotonic() - t0 - 3
                    break
            out["rss_mb"] = _rss_mb(proc.pid)
            out["cpu_s"] = _cpu_seconds(proc.pid)
            if out["settled"] is not None and observe > 0:
                calls = _netlink_calls(proc.pid, observe)
                if calls is not None:
                    out["writes_per_min"] = calls[0] * 60 / observe
                    out["gets_per_min"] = calls[1] * 60 / observe
                out["rss_mb"] = _rss_mb(proc.pid)
            out["routes_after"] = _static_routes(ns)
        finally:
            out["sigterm_s"] = _stop_time(proc)
        if case == "create":
            # SIGTERM while busy: a fresh start with no route in the kernel, right when the
            # controllers start (the route controller is then planning/sending 10,000 adds).
            ns.ip("route", "flush", "proto", "static", check=False)
            shutil.rmtree(tmp / "state", ignore_errors=True)
            log_path.write_bytes(b"")
            proc, log_path = _start_machined(ns, tmp, cfg)
            try:
                t0 = time.monotonic()
                while time.monotonic() - t0 < settle_timeout and proc.poll() is None:
                    if "node started" in log_path.read_text(errors="replace"):
                        break
                    time.sleep(0.02)
                time.sleep(BUSY_DELAY)
            finally:
                out["sigterm_busy_s"] = _stop_time(proc)
            out["busy_routes"] = _static_routes(ns)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _steady_rows(case: str, n: int, st: dict[str, Any], settle_timeout: float) -> list[tuple[str, str, str]]:
    def secs(x: float | None) -> str:
        return "> 10 s" if x is None else f"{x:.2f} s"

    rows = [(f"machined: {CASES[case].replace('10,000', f'{n:,}')}", "", "")]
    if st.get("error"):
        return [*rows, ("  failed", "", st["error"][:60])]
    if "all_in_kernel" in st:
        rows.append(("  start until all routes are in the kernel", f"{st['all_in_kernel']:.1f} s", ""))
    elif case == "create":
        rows.append(("  start until all routes are in the kernel", f">{settle_timeout:.0f} s", "not reached"))
    if st["settled"] is None:
        rows.append(("  idle (3 s without CPU use)", f">{settle_timeout:.0f} s", "never idle: not observed"))
    else:
        rows.append(("  start until idle", f"{st['settled']:.1f} s", ""))
        rows.append(("  CPU time until idle", f"{st['cpu_s']:.1f} s", ""))
        if "writes_per_min" in st:
            rows.append(("  steady state: netlink writes/min (strace)", f"{st['writes_per_min']:.0f}", "0"))
            rows.append(("  steady state: netlink get/dump requests/min", f"{st['gets_per_min']:.0f}", ""))
        else:
            rows.append(("  steady state: netlink writes/min", "n/a", "needs strace"))
    rows.append(("  RSS", f"{st.get('rss_mb', 0):.0f} MB", "< 250 MB"))
    rows.append(("  static routes in the kernel at the end", f"{st.get('routes_after', 0)}", ""))
    rows.append(("  SIGTERM to exit", secs(st.get("sigterm_s")), "< 10 s"))
    if "sigterm_busy_s" in st:
        busy = f"  SIGTERM to exit while applying ({st.get('busy_routes', 0)} routes in at exit)"
        rows.append((busy, secs(st["sigterm_busy_s"]), "< 10 s"))
    return rows


def outer(reps: int, cold_n: int, settle_timeout: float, observe: float, cases: list[str]) -> int:
    if os.geteuid() != 0:
        print("bench/apply.py needs root (network namespaces)", file=sys.stderr)
        return 2

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    rows: list[tuple[str, int, float, float]] = []
    with Namespace() as ns:
        cases = (("routes", 1_000), ("routes", 10_000), ("addresses", 1_000), ("rules", 1_000))
        for what, n in (*cases, ("rule_controller", 1_000)):
            ours, theirs = run_case(ns, what, n, reps)
            rows.append((f"add {what.replace('_', ' ')}", n, ours, theirs))
        intent = ns.inner("intent", 10_000)
        flood = ns.inner("flood", 100_000)
        cold = ns.inner("cold", cold_n)
        ns.flush()
        in_sync = ns.inner("in_sync", cold_n)
        ns.flush()
        steady = (
            {c: steady_state(ns, cold_n, settle_timeout, observe, c) for c in cases} if observe > 0 else {}
        )

    print(f"{'what':<16} {'N':>7} {'ours s':>9} {'ip -batch s':>12} {'ratio':>7}")
    for what, n, ours, theirs in rows:
        print(f"{what:<16} {n:>7} {ours:>9.3f} {theirs:>12.3f} {ours / theirs:>7.2f}")
    print()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average while measuring: {load} ({os.cpu_count()} CPUs)")
    print(f"observe, {cold_n} routes in the namespace ({cold['count']} RouteStatus)            value   goal")
    obs = [
        ("cold start, our codec: dump + decode + State.put", f"{cold['ours']:.3f} s", "<= 0.5 s"),
        ("  (its CPU time)", f"{cold['ours_cpu']:.3f} s", ""),
    ]
    if "controller" in cold:
        obs.append(("cold start, status.RouteStatusController", f"{cold['controller']:.3f} s", "<= 0.5 s"))
        obs.append(("  (its CPU time)", f"{cold['controller_cpu']:.3f} s", ""))
    else:
        obs.append(("cold start, status.RouteStatusController", "n/a", cold.get("controller_error", "")))
    obs += [
        (f"pyroute2 route dump alone ({cold['pyroute2_count']} msgs)", f"{cold['pyroute2_dump']:.3f} s", ""),
        ("peak RSS, process holding the RouteStatus", f"{cold['rss_mb']:.0f} MB", "< 250 MB (machined)"),
    ]
    obs.append(
        (
            f"route spec pass, {cold_n} specs all in sync (wall)",
            f"{in_sync['wall'] * 1000:.0f} ms",
            "< 100 ms",
        )
    )
    obs.append(("  (its CPU time)", f"{in_sync['cpu'] * 1000:.0f} ms", ""))
    obs.append(("  netlink writes in those passes", f"{in_sync['writes']}", "0"))
    if not steady:
        obs.append(("steady state (machined)", "skipped", "--observe 0"))
    for case, st in steady.items():
        obs += _steady_rows(case, cold_n, st, settle_timeout)
    for what, value, goal in obs:
        print(f"{what:<58} {value:>9}   {goal}")
    ratio = next(ours / theirs for what, n, ours, theirs in rows if what == "add routes" and n == 10_000)
    print(f"goal <= 2x ip -batch at N=10,000 routes: {'met' if ratio <= 2 else 'NOT met'}")
    rules = next(ours / theirs for what, n, ours, theirs in rows if what == "add rules")
    met = "met" if rules <= 2 else "NOT met"
    print(f"goal <= 2x ip -batch at N=1,000 rules: {met}")
    none, durable = statistics.median(intent["none"]), statistics.median(intent["durable"])
    cost = (durable - none) / none * 100
    print(
        f"route spec pass, 10000 routes created: {none:.3f} s without applied.json, {durable:.3f} s with "
        f"durable pending+confirmed records ({intent['durable_saves']} fsynced writes): +{cost:.1f} % "
        f"(goal < 10 %: {'met' if cost < 10 else 'NOT met'})"
    )
    print(
        f"100k-route ip -batch flood ({flood['flood']:.2f} s): RouteStatus == kernel "
        f"({flood['kernel']} routes) {flood['converge']:.2f} s after its end; "
        f"{flood['overflows']} overflow(s), {flood['resyncs']} resync(s)"
        + ("" if flood["status"] == flood["kernel"] else f" NOT CONVERGED ({flood['status']})")
    )
    print(f"ratio_vs_ip_batch={ratio:.2f}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inner", choices=sorted(INNER), help=argparse.SUPPRESS)
    p.add_argument("-n", type=int, default=10_000, help=argparse.SUPPRESS)
    p.add_argument("--reps", type=int, default=3, help="runs per case (median)")
    p.add_argument("--cold-n", type=int, default=10_000, help="routes for the cold-start/steady observations")
    p.add_argument("--settle", type=float, default=90, help="seconds machined gets to go idle")
    p.add_argument(
        "--observe", type=float, default=60, help="steady-state window in seconds (0: skip machined)"
    )
    p.add_argument(
        "--cases", default=",".join(CASES), help=f"machined cases, comma-separated ({', '.join(CASES)})"
    )
    args = p.parse_args()
    if args.inner:
        print(json.dumps(INNER[args.inner](args.n)))
        return 0
    try:
        cases = [c for c in args.cases.split(",") if c]
        unknown = [c for c in cases if c not in CASES]
        if unknown:
            p.error(f"unknown case {unknown[0]!r}")
        return outer(args.reps, args.cold_n, args.settle, args.observe, cases)
    except KeyboardInterrupt:
        print("interrupted; namespace removed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
