"""The machined API as a user sees it: ``netctl get routes -o json`` and watch latency.

Creates its own network namespace (``netd-bench-api-<pid>``) with a veth pair
(both ends up; the host kernel has no dummy), starts machined inside it with
no config (``ip netns exec``: machined refuses the initial netns) and its
``--api``/``--state-dir``/``--etc-dir`` under a temp dir, then

* adds ``--routes`` routes ``10.x.y.0/24 dev vA`` with ``ip -n <ns> -batch``
  and waits until ``netctl get routes -o json`` lists every one of them;
* **get**: times ``netctl get routes -o json`` (process start, gRPC List,
  JSON rendering; output to /dev/null as hyperfine does) against
  ``ip -n <ns> -j route show table all``: one warm-up each, then ``--runs``
  alternating runs, median and min;
* **watch**: starts ``netctl get addresses --watch -o json`` once, then
  ``--events`` times runs ``ip -n <ns> addr add A/32 dev vA`` and records the
  time from just before the command to the moment the watcher's ``created``
  line for A is read (so the ``ip`` process start is included: it is shown
  on its own too); p50/p99/max.

Everything (machined, the watcher, the namespace, the temp dir) is removed
also on failure, Ctrl-C and SIGTERM. Prints a table (metric, value, goal,
ratio) and ends with ``get_routes_s=<median>`` and ``watch_p99_ms=<p99>``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: machined and netctl live next to python
LINK_A, LINK_B = "vA", "vB"
GET_GOAL_S = 0.5
WATCH_P99_GOAL_MS = 50.0
START_TIMEOUT = 60.0
ROUTES_TIMEOUT = 120.0
EVENT_TIMEOUT = 5.0


def route_dst(i: int) -> str:
    return f"10.{(i >> 8) & 255}.{i & 255}.0/24"


def event_addr(i: int) -> str:
    return f"198.18.{(i >> 8) & 255}.{i & 255}"


def log(msg: str) -> None:
    print(f"[bench/api] {msg}", file=sys.stderr, flush=True)


def run(cmd: Sequence[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), check=True, text=True, capture_output=True, **kw)  # type: ignore[call-overload, no-any-return]


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100): with 200 samples p99 is the 198th smallest."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


class Bench:
    """Owns every resource it creates; :meth:`close` removes them, whatever happened."""

    def __init__(self, routes: int, runs: int, events: int) -> None:
        self.n_routes = routes
        self.runs = runs
        self.events = events
        self.ns = f"netd-bench-api-{os.getpid()}"
        self.tmp = Path(tempfile.mkdtemp(prefix="netd-bench-api-"))
        self.sock = str(self.tmp / "machined.sock")
        self.machined: subprocess.Popen[bytes] | None = None
        self.machined_log: IO[bytes] | None = None
        self.watcher: subprocess.Popen[bytes] | None = None
        self.ns_created = False
        self.rows: list[tuple[str, str, str, str]] = []

    # ---- set-up ----------------------------------------------------------------------------

    def netns(self) -> None:
        run(["ip", "netns", "add", self.ns])
        self.ns_created = True
        batch = "\n".join(
            [
                "link set lo up",
                f"link add {LINK_A} type veth peer name {LINK_B}",
                f"link set {LINK_A} up",
                f"link set {LINK_B} up",
            ]
        )
        run(["ip", "-n", self.ns, "-batch", "-"], input=batch + "\n")

    def start_machined(self) -> None:
        self.machined_log = open(self.tmp / "machined.log", "wb")  # noqa: SIM115 (closed in close())
        cmd = [
            "ip", "netns", "exec", self.ns, str(BIN / "machined"),
            "--state-dir", str(self.tmp / "state"),
            "--etc-dir", str(self.tmp / "etc"),
            "--api", self.sock,
            "--log-level", "warning",
        ]  # fmt: skip
        (self.tmp / "etc").mkdir()
        self.machined = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self.machined_log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.machined.poll() is not None:
                rc = self.machined.returncode
                raise RuntimeError(f"machined exited with {rc}:\n{self.machined_output()}")
            if os.path.exists(self.sock):
                r = subprocess.run(self.netctl("version"), capture_output=True, text=True)
                if r.returncode == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"machined did not answer within {START_TIMEOUT:.0f}s:\n{self.machined_output()}")

    def machined_output(self) -> str:
        with contextlib.suppress(OSError):
            return (self.tmp / "machined.log").read_text(errors="replace")[-4000:]
        return ""

    def netctl(self, *args: str) -> list[str]:
        return [str(BIN / "netctl"), *args, "--endpoint", self.sock]

    def add_routes(self) -> None:
        lines = [f"route add {route_dst(i)} dev {LINK_A}" for i in range(self.n_routes)]
        t0 = time.perf_counter()
        run(["ip", "-n", self.ns, "-batch", "-"], input="\n".join(lines) + "\n")
        log(f"{self.n_routes} routes added by ip -batch in {time.perf_counter() - t0:.2f}s")
        wanted = {route_dst(i) for i in range(self.n_routes)}
        deadline = time.monotonic() + ROUTES_TIMEOUT
        seen = 0
        t0 = time.perf_counter()
        while time.monotonic() < deadline:
            out = run(self.netctl("get", "routes", "-o", "json")).stdout
            dsts = {json.loads(line)["spec"].get("dst") for line in out.splitlines() if line}
            seen = len(wanted & dsts)
            if seen == len(wanted):
                took = time.perf_counter() - t0
                log(f"netctl lists all {seen} routes ({len(dsts)} RouteStatus) {took:.2f}s after ip returned")
                return
            time.sleep(0.2)
        raise RuntimeError(f"netctl lists only {seen} of {len(wanted)} routes after {ROUTES_TIMEOUT:.0f}s")

    # ---- get -----------------------------------------------------------------------------

    @staticmethod
    def timed(cmd: Sequence[str]) -> float:
        t0 = time.perf_counter()
        subprocess.run(list(cmd), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return time.perf_counter() - t0

    def bench_get(self) -> float:
        ours_cmd = self.netctl("get", "routes", "-o", "json")
        ip_cmd = ["ip", "-n", self.ns, "-j", "route", "show", "table", "all"]
        n_ours = len(run(ours_cmd).stdout.splitlines())
        n_ip = len(json.loads(run(ip_cmd).stdout))
        log(f"netctl prints {n_ours} routes, ip {n_ip}")
        self.timed(ours_cmd)  # warm-up: page cache, .pyc
        self.timed(ip_cmd)
        ours: list[float] = []
        ip: list[float] = []
        for _ in range(self.runs):
            ours.append(self.timed(ours_cmd))
            ip.append(self.timed(ip_cmd))
        # `netctl version`: the same process start, imports and channel, without the 10,000 routes.
        base = [self.timed(self.netctl("version")) for _ in range(self.runs)]
        om, im, bm = statistics.median(ours), statistics.median(ip), statistics.median(base)
        goal = f"<= {GET_GOAL_S} s"
        self.rows += [
            (f"get routes -o json ({n_ours}), median", f"{om:.3f} s", goal, f"{om / im:.1f}x ip"),
            ("get routes -o json, min", f"{min(ours):.3f} s", "", f"{min(ours) / min(ip):.1f}x ip"),
            (f"ip -j route show table all ({n_ip}), median", f"{im:.3f} s", "", ""),
            ("ip -j route show table all, min", f"{min(ip):.3f} s", "", ""),
            ("netctl version (start-up + 1 RPC), median", f"{bm:.3f} s", "", f"{bm / om:.0%} of get"),
        ]
        return om

    # ---- watch ---------------------------------------------------------------------------

    def bench_watch(self) -> float:
        self.watcher = subprocess.Popen(
            self.netctl("get", "addresses", "--watch", "-o", "json"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
        )
        arrivals: queue.Queue[tuple[float, str | None]] = queue.Queue()
        assert self.watcher.stdout is not None
        threading.Thread(target=_read_events, args=(self.watcher.stdout, arrivals), daemon=True).start()

        def add_and_wait(addr: str) -> tuple[float, float]:
            """(seconds until the created event is read, seconds the ip command took)."""
            cmd = ["ip", "-n", self.ns, "addr", "add", f"{addr}/32", "dev", LINK_A]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            t_ip = time.perf_counter() - t0
            deadline = t0 + EVENT_TIMEOUT
            while True:
                left = deadline - time.perf_counter()
                if left <= 0:
                    raise RuntimeError(f"no created event for {addr} within {EVENT_TIMEOUT}s")
                try:
                    t, got = arrivals.get(timeout=left)
                except queue.Empty:
                    continue
                if got is None:
                    raise RuntimeError(f"netctl watch exited:\n{self.watcher_stderr()}")
                if got == addr:
                    return t - t0, t_ip

        # A sentinel first: its event proves the initial list has been printed.
        add_and_wait("198.19.0.1")
        lat: list[float] = []
        ip_s: list[float] = []
        for i in range(self.events):
            d, t_ip = add_and_wait(event_addr(i))
            lat.append(d * 1000)
            ip_s.append(t_ip * 1000)
        p50, p99, mx = percentile(lat, 50), percentile(lat, 99), max(lat)
        ipm = statistics.median(ip_s)
        goal = f"<= {WATCH_P99_GOAL_MS:.0f} ms"
        self.rows += [
            (f"watch latency p50 ({self.events} addr add)", f"{p50:.1f} ms", "", ""),
            ("watch latency p99", f"{p99:.1f} ms", goal, f"{p99 / WATCH_P99_GOAL_MS:.2f}x goal"),
            ("watch latency max", f"{mx:.1f} ms", "", ""),
            ("  of which `ip addr add` process, median", f"{ipm:.1f} ms", "", ""),
        ]
        return p99

    def watcher_stderr(self) -> str:
        w = self.watcher
        if w is None or w.stderr is None:
            return ""
        with contextlib.suppress(subprocess.TimeoutExpired):
            w.wait(2)
        return w.stderr.read().decode(errors="replace") if w.poll() is not None else ""

    # ---- tear-down -----------------------------------------------------------------------

    def close(self) -> None:
        for name in ("watcher", "machined"):
            p: subprocess.Popen[bytes] | None = getattr(self, name)
            if p is None or p.poll() is not None:
                continue
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.machined_log is not None:
            self.machined_log.close()
        if self.ns_created:
            subprocess.run(["ip", "netns", "del", self.ns], check=False, capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _read_events(stream: IO[bytes], out: queue.Queue[tuple[float, str | None]]) -> None:
    """Reader thread: (arrival time, address) for every ``created`` line, stamped as it is
    read; (time, None) when the watcher's output ends."""
    for raw in iter(stream.readline, b""):
        t = time.perf_counter()
        try:
            doc = json.loads(raw)
        except ValueError:
            continue
        if doc.get("event") == "created":
            addr = str(doc.get("spec", {}).get("address") or "")
            out.put((t, addr.split("/")[0]))
    out.put((time.perf_counter(), None))


def table(rows: Sequence[tuple[str, str, str, str]]) -> Iterator[str]:
    head = ("metric", "value", "goal", "ratio")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    for r in [head, *rows]:
        yield "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--routes", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=5, help="timed runs per command (after one warm-up)")
    p.add_argument("--events", type=int, default=200, help="addresses added for the watch latency")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/api.py: needs root (network namespaces)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _on_sigterm)
    bench = Bench(args.routes, args.runs, args.events)
    try:
        bench.netns()
        bench.start_machined()
        log(f"machined is up in {bench.ns}")
        bench.add_routes()
        get_s = bench.bench_get()
        p99 = bench.bench_watch()
    except KeyboardInterrupt:
        print("bench/api.py: interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, subprocess.CalledProcessError, OSError) as e:
        detail = e.stderr if isinstance(e, subprocess.CalledProcessError) else ""
        print(f"bench/api.py: {e}\n{detail or ''}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the clean-up
        try:
            bench.close()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machined API bench ({socket.gethostname()}, {os.cpu_count()} CPUs, load {load})")
    for line in table(bench.rows):
        print(line)
    print(f"get_routes_s={get_s:.3f}")
    print(f"watch_p99_ms={p99:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
