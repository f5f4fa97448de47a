"""KubeSpan benches on local clusters (`netctl cluster create`, namespaces, userspace WireGuard).

    .venv/bin/python bench/kubespan.py                 # every part
    .venv/bin/python bench/kubespan.py --part c        # one part (repeatable)
    .venv/bin/python bench/kubespan.py --part c --sizes 3,6 --runs 3

Parts: one function each (``part_<letter>``), registered in :data:`PARTS`; `main` runs the ones
asked for. Root only (namespaces). Every cluster is destroyed, also on error and Ctrl-C.

(c) Convergence: N = 3, 6, 12 nodes in two sites behind 1:1 NAT, default timers. t = 0 is the
start of the last machined (its /proc start time; create() starts them one after another).
Reported apart, because 12 Python daemons on 2 cores cost seconds by themselves:

- ``api``: when the last machined answered on its API socket (process start-up);
- ``same``/``cross``: when the last same-site / cross-site peer pair was first seen ``up``
  (a pair is one node's status of one peer: N·(N-1) of them);
- ``all``: when every pair was ``up`` at once; ``all-api``: the same, counted from ``api``.

Peer states are followed with one Watch stream per node (netctl.client, timestamped on arrival),
opened as soon as that node's API answers. Per node: CPU seconds (user+system) of machined and
of its wireguard-go from their start until ``all``, their RSS then, and their CPU share over the
5 s after (idle mesh). Goals (issue 13): same site ≤ 3 s, across sites ≤ 5 s. A table is
printed and a PNG plot (matplotlib) written with a JSON of the numbers (``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from netctl.cluster import ClusterRecord, create, destroy  # noqa: E402
from netctl.cluster.provision import ProvisionError, api_answers, check_host, pids_in_netns  # noqa: E402
from netctl.cluster.state import ROLE_MACHINED  # noqa: E402
from netctl.cluster.topology import plan as make_plan  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
PEER_STATUSES = "kubespanpeerstatuses"
UP = "up"
GOAL_SAME = 3.0
GOAL_CROSS = 5.0
CONVERGE_TIMEOUT = 90.0
IDLE_WINDOW = 5.0


def boottime() -> float:
    """CLOCK_BOOTTIME: the clock /proc/PID/stat start times count on."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


# ---- /proc ------------------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def start_time(pid: int) -> float | None:
    """Seconds after boot when `pid` started."""
    st = _stat(pid)
    return None if st is None else int(st[19]) / CLK_TCK


def cpu_seconds(pid: int) -> float | None:
    st = _stat(pid)
    return None if st is None else (int(st[11]) + int(st[12])) / CLK_TCK


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


# ---- (c) convergence ----------------------------------------------------------------------------------


@dataclass
class NodeCost:
    node: str
    machined_cpu: float  # s, start .. all up
    machined_rss: float  # MB at all up
    wg_cpu: float
    wg_rss: float
    idle_cpu_pct: float  # machined + wireguard-go, % of one core over IDLE_WINDOW after all up


@dataclass
class Convergence:
    nodes: int
    sites: int
    create_s: float  # create() wall time (namespaces, routers, discovery, every API)
    spread_s: float  # first machined start .. last machined start
    api: float | None  # all times: s after the last machined start
    same: float | None
    cross: float | None
    all: float | None
    pairs_up: int
    pairs: int
    costs: list[NodeCost] = field(default_factory=list)

    @property
    def all_after_api(self) -> float | None:
        return None if self.all is None or self.api is None else self.all - self.api

    def mean(self, attr: str) -> float:
        return statistics.fmean(getattr(c, attr) for c in self.costs) if self.costs else float("nan")


