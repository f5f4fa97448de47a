"""KubeSpan benches: the manager's own cost, the nft table, convergence on local clusters.

    .venv/bin/python bench/kubespan.py                 # parts a and b (seconds)
    .venv/bin/python bench/kubespan.py --part c        # one part (repeatable); c takes minutes
    .venv/bin/python bench/kubespan.py --part a --peers 1000 --reps 100
    .venv/bin/python bench/kubespan.py --part b --prefixes 10000 --b-reps 5
    .venv/bin/python bench/kubespan.py --part c --sizes 3,6 --runs 3

Parts: one function each (``part_<letter>``), registered in :data:`PARTS`; `main` runs the ones
asked for, by default :data:`DEFAULT_PARTS` (a and b: (c) builds clusters for minutes; ask for
it with ``--part c``). (b) and (c) need root (namespaces); every namespace and cluster is
removed, also on error and Ctrl-C.

(a) The manager pass, no kernel: N (1,000) synthetic peers, each with 2 endpoints and 3 allowed
IPs, all up; the device view is new objects every pass with handshakes every 2 minutes and
counters growing every keepalive (staggered), and the PeerSpecs are converted from the stored
resources every pass as controllers/manager.py does. Timed per change of one peer (a pod CIDR
never seen before): ``build_peer_specs`` over N candidates (the PeerSpecController), the
resource conversions, ``reconcile.manager_pass``, ``State.put`` of the LinkSpec with N
WireguardPeers, the WireGuard ``compute_diff`` against a device with N peers, and the nft
rendering; then a pass with nothing changed, and a full rebuild (no statuses, memos cleared).
Goal (issue 12): one peer changed < 5 ms.

(b) The table ``inet talos_kubespan`` with 10,000 prefixes (half IPv4, half IPv6, none
adjacent) in a fresh namespace ``kbench<pid>``: ``KubeSpanTable.apply`` (libnftables JSON; the
rendering, the listings before and after and their digests included) against ``nft -f`` of the
same transaction as text (process start included), when the table does not exist (create) and
when it holds the other set (update: one prefix per family differs, every element rewritten);
and apply with nothing changed (the steady state: one listing). Goal (issue 12): ≤ 1.5x nft -f.

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
import base64
import contextlib
import hashlib
import ipaddress
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


# ---- (a) manager pass cost, no kernel ---------------------------------------------------------------

GOAL_A_MS = 5.0
REKEY = 120.0  # WireGuard's REKEY_AFTER_TIME: an active peer handshakes every 2 minutes


def _b64key(tag: str) -> str:
    return base64.b64encode(hashlib.sha256(tag.encode()).digest()).decode()


def _pod(i: int, base: int = 64) -> ipaddress.IPv4Interface:
    return ipaddress.IPv4Interface(f"10.{base + ((i >> 8) & 63)}.{i & 255}.1/24")


def synth_candidates(n: int) -> list[Any]:
    """``n`` peers, each with 2 endpoints (private node IP, public address) and 3 allowed IPs
    once §6.1 has built the spec (node IPv4 /32, pod /24, KubeSpan /128)."""
    from kubespan.peers import Endpoint, PeerCandidate

    base = int(ipaddress.IPv6Address("fd7f:175a:b97c:5602::"))
    out = []
    for i in range(n):
        node = ipaddress.IPv4Address(f"10.1.{i >> 8}.{i & 255}")
        public = ipaddress.IPv4Address(f"198.18.{i >> 8}.{i & 255}")
        out.append(
            PeerCandidate(
                node_id=f"node-{i:05d}",
                label=f"n{i}",
                public_key=_b64key(f"peer{i}"),
                kubespan_address=ipaddress.IPv6Address(base + 0x100 + i),
                addresses=(node,),
                additional_addresses=(_pod(i),),
                endpoints=(Endpoint(node, 51820), Endpoint(public, 51820)),
            )
        )
    return out


def device_of(wg: Any, handshake: float) -> Any:
    """The WireGuard device once ``wg`` (a LinkSpec's WireguardSpec) was applied, all peers with
    a session."""
    from netd.kernel.wireguard.model import PeerInfo, WireguardDevice, key_from_b64

    peers = [
        PeerInfo(
            public_key=key_from_b64(p.public_key),
            preshared_key=key_from_b64(p.preshared_key),
            endpoint=p.endpoint,
            persistent_keepalive=int(p.persistent_keepalive_interval.total_seconds()),
            allowed_ips=list(p.allowed_ips),
            last_handshake=handshake,
            rx_bytes=1000,
            tx_bytes=2000,
        )
        for p in wg.peers
    ]
    return WireguardDevice(private_key=key_from_b64(wg.private_key), listen_port=wg.listen_port,
                           fwmark=wg.firewall_mark, peers=peers)  # fmt: skip


@dataclass
class Timing:
    samples: list[float] = field(default_factory=list)  # seconds

    def time(self, fn: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        out = fn()
        self.samples.append(time.perf_counter() - t)
        return out

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p90(self) -> float:
        s = sorted(self.samples)
        return s[min(len(s) - 1, int(len(s) * 0.9))]


def prev_spec(result: Any, key: str) -> Any:
    """The allowed IPs the last pass published for ``key``."""
    link = next(iter(result.specs.links.values()))
    return next(p.allowed_ips for p in link.wireguard.peers if p.public_key == key)


def _dur(s: float) -> str:
    return f"{s * 1e6:.0f} µs" if s < 1e-3 else f"{s * 1e3:.2f} ms"


def part_a(args: argparse.Namespace) -> dict[str, Any]:
    """(a) the manager's own work for N peers: one peer changed, nothing changed, full rebuild."""
    import dataclasses
    import datetime as dt
    import gc

    from cosi.state import State
    from kubespan import constants as kc
    from kubespan import nft as knft
    from kubespan import reconcile
    from kubespan.controllers.manager import peer_spec
    from kubespan.peer_state import DevicePeer
    from kubespan.peers import build_peer_specs
    from kubespan.resources import KubeSpanPeerSpecSpec
    from kubespan.specs import LocalIdentity
    from netd.kernel.wireguard.diff import compute_diff
    from netd.resources.link import LINK_SPEC_TYPE

    n, reps = args.peers, args.reps
    cands = synth_candidates(n)
    built = build_peer_specs(cands)
    assert len(built.specs) == n and not built.warnings, built.warnings
    assert all(len(s.allowed_ips) == 3 and len(s.endpoints) == 2 for s in built.specs.values())
    psk = _b64key("cluster-secret")
    ident = LocalIdentity(address=ipaddress.IPv6Address("fd7f:175a:b97c:5602::1"), private_key=_b64key("me"))

    t0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    stagger = {k: i * REKEY / n for i, k in enumerate(sorted(built.specs))}

    def devices(statuses: Any, now: dt.datetime) -> dict[str, DevicePeer]:
        """What the manager reads from the device each pass (new objects, as parsed from the
        kernel): every peer had its first handshake 1 s after t0 and rekeys every REKEY s after
        that, staggered; its counters grow every KEEPALIVE s (keepalives), staggered too."""
        out = {}
        for k, s in statuses.items():
            age = (now - t0).total_seconds() - 1 - stagger[k]
            hs = t0 + dt.timedelta(seconds=1 + (stagger[k] + REKEY * (age // REKEY) if age >= REKEY else 0))
            ticks = int(((now - t0).total_seconds() + stagger[k]) // kc.KEEPALIVE)
            ep = s.endpoint and type(s.endpoint)(type(s.endpoint.ip)(int(s.endpoint.ip)), s.endpoint.port)
            out[k] = DevicePeer(endpoint=ep, last_handshake_time=hs, receive_bytes=1000 + 148 * ticks,
                                transmit_bytes=2000 + 148 * ticks)  # fmt: skip
        return out

    def run(specs: Any, statuses: Any, now: dt.datetime, dev: Any) -> Any:
        return reconcile.manager_pass(reconcile.PassInput(
            now=now, identity=ident, mtu=kc.DEFAULT_MTU, shared_secret=psk, force_routing=True,
            specs=specs, statuses=statuses, device=dev, keepalive=kc.KEEPALIVE))  # fmt: skip

    # The KubeSpanPeerSpec resources as stored (an unchanged one keeps its object: State.update),
    # and what controllers/manager.py makes of them on every pass: new PeerSpecs, equal values.
    resources = {k: KubeSpanPeerSpecSpec.of(p) for k, p in built.specs.items()}

    def from_resources() -> dict[str, Any]:
        return {k: p for k, r in resources.items() if (p := peer_spec(k, r)) is not None}

    # Warm-up to the steady state: a first pass (all peers new), then all up on their first endpoint.
    specs = from_resources()
    assert specs == built.specs
    now = t0
    first = run(specs, {}, now, {})
    prev = first
    for _ in range(2):  # the second pass is past ENDPOINT_CONNECTION_TIMEOUT
        now += dt.timedelta(seconds=kc.ENDPOINT_CONNECTION_TIMEOUT / 2 + 1)
        prev = run(from_resources(), prev.statuses, now, devices(prev.statuses, now))
    assert prev.specs is not None and all(str(s.state) == "up" for s in prev.statuses.values())
    link_id = next(iter(prev.specs.links))
    state = State()
    state.put("network-config", LINK_SPEC_TYPE, link_id, prev.specs.links[link_id])

    t_build, t_res, t_conv, t_pass, t_put, t_diff, t_nft, t_noop = (Timing() for _ in range(8))
    keys = sorted(specs)
    gc.collect()
    for j in range(reps):
        # One member changed: a pod CIDR never advertised before, for one peer.
        key = keys[(j * 37) % n]
        idx = next(x for x, c in enumerate(cands) if c.public_key == key)
        cands[idx] = dataclasses.replace(cands[idx], additional_addresses=(_pod(j, 128),))
        b = t_build.time(lambda: build_peer_specs(cands))
        out = t_res.time(lambda: {k: KubeSpanPeerSpecSpec.of(p) for k, p in b.specs.items()})  # noqa: B023
        resources[key] = out[key]
        specs = t_conv.time(from_resources)
        assert specs[key] == b.specs[key] != prev_spec(prev, key) and len(specs) == n
        assert prev.specs is not None
        device = device_of(prev.specs.links[link_id].wireguard, (now - dt.timedelta(seconds=20)).timestamp())
        now += dt.timedelta(seconds=1)
        dev_view = devices(prev.statuses, now)
        res = t_pass.time(lambda: run(specs, prev.statuses, now, dev_view))  # noqa: B023
        assert res.specs is not None
        link = res.specs.links[link_id]
        stored = t_put.time(lambda: state.put("network-config", LINK_SPEC_TYPE, link_id, link))  # noqa: B023
        assert stored.spec is link and link.wireguard is not None
        d = t_diff.time(lambda: compute_diff(link.wireguard, device, now=now.timestamp()))  # noqa: B023
        assert len(d.peers) == 1, d.peers

        def render() -> str:
            return knft.rendering_digest(knft.render_table(res.routed, kc.DEFAULT_MTU))  # noqa: B023

        t_nft.time(render)
        # Nothing changed: the same inputs a second later (the 30 s refresh, an unrelated event).
        now += dt.timedelta(seconds=1)
        dev_view, specs = devices(res.statuses, now), from_resources()
        prev = t_noop.time(lambda: run(specs, res.statuses, now, dev_view))  # noqa: B023
        assert prev.specs is not None and prev.routed == res.routed
        state.put("network-config", LINK_SPEC_TYPE, link_id, prev.specs.links[link_id])

    # Full rebuild: no previous statuses, nothing in the device (a start), caches cold.
    t_full, t_full_put = Timing(), Timing()
    for _ in range(max(3, reps // 10)):
        reconcile.clear_caches()
        fresh = State()
        gc.collect()
        full = t_full.time(lambda: run(specs, {}, now, {}))
        assert full.specs is not None
        full_link = full.specs.links[link_id]
        t_full_put.time(lambda: fresh.put("network-config", LINK_SPEC_TYPE, link_id, full_link))  # noqa: B023

    rows = [
        ("peers.build_peer_specs, N candidates (PeerSpecController)", t_build, None),
        ("  + KubeSpanPeerSpecSpec.of x N (controllers/, for scale)", t_res, None),
        ("  PeerSpec x N from the resources (controllers/manager.py)", t_conv, None),
        ("reconcile.manager_pass", t_pass, t_full),
        ("cosi State.put(LinkSpec with N peers): compare/store", t_put, t_full_put),
        ("wireguard diff.compute_diff vs device with N peers", t_diff, None),
        ("nft render_table + digest (KubeSpanTable.apply minus kernel)", t_nft, None),
    ]
    print(f"\n(a) KubeSpan manager, N={n} peers (2 endpoints, 3 allowed IPs each), no kernel; "
          f"median (p90) of {reps} changes, full rebuild: median of {len(t_full.samples)}")  # fmt: skip
    print(f"{'step':<64} {'one peer changed':>22} {'full rebuild':>13}")
    for what, one, full_t in rows:
        print(f"{what:<64} {_dur(one.median) + ' (' + _dur(one.p90) + ')':>22} "
              f"{_dur(full_t.median) if full_t else '':>13}")  # fmt: skip
    noop = f"{_dur(t_noop.median)} ({_dur(t_noop.p90)})"
    print(f"{'reconcile.manager_pass, nothing changed (refresh)':<64} {noop:>22}")
    manager = t_pass.median + t_put.median + t_diff.median + t_nft.median
    print(f"{'sum: pass + put + diff + nft (manager and link controller)':<64} {_dur(manager):>22}")
    met = t_pass.median * 1e3 < GOAL_A_MS
    print(f"goal manager_pass one peer changed < {GOAL_A_MS:.0f} ms: {'met' if met else 'NOT met'}"
          f" ({_dur(t_pass.median)}); with put + diff + nft: {_dur(manager)}")  # fmt: skip
    return {
        "part": "a",
        "peers": n,
        "reps": reps,
        "steps": {what.strip(): {"median_s": one.median, "p90_s": one.p90} for what, one, _ in rows},
        "pass_nothing_changed_s": t_noop.median,
        "full_rebuild_s": t_full.median,
        "full_rebuild_put_s": t_full_put.median,
    }


# ---- (b) the nft table: our libnftables JSON batch against nft -f -----------------------------------

GOAL_B_RATIO = 1.5


def routed_prefixes(n: int, variant: int = 0) -> Any:
    """``n`` prefixes, half IPv4 /24s, half IPv6 /64s, none adjacent (so nothing collapses);
    ``variant`` moves one prefix of each family (a set update)."""
    from kubespan.nft import RoutedSet

    h = n // 2
    v4 = [ipaddress.IPv4Network(((10 << 24) + (2 * i << 8), 24)) for i in range(h)]
    v6 = [ipaddress.IPv6Network(((0xFD00 << 112) + (2 * i << 64), 64)) for i in range(n - h)]
    if variant:
        v4[-1] = ipaddress.IPv4Network(((11 << 24) + (2 * variant << 8), 24))
        v6[-1] = ipaddress.IPv6Network(((0xFD01 << 112) + (2 * variant << 64), 64))
    return RoutedSet(tuple(v4), tuple(v6))


def nft_text(table_text: str) -> str:
    """The transaction :func:`kubespan.nft.build_batch` makes, as ``nft -f`` text: add and flush
    the table, flush both sets, then the table as ``nft list`` printed it (sets with their
    elements, chains with their rules)."""
    from kubespan import constants as kc

    t = f"{kc.NFT_FAMILY} {kc.NFT_TABLE}"
    return (
        f"add table {t}\nflush table {t}\n"
        f"add set {t} {kc.NFT_SET_IPV4} {{ type ipv4_addr; flags interval; }}\n"
        f"add set {t} {kc.NFT_SET_IPV6} {{ type ipv6_addr; flags interval; }}\n"
        f"flush set {t} {kc.NFT_SET_IPV4}\nflush set {t} {kc.NFT_SET_IPV6}\n" + table_text
    )


def b_inner(n: int, reps: int) -> dict[str, Any]:
    """Inside the bench's namespace: time our apply and ``nft -f`` of the same table."""
    import subprocess

    from kubespan import constants as kc
    from kubespan.nft import KubeSpanTable
    from netd.kernel.nftables import listing_digest

    mtu = kc.DEFAULT_MTU
    table = KubeSpanTable()
    routed = [routed_prefixes(n, v) for v in (0, 1)]
    texts = []
    digests = []
    for r in routed:  # the nft text of each table: as nft itself lists what we applied
        table.apply(r, mtu)
        listed = subprocess.run(["nft", "list", "table", kc.NFT_FAMILY, kc.NFT_TABLE], check=True,
                                capture_output=True, text=True).stdout  # fmt: skip
        texts.append(nft_text(listed))
        digests.append(listing_digest(table.backend.list_table()))
        table.teardown()
    files = []
    for i, text in enumerate(texts):
        path = Path(tempfile.gettempdir()) / f"kbench-{os.getpid()}-{i}.nft"
        path.write_text(text)
        files.append(path)

    def nft_f(i: int) -> None:
        subprocess.run(["nft", "-f", str(files[i])], check=True)

    def check(i: int) -> None:
        got = listing_digest(table.backend.list_table())
        assert got == digests[i], "nft -f and our apply left different tables"

    from netd.kernel.nft_tables import LibNftTable

    lib = LibNftTable(kc.NFT_FAMILY, kc.NFT_TABLE)
    t: dict[str, Timing] = {k: Timing() for k in (
        "ours create", "nft -f create", "ours update", "nft -f update", "libnftables text update",
        "ours steady", "render + digest", "list table", "listing digest")}  # fmt: skip
    try:
        for _ in range(reps):
            # Create: no table yet.
            table.teardown()
            table._rendered = None  # a write follows a change: the rendering is part of it
            t["ours create"].time(lambda: table.apply(routed[0], mtu))
            check(0)
            table.teardown()
            t["nft -f create"].time(lambda: nft_f(0))
            check(0)
            # Update: the table has the other set (one prefix per family differs); rewrite all.
            for i in (1, 0):
                table.teardown()
                nft_f(1 - i)
                table.adopt(None)
                table._rendered = None
                wrote = t["ours update"].time(lambda: table.apply(routed[i], mtu))  # noqa: B023
                assert wrote
                check(i)
                t["nft -f update"].time(lambda: nft_f(1 - i))  # noqa: B023
                check(1 - i)
                t["nft -f update"].time(lambda: nft_f(i))  # noqa: B023
                check(i)
                t["libnftables text update"].time(lambda: lib._ctx().cmd(texts[1 - i]))  # noqa: B023
                check(1 - i)
            # Steady state: nothing changed since our apply (one list, no write).
            table.apply(routed[0], mtu)
            wrote = t["ours steady"].time(lambda: table.apply(routed[0], mtu))
            assert not wrote
            from kubespan import nft as knft

            t["render + digest"].time(lambda: knft.rendering_digest(knft.render_table(routed[0], mtu)))
            listing = t["list table"].time(table.backend.list_table)
            t["listing digest"].time(lambda: listing_digest(listing))  # noqa: B023
    finally:
        table.teardown()
        for f in files:
            f.unlink(missing_ok=True)
    return {k: v.samples for k, v in t.items()}


def part_b(args: argparse.Namespace) -> dict[str, Any]:
    """(b) our apply of N prefixes against nft -f of the same table, in a fresh namespace."""
    import subprocess

    if os.geteuid() != 0:
        print("bench/kubespan.py (b): needs root (a network namespace)", file=sys.stderr)
        return {"part": "b", "skipped": "not root"}
    ns = f"kbench{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        out = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, str(Path(__file__).resolve()), "--inner-b",
             str(args.prefixes), "--b-reps", str(args.b_reps)],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    samples = json.loads(out.strip().splitlines()[-1])
    t = {k: Timing(v) for k, v in samples.items()}
    n = args.prefixes
    print(f"\n(b) nft table inet talos_kubespan with {n:,} prefixes ({n // 2:,} IPv4 /24, "
          f"{n - n // 2:,} IPv6 /64) in a fresh network namespace; median (p90) of "
          f"{len(t['ours create'].samples)} runs")  # fmt: skip
    print(f"{'what':<58} {'time':>22}")
    rows = [
        ("ours: KubeSpanTable.apply, no table yet (create)", "ours create"),
        ("nft -f, the same transaction as text (create)", "nft -f create"),
        ("ours: KubeSpanTable.apply, every set rewritten (update)", "ours update"),
        ("nft -f, the same transaction as text (update)", "nft -f update"),
        ("  libnftables in-process, the same text (update)", "libnftables text update"),
        ("ours: apply with nothing changed (steady state)", "ours steady"),
        ("  of which render_table + digest", "render + digest"),
        ("  of which list table (libnftables JSON)", "list table"),
        ("  of which listing digest", "listing digest"),
    ]
    for what, k in rows:
        print(f"{what:<58} {_dur(t[k].median) + ' (' + _dur(t[k].p90) + ')':>22}")
    create = t["ours create"].median / t["nft -f create"].median
    update = t["ours update"].median / t["nft -f update"].median
    print(f"ratio ours / nft -f: create {create:.2f}, update {update:.2f}")
    met = max(create, update) <= GOAL_B_RATIO
    print(f"goal <= {GOAL_B_RATIO}x nft -f at {n:,} prefixes: {'met' if met else 'NOT met'}")
    return {"part": "b", "prefixes": n, "ratio_create": create, "ratio_update": update,
            **{k: v.median for k, v in t.items()}}  # fmt: skip


#: One function per part.
PARTS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {"a": part_a, "b": part_b, "c": part_c}
#: What runs without ``--part``: (c) takes minutes.
DEFAULT_PARTS = ["a", "b"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--part", action="append", choices=sorted(PARTS), help="run only this part (repeatable)")
    ap.add_argument("--sizes", default="3,6,12", help="(c) cluster sizes, comma-separated (default 3,6,12)")
    ap.add_argument("--runs", type=int, default=1, help="(c) runs per size (medians in the plot)")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "bench-kubespan",
                    help="directory for the plots and JSON (default $TMPDIR/bench-kubespan)")  # fmt: skip
    ap.add_argument("--peers", type=int, default=1000, help="(a) synthetic peers (default 1000)")
    ap.add_argument("--reps", type=int, default=100, help="(a) one-peer changes timed (default 100)")
    ap.add_argument(
        "--prefixes", type=int, default=10_000, help="(b) prefixes in the two sets (default 10000)"
    )
    ap.add_argument("--b-reps", type=int, default=5, help="(b) runs per case (default 5)")
    ap.add_argument("--inner-b", type=int, help=argparse.SUPPRESS)
    ap.add_argument("-v", "--verbose", action="store_true", help="(c) per-node API and per-pair times")
    args = ap.parse_args(argv)
    if args.inner_b is not None:  # (b) inside its namespace
        print(json.dumps(b_inner(args.inner_b, args.b_reps)))
        return 0
    parts = args.part or DEFAULT_PARTS
    if "c" in parts:
        try:
            check_host()
        except ProvisionError as e:
            print(f"bench/kubespan.py: {e}", file=sys.stderr)
            return 1
    for part in parts:
        PARTS[part](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
