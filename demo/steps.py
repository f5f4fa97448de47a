"""The demo's steps as functions: `demo/__main__.py` prints them, `tests/netns/test_demo.py`
asserts on them, `bench/kubespan.py` times them. Nothing here parses printed output: the
cluster is driven through `netctl.cluster`, machined is asked through `netctl.client`.

Observation helpers return data; the functions that print take a ``say`` callback (default:
print), so a test can stay quiet.
"""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from netctl.cluster import ClusterRecord, create, enter_node, node_command, restart_machined
from netctl.cluster.provision import api_answers, is_running
from netctl.cluster.state import ROLE_HOLDER, ROLE_MACHINED

Say = Callable[[str], None]

MEMBERS = "members"
PEER_STATUSES = "kubespanpeerstatuses"
IDENTITIES = "kubespanidentities"
KUBESPAN_LINK = "kubespan"
KUBESPAN_TABLE = "180"
UP = "up"
DOWN = "down"
GONE = "(gone)"  # a peer status that disappeared: as bad as down for "no peer goes down"
NO_API = "(no API)"  # the observer's own machined did not answer (the restarted node)


class DemoError(RuntimeError):
    """A step that did not give what the demo promises (the message says what it saw)."""


def _print(line: str) -> None:
    print(line, flush=True)


# ---- the cluster ------------------------------------------------------------------------------


def make_cluster(
    name: str,
    *,
    nodes: int = 4,
    sites: int = 2,
    state_dir: Path | None = None,
    env: dict[str, str] | None = None,
    say: Say = _print,
) -> ClusterRecord:
    """`netctl cluster create --name NAME --nodes 4 --sites 2 --kubespan`, through the API."""
    return create(name, nodes, sites, True, state_dir, env=env, progress=lambda s: say(f"  {s}"))


def node_names(record: ClusterRecord) -> list[str]:
    return [n.name for n in record.plan.nodes]


def site_of(record: ClusterRecord, node: str) -> int:
    return record.plan.node(node).site


# ---- commands, as a user would type them --------------------------------------------------------


def shown_netctl(record: ClusterRecord, node: str, *args: str) -> str:
    """The netctl command line a user types for `node` (``netctl``, not the venv's path)."""
    argv = node_command(record, node, *args)
    return shlex.join(["netctl", *argv[1:]])


def shown_in_node(record: ClusterRecord, node: str, argv: Sequence[str]) -> str:
    holder = record.process(ROLE_HOLDER, node)
    enter = f"nsenter -t {holder.pid} --net --mount --uts " if holder else ""
    return f"{enter}{shlex.join(argv)}"


def run(argv: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False
    )


def show_netctl(record: ClusterRecord, node: str, *args: str, say: Say = _print) -> str:
    """Print `$ netctl ARGS --endpoint ...` and its output; return the output."""
    say(f"$ {shown_netctl(record, node, *args)}")
    r = run(node_command(record, node, *args))
    out = (r.stdout + r.stderr).rstrip()
    say(out)
    return out


def show_in_node(record: ClusterRecord, node: str, argv: Sequence[str], say: Say = _print) -> str:
    say(f"$ {shown_in_node(record, node, argv)}    # a shell in {node}")
    r = run(enter_node(record, node, argv))
    out = (r.stdout + r.stderr).rstrip()
    say(out)
    return out


# ---- machined's view, through its API -----------------------------------------------------------


def _list(record: ClusterRecord, node: str, type_: str) -> list[tuple[dict[str, object], dict[str, object]]]:
    from netctl.client import Client

    with Client(str(record.api_socket(node))) as c:
        return c.list(type_)[2]


def members(record: ClusterRecord, node: str) -> list[str]:
    return sorted(str(md["id"]) for md, _ in _list(record, node, MEMBERS))


def peer_states(record: ClusterRecord, node: str) -> dict[str, str]:
    """Peer label (the node name) -> state (``up``, ``down``, ``unknown``) as `node` sees it."""
    return {
        str(spec.get("label") or md["id"]): str(spec.get("state"))
        for md, spec in _list(record, node, PEER_STATUSES)
    }


def kubespan_address(record: ClusterRecord, node: str) -> str:
    """The node's KubeSpan IP (KubeSpanIdentity spec.address without its /128)."""
    for _, spec in _list(record, node, IDENTITIES):
        address = str(spec.get("address") or "")
        if address:
            return address.split("/", 1)[0]
    raise DemoError(f"{node} has no KubeSpan identity yet")


def all_peers_up(record: ClusterRecord, nodes: Sequence[str] | None = None) -> dict[str, dict[str, str]]:
    """Every node's peer table; raises nothing (a node that does not answer maps to {})."""
    from netctl.client import ClientError

    tables: dict[str, dict[str, str]] = {}
    for n in nodes or node_names(record):
        try:
            tables[n] = peer_states(record, n)
        except ClientError:
            tables[n] = {}
    return tables


