"""Discovery service under load: watch fan-out latency and service CPU, memory and etcd stores.

    .venv/bin/python bench/discovery.py            # 1,000 clients in 10 clusters, 30 s measured
    .venv/bin/python bench/discovery.py --quick    # 100 clients, 10 s (smoke run)

Every simulated client does what a node does (kubespan.md §4.6): Hello, a Watch of its cluster,
and an AffiliateUpdate with a freshly encrypted affiliate blob (new AES-GCM nonce, realistic size)
plus its two endpoint blobs, here every 5 s instead of every 15 min. 1,000 clients ⇒ 200 updates/s,
each fanned out to the 99 other watchers of its cluster (~20,000 watch messages/s).

Latency = time from just before the AffiliateUpdate call to the arrival of that affiliate on
another client's Watch stream (both in the same load process, CLOCK_MONOTONIC). Service CPU =
user+system time of the service process(es) over the measured window, from /proc.

Client identity: gRPC Python has no way to bind a channel's source address (C-core exposes no
local-address channel argument, and channels cannot be built over our own sockets), so each client
sends `X-Real-IP: 127.x.y.z`, which the service trusts by default (--trust-proxy-headers): the
per-IP rate limiter (15 req/s, burst 60) then sees 1,000 distinct clients, as behind a proxy.
Clients share a few channels per load process (HTTP/2 multiplexing), like connections from a NAT.

Replicated mode: one etcd (tmpfs data dir) and two replicas; clients alternate between replicas,
so most fan-out crosses replicas through etcd. Load processes: two (clusters split between them).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import gc
import ipaddress
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import grpc  # noqa: E402
from google.protobuf.duration_pb2 import Duration  # noqa: E402

from discovery_client.api import cluster_pb2, cluster_pb2_grpc  # noqa: E402
from discovery_client.crypto import ClusterCipher  # noqa: E402
from discovery_client.models import AffiliateInfo, Endpoint, KubeSpanInfo  # noqa: E402
from discovery_client.payload import seal_affiliate, seal_endpoint  # noqa: E402

SECRET = "kCQsKr4B28VUl7qw1sVkTDNF9fFH++ViIuKsss+C6kc="
UPDATE_PERIOD = 5.0
CLIENTS_PER_CHANNEL = 50
TICK = os.sysconf("SC_CLK_TCK")


# --- load process ------------------------------------------------------------------------------


def client_ip(i: int) -> str:
    return str(ipaddress.IPv4Address("127.1.0.0") + i)


class Client:
    def __init__(
        self, idx: int, cluster: str, stub: Any, cipher: ClusterCipher, sent: dict[bytes, int]
    ) -> None:
        self.idx = idx
        self.id = f"node-{idx:04d}"
        self.cluster = cluster
        self.stub = stub
        self.cipher = cipher
        self.sent = sent
        ip = ipaddress.ip_address(f"10.{idx // 250}.{idx % 250}.1")
        self.md = (("x-real-ip", client_ip(idx)),)
        self.info = AffiliateInfo(
            node_id=self.id,
            addresses=(ip,),
            hostname=self.id,
            nodename=self.id,
            machine_type="worker",
            operating_system="netd (bench)",
            kubespan=KubeSpanInfo(
                public_key="Oak2fBEWngBhwslBxDVgnRNHXs88OAp4kjroSX0uqUE=",
                address=ipaddress.ip_address(f"fd00::{idx:x}"),
            ),
        )
        self.endpoints = [
            seal_endpoint(cipher, Endpoint(ip, 51820)),
            seal_endpoint(cipher, Endpoint(ipaddress.ip_address(f"fd00:10::{idx:x}"), 51820)),
        ]
        self.errors = 0

    async def update(self) -> None:
        data = seal_affiliate(self.cipher, self.info)  # fresh nonce: every update is a change
        req = cluster_pb2.AffiliateUpdateRequest(
            cluster_id=self.cluster,
            affiliate_id=self.id,
            affiliate_data=data,
            affiliate_endpoints=self.endpoints,
            ttl=Duration(seconds=1800),
        )
        self.sent[data] = time.monotonic_ns()
        try:
            await self.stub.AffiliateUpdate(req, metadata=self.md, timeout=10)
        except grpc.aio.AioRpcError:
            self.errors += 1

    async def run(self, stop_at: float) -> None:
        await self.stub.Hello(
            cluster_pb2.HelloRequest(cluster_id=self.cluster, client_version="v1.6.8"),
            metadata=self.md,
            timeout=30,
        )
        await asyncio.sleep(random.uniform(0, UPDATE_PERIOD))
        while time.monotonic() < stop_at:
            t0 = time.monotonic()
            await self.update()
            await asyncio.sleep(max(0.0, UPDATE_PERIOD - (time.monotonic() - t0)))


async def watcher(
    stub: Any,
    cluster: str,
    own: str,
    md: Any,
    sent: dict[bytes, int],
    window: list[float],
    lat: list[float],
    ready: asyncio.Event,
    responses: list[int],
) -> None:
    call = stub.Watch(cluster_pb2.WatchRequest(cluster_id=cluster), metadata=md)
    first = True
    try:
        async for msg in call:
            now = time.monotonic_ns()
            if first:
                first = False
                ready.set()
                continue
            if msg.deleted:
                continue
            if window[0] <= now / 1e9 <= window[1]:
                responses[0] += 1
                responses[1] += len(msg.affiliates)
            for a in msg.affiliates:
                t = sent.get(a.data)
                if t is not None and a.id != own and window[0] <= now / 1e9 <= window[1]:
                    lat.append((now - t) / 1e6)
    except grpc.aio.AioRpcError as e:
        if e.code() != grpc.StatusCode.CANCELLED:
            print(f"watch {own}: {e.code().name} {e.details()}", file=sys.stderr)


async def loop_lag(window: list[float], lags: list[float]) -> None:
    """How late this process's event loop runs a 5 ms timer: the share of the measured latency that
    is the load generator's own backlog (CPU starvation, GC), not the service's."""
    while True:
        t = time.monotonic()
        await asyncio.sleep(0.005)
        now = time.monotonic()
        if window[0] <= now <= window[1]:
            lags.append((now - t - 0.005) * 1e3)


async def load(
    targets: list[str], clusters: list[int], per_cluster: int, start: float, warmup: float, measure: float
) -> dict[str, Any]:
    cipher = ClusterCipher.from_secret(SECRET)
    sent: dict[bytes, int] = {}
    lat: list[float] = []
    window = [start + warmup, start + warmup + measure]
    channels: list[grpc.aio.Channel] = []
    per_target: dict[str, list[grpc.aio.Channel]] = {t: [] for t in targets}
    used: dict[str, int] = dict.fromkeys(targets, 0)
    clients: list[Client] = []
    tasks = []
    readies = []
    responses = [0, 0]  # Watch delta responses, affiliates in them (measured window)
    lags: list[float] = []
    for c in clusters:
        for j in range(per_cluster):
            idx = c * per_cluster + j
            target = targets[idx % len(targets)]
            if used[target] % CLIENTS_PER_CHANNEL == 0:  # a separate connection per channel
                ch = grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
                per_target[target].append(ch)
                channels.append(ch)
            used[target] += 1
            ch = per_target[target][-1]
            stub = cluster_pb2_grpc.ClusterStub(ch)
            cl = Client(idx, f"bench-cluster-{c}", stub, cipher, sent)
            clients.append(cl)
            ev = asyncio.Event()
            readies.append(ev)
            tasks.append(
                asyncio.create_task(watcher(stub, cl.cluster, cl.id, cl.md, sent, window, lat, ev, responses))
            )
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in readies)), 120)
    gc.freeze()  # the connected clients live until the end: keep them out of full GC passes
    lag_task = asyncio.create_task(loop_lag(window, lags))
    stop_at = window[1] + 1.0
    runs = [asyncio.create_task(c.run(stop_at)) for c in clients]
    await asyncio.gather(*runs)
    await asyncio.sleep(1.0)
    lag_task.cancel()
    for t in tasks:
        t.cancel()
    for ch in channels:
        await ch.close()
    return {
        "lat": lat,
        "errors": sum(c.errors for c in clients),
        "responses": responses[0],
        "affiliates": responses[1],
        "lags": lags,
    }


def worker_main(args: argparse.Namespace) -> None:
    clusters = [int(x) for x in args.cluster_list.split(",")]
    res = asyncio.run(
        load(args.targets.split(","), clusters, args.per_cluster, args.start, args.warmup, args.measure)
    )
    json.dump(res, sys.stdout)


# --- orchestration -----------------------------------------------------------------------------


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def run_delay(pid: int) -> float:
    """Seconds the process's threads spent runnable but waiting for a CPU (schedstat), so far."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, IndexError, ValueError):  # a thread that just ended
            total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def machine_busy() -> float:
    """CPU seconds all processes of the machine have used so far (/proc/stat, all CPUs)."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / TICK  # minus idle and iowait


class Usage:
    """CPU and run-queue wait of groups of processes over a window."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.t0 = self._sample()

    def _sample(self) -> dict[str, tuple[float, float]]:
        s = {g: (sum(map(proc_cpu, p)), sum(map(run_delay, p))) for g, p in self.groups.items()}
        s["machine"] = (machine_busy(), 0.0)
        return s

    def done(self, seconds: float) -> dict[str, float]:
        t1 = self._sample()
        out = {}
        for g in t1:
            out[f"{g}_cpu"] = (t1[g][0] - self.t0[g][0]) / seconds
            out[f"{g}_wait"] = (t1[g][1] - self.t0[g][1]) / seconds
        out["other_cpu"] = out.pop("machine_cpu") - sum(out[f"{g}_cpu"] for g in self.groups)
        del out["machine_wait"]
        return out