class Watcher:
    """Follows every node's API (answering yet?) and peer statuses (one Watch stream per node)."""

    def __init__(self, sockets: dict[str, Path]) -> None:
        self.sockets = sockets
        self.api_at: dict[str, float] = {}
        self.state: dict[tuple[str, str], str] = {}  # (node, peer label) -> state
        self.first_up: dict[tuple[str, str], float] = {}
        self.all_up_at: float | None = None
        self.want = {(a, b) for a in sockets for b in sockets if a != b}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.clients: list[Any] = []
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        t = threading.Thread(target=self._apis, daemon=True)
        t.start()
        self.threads.append(t)

    def close(self) -> None:
        self.stop.set()
        with self.lock:
            clients = list(self.clients)
        for c in clients:
            with contextlib.suppress(Exception):
                c.close()
        for t in self.threads:
            t.join(timeout=5)

    def _apis(self) -> None:
        while not self.stop.is_set() and len(self.api_at) < len(self.sockets):
            for node, sock in self.sockets.items():
                if node not in self.api_at and api_answers(sock):
                    self.api_at[node] = boottime()
                    t = threading.Thread(target=self._watch, args=(node,), daemon=True)
                    t.start()
                    self.threads.append(t)
            self.stop.wait(0.05)

    def _watch(self, node: str) -> None:
        from netctl.client import Client, ClientError

        while not self.stop.is_set():
            try:
                client = Client(str(self.sockets[node]))
                with self.lock:
                    self.clients.append(client)
                _, events = client.watch(PEER_STATUSES)
                for _, event, md, spec in events:
                    if md is None:
                        continue
                    label = str((spec or {}).get("label") or md["id"])
                    self._seen(node, label, "" if event == "destroyed" else str((spec or {}).get("state")))
            except (ClientError, ValueError):
                pass
            except Exception:
                if not self.stop.is_set():
                    raise
            self.stop.wait(0.1)

    def _seen(self, node: str, peer: str, state: str) -> None:
        now = boottime()
        with self.lock:
            self.state[(node, peer)] = state
            if state == UP:
                self.first_up.setdefault((node, peer), now)
            if self.all_up_at is None and all(self.state.get(k) == UP for k in self.want):
                self.all_up_at = now

    def wait_all_up(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.all_up_at is not None:
                return True
            time.sleep(0.05)
        return False


def _node_pids(record: ClusterRecord, node: str) -> tuple[int | None, int | None]:
    p = record.process(ROLE_MACHINED, node)
    machined = p.pid if p else None
    wg = next(
        (pid for pid in pids_in_netns([record.plan.node(node).netns]) if comm(pid) == "wireguard-go"), None
    )
    return machined, wg


def converge_once(
    nodes: int, sites: int, root: Path, say: Callable[[str], None], verbose: bool = False
) -> Convergence:
    name = f"bk{os.getpid()}n{nodes}"
    p = make_plan(name, nodes, sites, True, "x", "x")  # names only: create() makes its own secrets
    sockets = {n.name: root / name / n.name / "api.sock" for n in p.nodes}
    site = {n.name: n.site for n in p.nodes}
    watcher = Watcher(sockets)
    record: ClusterRecord | None = None
    try:
        watcher.start()
        t = time.monotonic()
        record = create(name, nodes, sites, True, root)
        create_s = time.monotonic() - t
        starts = [
            st
            for n in p.nodes
            if (proc := record.process(ROLE_MACHINED, n.name)) and (st := start_time(proc.pid)) is not None
        ]
        t0, first = max(starts), min(starts)
        ok = watcher.wait_all_up(CONVERGE_TIMEOUT)
        pids = {n.name: _node_pids(record, n.name) for n in p.nodes}
        costs_at = {
            n: (_cpu(m), rss_mb(m) if m else None, _cpu(w), rss_mb(w) if w else None)
            for n, (m, w) in pids.items()
        }
        time.sleep(IDLE_WINDOW)
        costs = []
        for n, (m, w) in pids.items():
            mc, mr, wc, wr = costs_at[n]
            idle = ((_cpu(m) or 0) - (mc or 0) + (_cpu(w) or 0) - (wc or 0)) / IDLE_WINDOW * 100
            costs.append(NodeCost(n, _nan(mc), _nan(mr), _nan(wc), _nan(wr), idle))
        with watcher.lock:
            first_up = dict(watcher.first_up)
            all_up = watcher.all_up_at if ok else None
            api = dict(watcher.api_at)

        def last(pairs: list[tuple[str, str]]) -> float | None:
            if not pairs or any(k not in first_up for k in pairs):
                return None
            return max(first_up[k] for k in pairs) - t0

        if verbose:
            say("  api answered: " + " ".join(f"{n}={v - t0:+.2f}" for n, v in sorted(api.items())))
            say(
                "  first up (node<-peer): "
                + " ".join(
                    f"{a}<-{b}{'' if site[a] == site[b] else '*'}={first_up[(a, b)] - t0:.2f}"
                    for a, b in sorted(first_up, key=lambda k: first_up[k])
                )
                + "   (* = across sites)"
            )
        same = [k for k in watcher.want if site[k[0]] == site[k[1]]]
        cross = [k for k in watcher.want if site[k[0]] != site[k[1]]]
        if not ok:
            say(
                f"  N={nodes}: not all peers up within {CONVERGE_TIMEOUT:.0f} s: "
                f"{sorted(k for k in watcher.want if watcher.state.get(k) != UP)}"
            )
        return Convergence(
            nodes=nodes,
            sites=sites,
            create_s=create_s,
            spread_s=t0 - first,
            api=max(api.values()) - t0 if len(api) == nodes else None,
            same=last(same),
            cross=last(cross),
            all=None if all_up is None else all_up - t0,
            pairs_up=len(first_up),
            pairs=len(watcher.want),
            costs=costs,
        )
    finally:
        watcher.close()
        if record is not None or (root / name).exists():
            with contextlib.suppress(ProvisionError):
                left = destroy(name, root)
                if left:
                    say(f"  destroy {name}: not everything removed: {left}")


def _nan(v: float | None) -> float:
    return float("nan") if v is None else v


def _cpu(pid: int | None) -> float | None:
    return None if pid is None else cpu_seconds(pid)


def _f(v: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if v is None or v != v else fmt.format(v)


def _median(vals: list[float | None]) -> float | None:
    got = [v for v in vals if v is not None]
    return statistics.median(got) if len(got) == len(vals) and got else None


def render_c(results: list[Convergence]) -> str:
    head = ["N", "create", "spread", "api", "same", "cross", "all", "all-api", "pairs",
            "md cpu s", "md MB", "wg cpu s", "wg MB", "idle %"]  # fmt: skip
    rows = [head]
    for r in results:
        rows.append([
            str(r.nodes), _f(r.create_s, "{:.1f}"), _f(r.spread_s), _f(r.api), _f(r.same), _f(r.cross),
            _f(r.all), _f(r.all_after_api), f"{r.pairs_up}/{r.pairs}", _f(r.mean("machined_cpu")),
            _f(r.mean("machined_rss"), "{:.0f}"), _f(r.mean("wg_cpu")), _f(r.mean("wg_rss"), "{:.0f}"),
            _f(r.mean("idle_cpu_pct"), "{:.1f}"),
        ])  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows)


def plot_c(by_n: dict[int, list[Convergence]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = sorted(by_n)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for attr, label, style in (
        ("api", "last API answers (process start-up)", "o:"),
        ("same", "same-site pairs up", "s-"),
        ("cross", "cross-site pairs up", "^-"),
        ("all", "all pairs up at once", "D--"),
    ):
        ys = [_median([getattr(r, attr) for r in by_n[n]]) for n in ns]
        ax.plot(ns, [float("nan") if y is None else y for y in ys], style, label=label)
    ax.axhline(GOAL_SAME, color="tab:green", lw=0.8, ls="-.", label=f"goal same site ≤ {GOAL_SAME:.0f} s")
    ax.axhline(GOAL_CROSS, color="tab:red", lw=0.8, ls="-.", label=f"goal across sites ≤ {GOAL_CROSS:.0f} s")
    ax.set_xlabel("nodes (2 sites)")
    ax.set_ylabel("seconds after the last machined start")
    ax.set_xticks(ns)
    ax.set_title("KubeSpan convergence (median of runs)")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    cpu = [statistics.fmean(r.mean("machined_cpu") + r.mean("wg_cpu") for r in by_n[n]) for n in ns]
    md_rss = [statistics.fmean(r.mean("machined_rss") for r in by_n[n]) for n in ns]
    wg_rss = [statistics.fmean(r.mean("wg_rss") for r in by_n[n]) for n in ns]
    ax2.plot(ns, cpu, "o-", color="tab:purple", label="CPU s per node until all up (machined + wireguard-go)")
    ax2.set_xlabel("nodes (2 sites)")
    ax2.set_ylabel("CPU seconds per node")
    ax2.set_xticks(ns)
    ax3 = ax2.twinx()
    ax3.plot(ns, md_rss, "s--", color="tab:orange", label="machined RSS MB")
    ax3.plot(ns, wg_rss, "^--", color="tab:brown", label="wireguard-go RSS MB")
    ax3.set_ylabel("RSS MB per node")
    ax3.set_ylim(bottom=0)
    ax2.set_ylim(bottom=0)
    lines = ax2.get_legend_handles_labels()
    lines3 = ax3.get_legend_handles_labels()
    ax2.legend(lines[0] + lines3[0], lines[1] + lines3[1], fontsize=8, loc="lower right")
    ax2.set_title("cost per node")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def part_c(args: argparse.Namespace) -> dict[str, Any]:
    """(c) time from the last machined start to all peers up, N in --sizes, two sites."""
    sizes = [int(x) for x in args.sizes.split(",")]
    root = Path(tempfile.mkdtemp(prefix="bk", dir="/tmp"))  # short: API socket paths must fit
    by_n: dict[int, list[Convergence]] = {n: [] for n in sizes}
    try:
        for run in range(args.runs):
            for n in sizes:
                print(f"(c) N={n}, run {run + 1}/{args.runs} ...", flush=True)
                r = converge_once(n, 2, root, print, args.verbose)
                by_n[n].append(r)
                print(render_c([r]).splitlines()[1], flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results = [r for n in sizes for r in by_n[n]]
    print("\n(c) KubeSpan convergence, 2 sites, default timers; seconds after the last machined start")
    print("    per-node columns are means over the nodes: machined (md) and its wireguard-go (wg)")
    print(render_c(results))
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "kubespan-c.png"
    plot_c(by_n, png)
    data = {"part": "c", "results": [asdict(r) | {"all_after_api": r.all_after_api} for r in results]}
    (args.out / "kubespan-c.json").write_text(json.dumps(data, indent=2) + "\n")
    worst_same = max((r.same for r in results if r.same is not None), default=None)
    worst_cross = max((r.cross for r in results if r.cross is not None), default=None)
    print(f"goals: same site ≤ {GOAL_SAME:.0f} s: worst {_f(worst_same)} s; "
          f"across sites ≤ {GOAL_CROSS:.0f} s: worst {_f(worst_cross)} s")  # fmt: skip
    print(f"plot: {png}\nnumbers: {args.out / 'kubespan-c.json'}")
    return data


#: One function per part; parts (a) and (b) are added here by their authors.
PARTS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {"c": part_c}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--part", action="append", choices=sorted(PARTS), help="run only this part (repeatable)")
    ap.add_argument("--sizes", default="3,6,12", help="(c) cluster sizes, comma-separated (default 3,6,12)")
    ap.add_argument("--runs", type=int, default=1, help="(c) runs per size (medians in the plot)")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "bench-kubespan",
                    help="directory for the plots and JSON (default $TMPDIR/bench-kubespan)")  # fmt: skip
    ap.add_argument("-v", "--verbose", action="store_true", help="(c) per-node API and per-pair times")
    args = ap.parse_args(argv)
    try:
        check_host()
    except ProvisionError as e:
        print(f"bench/kubespan.py: {e}", file=sys.stderr)
        return 1
    for part in args.part or sorted(PARTS):
        PARTS[part](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