def mesh_complete(record: ClusterRecord, tables: dict[str, dict[str, str]]) -> bool:
    names = set(node_names(record))
    return (
        all(set(t) == names - {n} and all(s == UP for s in t.values()) for n, t in tables.items())
        and set(tables) == names
    )


def wait_peers_up(record: ClusterRecord, timeout: float = 45.0, poll: float = 0.2) -> float:
    """Wait until every node has every other node as a peer in state ``up``; the seconds it took."""
    start = time.monotonic()
    tables: dict[str, dict[str, str]] = {}
    while time.monotonic() - start < timeout:
        tables = all_peers_up(record)
        if mesh_complete(record, tables):
            return time.monotonic() - start
        time.sleep(poll)
    raise DemoError(f"peers not all up within {timeout:.0f} s: {tables}")


def wait_members(record: ClusterRecord, timeout: float = 30.0) -> float:
    from netctl.client import ClientError

    start = time.monotonic()
    want = sorted(node_names(record))
    seen: dict[str, list[str]] = {}
    while time.monotonic() - start < timeout:
        for n in want:
            with contextlib.suppress(ClientError):
                seen[n] = members(record, n)
        if all(seen.get(n) == want for n in want):
            return time.monotonic() - start
        time.sleep(0.2)
    raise DemoError(f"members not complete within {timeout:.0f} s: {seen}")


def cross_site_pair(record: ClusterRecord) -> tuple[str, str]:
    """The first node of site 1 and the last node of the last site."""
    nodes = record.plan.nodes
    a = nodes[0]
    b = next(n for n in reversed(nodes) if n.site != a.site)
    return a.name, b.name


def ping(record: ClusterRecord, node: str, address: str, count: int = 3) -> subprocess.CompletedProcess[str]:
    return run(enter_node(record, node, ["ping", "-c", str(count), "-i", "0.2", "-W", "2", address]))


# ---- the kernel's view inside a node ---------------------------------------------------------------


def link_index(record: ClusterRecord, node: str, link: str = KUBESPAN_LINK) -> int | None:
    r = run(enter_node(record, node, ["cat", f"/sys/class/net/{link}/ifindex"]))
    return int(r.stdout) if r.returncode == 0 and r.stdout.strip().isdigit() else None


def wg_peers(record: ClusterRecord, node: str, link: str = KUBESPAN_LINK) -> set[str] | None:
    """The public keys `wg show LINK peers` lists in `node`; None when wg could not ask."""
    r = run(enter_node(record, node, ["wg", "show", link, "peers"]))
    return set(r.stdout.split()) if r.returncode == 0 else None


def machined_log_tail(record: ClusterRecord, node: str, lines: int = 40) -> str:
    try:
        text = (record.node_dir(node) / "machined.log").read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


# ---- a machined restart, watched ------------------------------------------------------------------


@dataclass
class Change:
    t: float  # seconds since SIGTERM
    observer: str
    peer: str
    old: str
    new: str


@dataclass
class KernelSample:
    t: float
    ifindex: int | None
    wg_peers: set[str] | None


@dataclass
class RestartReport:
    node: str
    observers: list[str]
    stopped_at: float = 0.0  # s after SIGTERM when the old machined was gone
    api_at: float | None = None  # s after SIGTERM when the new machined's API answered
    peers_up_at: float | None = None  # s after SIGTERM when the restarted node saw all peers up
    changes: list[Change] = field(default_factory=list)
    samples: dict[str, int] = field(default_factory=dict)  # observer -> peer-table samples taken
    kernel: list[KernelSample] = field(default_factory=list)
    ifindex_before: int | None = None
    wg_peers_before: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)

    @property
    def downs(self) -> list[Change]:
        """Every peer that went down or vanished, on any node (the restarted one included,
        once its API is back: ``unknown`` while it relearns is not down)."""
        return [c for c in self.changes if c.new in (DOWN, GONE)]

    @property
    def not_up(self) -> list[Change]:
        """Every change to a state other than ``up``: a peer going down, vanishing, turning
        ``unknown``, or — on the restarted node — coming back judged afresh instead of resumed
        (decisions.md "Restarts": a session with a recent handshake continues, no ``unknown``)."""
        return [c for c in self.changes if c.new != UP]

    @property
    def ifindexes(self) -> set[int | None]:
        return {s.ifindex for s in self.kernel}

    @property
    def wg_missing(self) -> list[tuple[float, set[str] | None]]:
        """Samples where `wg show` failed or lacked a peer that was there before the restart."""
        return [
            (s.t, None if s.wg_peers is None else self.wg_peers_before - s.wg_peers)
            for s in self.kernel
            if s.wg_peers is None or not self.wg_peers_before <= s.wg_peers
        ]


def _fmt_table(table: dict[str, str] | None) -> str:
    if table is None:
        return NO_API
    return " ".join(f"{p}={s}" for p, s in sorted(table.items())) or "(none)"


