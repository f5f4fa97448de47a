"""`make demo`: four nodes in two sites behind NAT, meshed by KubeSpan, found through a discovery
service, and a machined restart that no peer notices.

1. `netctl cluster create --nodes 4 --sites 2 --kubespan` (through its Python API): each node
   is its own network/mount/UTS namespace running machined; each site is a switch behind a
   1:1 NAT router; the discovery service sits on the shared "internet" switch.
2. What a user would type to check it: `netctl get members`, `netctl get kubespanpeerstatuses`
   (every peer `up`), table 180 (`ip route show table 180` in a node, `netctl get routes`), and a
   ping from site 1 to site 2 over the KubeSpan addresses.
3. machined on one node is restarted (SIGTERM, start again: the kernel state stays) while every
   node's peer table is sampled every 0.2 s: a line per state change, a line per second.
4. `netctl cluster destroy`, always (also on error and Ctrl-C).

Default timers: nothing is shortened (no NETD_TUNABLES). The steps live in `demo/steps.py`,
which `tests/netns/test_demo.py` asserts on.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from demo import steps
from netctl.cluster import ClusterRecord, ProvisionError, destroy, node_command
from netctl.cluster.provision import check_host

RESTARTED = "n3"  # site 2; n1 (site 1) keeps watching it


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def show(record: ClusterRecord, started: float, ready: float) -> int:
    banner("members, as node n1 sees them (through the discovery service)")
    steps.wait_members(record)
    steps.show_netctl(record, "n1", "get", "members")

    banner("KubeSpan peers: every node should see the three others `up`")
    steps.wait_peers_up(record)
    print(
        f"(all 12 peer statuses up {time.monotonic() - ready:.1f} s after every machined answered "
        f"on its API, {time.monotonic() - started:.1f} s into the demo)"
    )
    for n in steps.node_names(record):
        steps.show_netctl(record, n, "get", "kubespanpeerstatuses")

    banner("table 180: what KubeSpan routes through the kubespan link (node n1)")
    steps.show_in_node(record, "n1", ["ip", "route", "show", "table", steps.KUBESPAN_TABLE])
    steps.show_in_node(record, "n1", ["ip", "-6", "route", "show", "table", steps.KUBESPAN_TABLE])
    steps.show_in_node(record, "n1", ["ip", "rule", "show"])
    print(f"$ {steps.shown_netctl(record, 'n1', 'get', 'routes')} | grep -e RoutingTable -e kubespan")
    out = steps.run(node_command(record, "n1", "get", "routes")).stdout
    print("\n".join(line for line in out.splitlines() if "RoutingTable" in line or "kubespan" in line))

    a, b = steps.cross_site_pair(record)
    banner(
        f"ping from {a} (site {steps.site_of(record, a)}) to {b} (site {steps.site_of(record, b)}) "
        "over KubeSpan"
    )
    steps.show_netctl(record, b, "get", "kubespanidentities")
    address = steps.kubespan_address(record, b)
    print(
        f"$ {steps.shown_in_node(record, a, ['ping', '-c', '3', '-i', '0.2', address])}    # a shell in {a}"
    )
    r = steps.ping(record, a, address)
    print((r.stdout + r.stderr).rstrip())
    if r.returncode != 0:
        print(f"demo: ping {a} -> {b} over KubeSpan failed", file=sys.stderr)
        return 1

    banner(f"restart machined on {RESTARTED}; peer tables of every node sampled every 0.2 s")
    print(
        "(what `netctl get kubespanpeerstatuses -w --endpoint <node's socket>` shows, for all nodes "
        "at once; a line per change, a table line per second; t = 0 at SIGTERM)"
    )
    rep = steps.watch_restart(record, RESTARTED, after=3.0)
    samples = sum(rep.samples.values())
    print(
        f"\n{RESTARTED}: old machined gone and new one started at {rep.stopped_at:.2f} s, "
        f"API answered at {_s(rep.api_at)}, all its peers up at {_s(rep.peers_up_at)}"
    )
    print(
        f"peer-table samples: {samples} on {len(rep.samples)} nodes; kernel samples in {RESTARTED}: "
        f"{len(rep.kernel)} (kubespan ifindex seen: {sorted(map(str, rep.ifindexes))}, "
        f"before: {rep.ifindex_before})"
    )
    ok = True
    if rep.not_up:
        ok = False
        print("PEERS WENT DOWN (or not up) during the restart:" if rep.downs else "PEERS LEFT `up`:")
        for c in rep.not_up:
            print(f"  {c.t:+.2f}s {c.observer}: {c.peer} {c.old} -> {c.new}")
    if rep.wg_missing:
        ok = False
        print(f"WireGuard peers missing in {RESTARTED} at: {[f'{t:+.2f}s' for t, _ in rep.wg_missing]}")
    if rep.ifindexes != {rep.ifindex_before}:
        ok = False
        print(f"the kubespan link of {RESTARTED} changed: {rep.ifindexes}")
    for e in rep.errors:
        ok = False
        print(f"error: {e}")
    if ok:
        print(
            "no peer went down (none left `up` on any node); "
            f"the kubespan link of {RESTARTED} kept its ifindex and its WireGuard peers were never removed"
        )
    else:
        print(f"\nlast lines of {RESTARTED}'s machined log ({record.node_dir(RESTARTED) / 'machined.log'}):")
        print(steps.machined_log_tail(record, RESTARTED))
    return 0 if ok else 1


def _s(t: float | None) -> str:
    return "never" if t is None else f"{t:.2f} s"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    started = time.monotonic()
    try:
        check_host()
    except ProvisionError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    name = f"demo{os.getpid()}"
    banner(f"netctl cluster create --name {name} --nodes 4 --sites 2 --kubespan")
    # SIGTERM (e.g. a CI timeout) tears down like Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    record: ClusterRecord | None = None
    rc = 1
    try:
        record = steps.make_cluster(name)
        print(f"(created in {time.monotonic() - started:.1f} s; state, configs and logs in {record.dir})")
        rc = show(record, started, time.monotonic())
    except KeyboardInterrupt:
        print("\ndemo: interrupted", file=sys.stderr)
        rc = 130
    except (ProvisionError, steps.DemoError) as e:
        print(f"demo: {e}", file=sys.stderr)
        if record is not None:
            for n in steps.node_names(record):
                print(
                    f"--- {n} machined log (tail)\n{steps.machined_log_tail(record, n, 15)}", file=sys.stderr
                )
    finally:
        banner(f"netctl cluster destroy --name {name}")
        # create() removes a half-made cluster itself; destroy() what a finished one left.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if record is not None:
                left = destroy(name)
                if left:
                    print(f"demo: not everything was removed: {left}", file=sys.stderr)
                    rc = rc or 1
                else:
                    print("removed every namespace, process, mount and file")
        finally:
            signal.signal(signal.SIGINT, previous)
        print(f"\ndemo took {time.monotonic() - started:.1f} s", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