def free_port() -> int:
    from harness.etcd import free_port as fp

    return fp()


PROFILE: str | None = None  # --profile DIR: each service process writes DIR/service-<port>.prof


NICE = 0  # --nice


def prioritize(pid: int) -> None:
    """--nice for one process: its nice value and, since the kernel groups CPU time by session
    (sched autogroup: each session competes as one unit, whatever its processes' nice values), its
    session's autogroup nice, so the bench is not starved by every other session on the machine."""
    if NICE:
        os.setpriority(os.PRIO_PROCESS, pid, NICE)
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/autogroup").write_text(str(NICE))


def restore_session_nice(before: str) -> None:
    """The orchestrator's session is the caller's (its shell): give it its autogroup nice back."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        Path("/proc/self/autogroup").write_text(before.split("nice")[1].strip())


def spawn_service(port: int, *extra: str) -> subprocess.Popen[bytes]:
    prof = ["-m", "cProfile", "-o", f"{PROFILE}/service-{port}.prof"] if PROFILE else []
    argv = [
        sys.executable,
        *prof,
        "-m",
        "discovery_service",
        "--listen",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        *extra,
    ]
    proc = subprocess.Popen(argv, cwd=ROOT, start_new_session=True)
    prioritize(proc.pid)
    return proc


def wait_serving(port: int, proc: subprocess.Popen[bytes]) -> None:
    async def probe() -> None:
        deadline = time.monotonic() + 30
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = cluster_pb2_grpc.ClusterStub(ch)
            while True:
                if proc.poll() is not None:
                    raise RuntimeError("service exited")
                try:
                    await stub.Hello(cluster_pb2.HelloRequest(cluster_id="probe"), timeout=0.5)
                    return
                except grpc.aio.AioRpcError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)

    asyncio.run(probe())


def run_load(
    ports: list[int], services: list[int], extra_pids: list[int], a: argparse.Namespace
) -> dict[str, Any]:
    targets = ",".join(f"127.0.0.1:{p}" for p in ports)
    per_cluster = a.clients // a.clusters
    groups = [list(range(a.clusters))[i :: a.load_procs] for i in range(a.load_procs)]
    start = time.monotonic() + 3.0 + a.clients / 200  # watchers of all clients connect first
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                "--targets",
                targets,
                "--cluster-list",
                ",".join(map(str, g)),
                "--per-cluster",
                str(per_cluster),
                "--start",
                str(start),
                "--warmup",
                str(a.warmup),
                "--measure",
                str(a.measure),
            ],
            stdout=subprocess.PIPE,
        )
        for g in groups
        if g
    ]
    while time.monotonic() < start + a.warmup:
        time.sleep(0.05)
    usage = Usage({"svc": services, "etcd": extra_pids, "load": [p.pid for p in procs]})
    time.sleep(a.measure)
    use = usage.done(a.measure)
    results = [json.loads(p.communicate()[0] or b"{}") for p in procs]
    lat = sorted(x for r in results for x in r.get("lat", []))
    lags = sorted(x for r in results for x in r.get("lags", []))
    responses = sum(r.get("responses", 0) for r in results)
    received = sum(r.get("affiliates", 0) for r in results)

    def pct(xs: list[float], q: float) -> float:
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")

    return {
        "deliveries": len(lat),
        "responses": responses,
        "affs_per_resp": received / max(1, responses),
        "p50": pct(lat, 0.50),
        "p99": pct(lat, 0.99),
        "max": lat[-1] if lat else float("nan"),
        "lag_p99": pct(lags, 0.99),
        **use,
        "errors": sum(r.get("errors", 0) for r in results),
    }


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def bench_memory(a: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    svc = spawn_service(port)
    try:
        wait_serving(port, svc)
        return run_load([port], [svc.pid], [], a)
    finally:
        stop(svc)


def bench_etcd(a: argparse.Namespace) -> dict[str, Any]:
    from harness.etcd import EtcdServer

    with EtcdServer("dsvbench") as etcd:
        assert etcd.proc is not None
        ports = [free_port(), free_port()]
        reps = [spawn_service(p, "--store", "etcd", "--etcd-endpoints", etcd.url) for p in ports]
        try:
            for p, r in zip(ports, reps, strict=True):
                wait_serving(p, r)
            prioritize(etcd.proc.pid)
            return run_load(ports, [r.pid for r in reps], [etcd.proc.pid], a)
        finally:
            for r in reps:
                stop(r)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="100 clients, 10 s measured")
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--clusters", type=int, default=10)
    p.add_argument("--warmup", type=float, default=6.0)
    p.add_argument("--measure", type=float, default=30.0)
    p.add_argument("--load-procs", type=int, default=2)
    p.add_argument("--only", choices=("memory", "etcd"))
    p.add_argument("--profile", metavar="DIR", help="run the service(s) under cProfile, stats in DIR")
    p.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run every bench process at this niceness, session included (e.g. -10 on a busy machine; root)",
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--targets", help=argparse.SUPPRESS)
    p.add_argument("--per-cluster", type=int, help=argparse.SUPPRESS)
    p.add_argument("--cluster-list", help=argparse.SUPPRESS)
    p.add_argument("--start", type=float, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        worker_main(a)
        return
    if a.profile:
        global PROFILE
        Path(a.profile).mkdir(parents=True, exist_ok=True)
        PROFILE = str(Path(a.profile).resolve())
    if a.nice:
        global NICE
        NICE = a.nice
        atexit.register(restore_session_nice, Path("/proc/self/autogroup").read_text())
        prioritize(os.getpid())  # the load processes inherit it and share this session
    if a.quick:
        a.clients, a.measure, a.warmup = 100, 10.0, 3.0
    rows = []
    for name, fn in (("memory", bench_memory), ("etcd x2", bench_etcd)):
        if a.only and not name.startswith(a.only):
            continue
        r = fn(a)
        rows.append((name, r))
        print(f"  {name}: done", file=sys.stderr)
    rate = a.clients / UPDATE_PERIOD
    print(
        f"\ndiscovery service: {a.clients} clients in {a.clusters} clusters, {rate:.0f} updates/s, "
        f"{a.measure:.0f} s measured, {os.cpu_count()} CPUs" + (f", nice {a.nice}" if a.nice else "")
    )
    print(
        f"{'store':<9} {'deliveries/s':>12} {'affs/resp':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
        f"{'load lag p99':>12} {'errors':>6}"
    )
    for name, r in rows:
        per_resp = r["affs_per_resp"]
        print(
            f"{name:<9} {r['deliveries'] / a.measure:>12.0f} {per_resp:>9.2f} "
            f"{r['p50']:>7.1f} {r['p99']:>7.1f} {r['max']:>7.1f} {r['lag_p99']:>9.1f} ms {r['errors']:>6}"
        )
    print(
        f"\n{'store':<9} {'svc CPU':>8} {'µs/delivery':>11} {'svc wait':>8} {'etcd CPU':>8} "
        f"{'load CPU':>8} {'load wait':>9} {'other CPU':>9}"
    )
    for name, r in rows:
        us = r["svc_cpu"] * a.measure / max(1, r["deliveries"]) * 1e6
        print(
            f"{name:<9} {r['svc_cpu']:>8.0%} {us:>11.1f} {r['svc_wait']:>8.0%} {r['etcd_cpu']:>8.0%} "
            f"{r['load_cpu']:>8.0%} {r['load_wait']:>9.0%} {r['other_cpu']:>9.0%}"
        )
    print(
        "CPU = cores busy (100 % = one core); svc of etcd x2 = both replicas together. wait = time runnable\n"
        "but not running (schedstat run_delay, summed over threads): CPU contention. other = every\n"
        "process outside the bench. load lag = how late the load generators' event loops run a timer\n"
        "(their own backlog, included in the latencies). affs/resp > 1: coalesced Watch responses."
    )
    if len(rows) == 2:
        print(f"p99 etcd x2 / memory: {rows[1][1]['p99'] / rows[0][1]['p99']:.1f}x")


if __name__ == "__main__":
    main()