def watch_restart(
    record: ClusterRecord,
    node: str,
    *,
    before: float = 1.0,
    after: float = 2.0,
    timeout: float = 30.0,
    poll: float = 0.2,
    env: dict[str, str] | None = None,
    say: Say = _print,
) -> RestartReport:
    """Restart `node`'s machined (SIGTERM, start again) while every node's peer table is sampled
    every `poll` s, and `node`'s kubespan ifindex and `wg show kubespan peers` as often as a
    subprocess allows. Watches `before` s first, then until the restarted node sees all its
    peers up again (or `timeout`), then `after` s more. Prints a line per change and a table
    line per second; returns everything it saw."""
    from netctl.client import ClientError

    names = node_names(record)
    observers = [n for n in names if n != node]
    rep = RestartReport(node=node, observers=observers)
    rep.ifindex_before = link_index(record, node)
    rep.wg_peers_before = wg_peers(record, node) or set()
    lock = threading.Lock()
    stop = threading.Event()
    t0 = time.monotonic() + before  # SIGTERM time; negative t = baseline
    tables: dict[str, dict[str, str] | None] = {}

    def now() -> float:
        return time.monotonic() - t0

    def observe(observer: str) -> None:
        last: dict[str, str] | None = None
        while not stop.is_set():
            try:
                table: dict[str, str] | None = peer_states(record, observer)
            except ClientError:
                table = None
            t = now()
            with lock:
                rep.samples[observer] = rep.samples.get(observer, 0) + 1
                tables[observer] = table
                if table is not None and last is not None:
                    for peer in sorted(set(last) | set(table)):
                        old, new = last.get(peer, GONE), table.get(peer, GONE)
                        if old != new:
                            rep.changes.append(Change(t, observer, peer, old, new))
                            what = f"appears: {new}" if old == GONE else f"{old} -> {new}"
                            say(f"  {t:+6.2f}s  {observer}: peer {peer} {what}")
                if table is None and last is not None:
                    say(f"  {t:+6.2f}s  {observer}: API does not answer")
                if table is not None and last is None and observer == node and t > 0:
                    say(f"  {t:+6.2f}s  {observer}: API answers, peers {_fmt_table(table)}")
            if table is not None:
                last = table
            elif observer == node:
                last = None  # the restarted node starts from scratch: its new statuses are news
            stop.wait(poll)

    def sample_kernel() -> None:
        while not stop.is_set():
            idx, peers = link_index(record, node), wg_peers(record, node)
            s = KernelSample(now(), idx, peers)
            with lock:
                rep.kernel.append(s)
                if idx != rep.ifindex_before:
                    say(f"  {s.t:+6.2f}s  {node}: kubespan ifindex {rep.ifindex_before} -> {idx}")
                if peers is None or not rep.wg_peers_before <= peers:
                    say(f"  {s.t:+6.2f}s  {node}: wg show kubespan peers: {sorted(peers or [])}")
            stop.wait(0.05)

    def ticker() -> None:
        while not stop.wait(1.0):
            with lock:
                line = "  ".join(f"{o}[{_fmt_table(tables.get(o))}]" for o in names if o in tables)
                say(f"  {now():+6.2f}s  {line}")

    threads = [threading.Thread(target=observe, args=(o,), daemon=True) for o in names]
    threads += [
        threading.Thread(target=sample_kernel, daemon=True),
        threading.Thread(target=ticker, daemon=True),
    ]
    for th in threads:
        th.start()
    try:
        time.sleep(max(0.0, t0 - time.monotonic()))
        say(f"  {now():+6.2f}s  {node}: SIGTERM to machined")
        proc = record.process(ROLE_MACHINED, node)
        restart_machined(record, node, env=env)
        new = record.process(ROLE_MACHINED, node)
        rep.stopped_at = now()  # restart_machined returns once the old one is gone and the new spawned
        say(
            f"  {rep.stopped_at:+6.2f}s  {node}: old machined (pid {proc.pid if proc else '?'}) exited, "
            f"new one started (pid {new.pid if new else '?'})"
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if rep.api_at is None and api_answers(record.api_socket(node)):
                rep.api_at = now()
            if new is not None and not is_running(new):
                rep.errors.append(f"the new machined on {node} exited:\n{machined_log_tail(record, node)}")
                break
            with lock:
                table = tables.get(node)
                if (
                    rep.api_at is not None
                    and table is not None
                    and set(table) == set(observers)
                    and all(s == UP for s in table.values())
                ):
                    rep.peers_up_at = now()
                    break
            time.sleep(poll / 2)
        if rep.peers_up_at is None and not rep.errors:
            rep.errors.append(
                f"{node} did not see all its peers up within {timeout:.0f} s: {tables.get(node)}"
            )
        else:
            say(f"  {now():+6.2f}s  {node}: all peers up again")
        time.sleep(after)
    finally:
        stop.set()
        for th in threads:
            th.join(timeout=10)
    return rep
