"""AddressSpecController and RouteSpecController against a real kernel (netd.md §5.2, §5.3).

The controllers run in ``addr_route_runner.py`` inside a node (a cosi Runtime
fed with specs over stdin); the tests assert on ``ip -j`` output and on what
``ip monitor`` sees while the controllers run.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Lab, Node, wait_until

RUNNER = str(Path(__file__).with_name("addr_route_runner.py"))
INFINITE = 4294967295

A4 = {
    "address": "192.0.2.10/24",
    "linkName": "eth0",
    "family": "inet4",
    "scope": "global",
    "flags": "permanent",
}
A6 = {
    "address": "2001:db8:1::10/64",
    "linkName": "eth0",
    "family": "inet6",
    "scope": "global",
    "flags": "permanent,nodad",
}


def route(
    family: str,
    dst: str = "",
    gw: str = "",
    *,
    metric: int = 1024,
    src: str = "",
    mtu: int = 0,
    table: str = "main",
    proto: str = "static",
    link: str = "eth0",
) -> dict[str, Any]:
    return {
        "family": family,
        "dst": dst,
        "src": src,
        "gateway": gw,
        "outLinkName": link,
        "table": table,
        "priority": metric,
        "scope": "global" if gw else "link",
        "type": "unicast",
        "protocol": proto,
        "mtu": mtu,
    }


R_DEFAULT4 = route("inet4", gw="192.0.2.1")
R_METRIC = route("inet4", "198.51.100.0/24", "192.0.2.1", metric=50, src="192.0.2.10", mtu=1400)
R_ONLINK = route("inet4", "203.0.113.1/32", src="192.0.2.10")  # the /32 to an off-subnet gateway
R_VIA_ONLINK = route("inet4", "10.20.0.0/16", "203.0.113.1")
R_TABLE = route("inet4", "10.244.0.0/16", "192.0.2.1", metric=1, table="RoutingTable(180)", proto="boot")
R_DEFAULT6 = route("inet6", gw="2001:db8:1::1")
R_ONLINK6 = route("inet6", "2001:db8:ff::1/128", mtu=1400)
R_VIA_ONLINK6 = route("inet6", "2001:db8:3::/64", "2001:db8:ff::1")
ALL_ROUTES = [R_DEFAULT4, R_METRIC, R_ONLINK, R_VIA_ONLINK, R_TABLE, R_DEFAULT6, R_ONLINK6, R_VIA_ONLINK6]

# What `ip -j route show table all` prints for them (normalised by `our_routes`).
EXPECTED_ROUTES = {
    ("default", "192.0.2.1", "main", 1024, "static", "global", "", 0),
    ("198.51.100.0/24", "192.0.2.1", "main", 50, "static", "global", "192.0.2.10", 1400),
    ("203.0.113.1", "", "main", 1024, "static", "link", "192.0.2.10", 0),
    ("10.20.0.0/16", "203.0.113.1", "main", 1024, "static", "global", "", 0),
    ("10.244.0.0/16", "192.0.2.1", "180", 1, "boot", "global", "", 0),
    ("default", "2001:db8:1::1", "main", 1024, "static", "global", "", 0),
    ("2001:db8:ff::1", "", "main", 1024, "static", "global", "", 1400),
    ("2001:db8:3::/64", "2001:db8:ff::1", "main", 1024, "static", "global", "", 0),
}


class Runner:
    """The controllers in a node, fed with desired spec sets over stdin."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.log = open(node.log_dir / "runner.log", "a")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            node.wrap([sys.executable, RUNNER, str(node.state_dir)]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            start_new_session=True,
        )

    def apply(
        self,
        addresses: list[dict[str, Any]],
        routes: list[dict[str, Any]],
        rules: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        cmd = {"addresses": addresses, "routes": routes, "rules": rules or []}
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            pytest.fail(f"runner died: {(self.node.log_dir / 'runner.log').read_text()}")
        out: dict[str, Any] = json.loads(line)
        assert out["restarts"] == {}, self.logs()
        return out

    def logs(self) -> str:
        self.log.flush()
        return (self.node.log_dir / "runner.log").read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()


@pytest.fixture
def node(lab: Lab) -> Node:
    n = lab.node("n")
    lab.stub(n, "eth0")
    wait_dad(n, "eth0")
    return n


def wait_dad(node: Node, ifname: str) -> None:
    """Wait until the kernel's own IPv6 link-local address finished DAD: its events
    would otherwise show up in the monitor of an idempotence check."""
    wait_until(
        lambda: (
            not any(
                a.get("tentative")
                for link in node.ip_json("addr", "show", "dev", ifname)
                for a in link["addr_info"]
            )
        ),
        timeout=10,
        what=f"DAD on {ifname}",
    )
    time.sleep(0.1)


@pytest.fixture
def runners(node: Node) -> Iterator[list[Runner]]:
    started: list[Runner] = []
    yield started
    for r in started:
        r.stop()


def start(node: Node, runners: list[Runner]) -> Runner:
    r = Runner(node)
    runners.append(r)
    return r


class Monitor:
    """`ip monitor address route` in the node, to prove that nothing was written."""

    def __init__(self, node: Node) -> None:
        self.path = node.log_dir / f"monitor.{time.monotonic_ns()}.log"
        # stderr: ip complains about the stub's netns reference, which it cannot resolve here
        self.proc = node.popen(
            ["ip", "-ts", "monitor", "address", "route"], log=self.path, stderr=subprocess.DEVNULL
        )
        wait_until(lambda: _monitor_running(node), timeout=10, what="ip monitor started")
        time.sleep(0.2)

    def stop(self) -> list[str]:
        time.sleep(0.3)  # let late events arrive
        self.proc.terminate()
        self.proc.wait(timeout=10)
        return [line for line in self.path.read_text().splitlines() if line.strip()]


def _monitor_running(node: Node) -> bool:
    return "monitor" in node.run(["ps", "-eo", "args"]).stdout


def addresses(node: Node, ifname: str = "eth0") -> dict[str, dict[str, Any]]:
    """Global-scope addresses of a link by "ip/prefixlen"."""
    links = node.ip_json("addr", "show", "dev", ifname)
    out = {}
    for a in links[0]["addr_info"] if links else []:
        if a["scope"] != "link":
            out[f"{a['local']}/{a['prefixlen']}"] = a
    return out


def our_routes(node: Node) -> set[tuple[str, str, str, int, str, str, str, int]]:
    """Every route not added by the kernel itself, as comparable tuples
    (dst, gateway, table, metric, protocol, scope, prefsrc, mtu)."""
    out = set()
    for r in node.ip_json("route", "show", "table", "all"):
        proto = r.get("protocol", "boot")
        if proto == "kernel":
            continue
        mtu = 0
        for m in r.get("metrics", []):
            if isinstance(m, dict) and "mtu" in m:
                mtu = m["mtu"]
        out.add(
            (
                r["dst"],
                r.get("gateway", ""),
                r.get("table", "main"),
                r.get("metric", 0),
                proto,
                r.get("scope", "global"),
                r.get("prefsrc", ""),
                mtu,
            )
        )
    return out


def test_static_addresses_and_routes_then_idempotent(node: Node, runners: list[Runner]) -> None:
    t0 = time.monotonic()
    first = start(node, runners)
    out = first.apply([A4, A6], ALL_ROUTES)
    applied_at = time.monotonic() - t0
    assert all(s["finalizers"] for s in out["specs"].values())
    assert len(out["applied"]["route"]) == len(ALL_ROUTES)
    addrs = addresses(node)
    assert set(addrs) == {"192.0.2.10/24", "2001:db8:1::10/64"}
    v4, v6 = addrs["192.0.2.10/24"], addrs["2001:db8:1::10/64"]
    assert v4["broadcast"] == "192.0.2.255" and v4["scope"] == "global"
    assert v4["valid_life_time"] == INFINITE and not v4.get("dynamic")
    assert v6.get("nodad") is True and not v6.get("tentative") and v6["valid_life_time"] == INFINITE
    assert our_routes(node) == EXPECTED_ROUTES

    # Another reconcile (a link event triggers both controllers) writes nothing.
    mon = Monitor(node)
    node.sh("ip link add x0 type veth peer name x1")
    time.sleep(0.3)
    again = first.apply([A4, A6], ALL_ROUTES)
    assert mon.stop() == []
    assert all(again["reconciles"][c] > out["reconciles"][c] for c in out["reconciles"]), again

    # A restart over the same kernel state (applied.json kept): adopts everything.
    first.stop()
    mon = Monitor(node)
    t1 = time.monotonic()
    start(node, runners).apply([A4, A6], ALL_ROUTES)
    restart_at = time.monotonic() - t1
    assert mon.stop() == []
    assert our_routes(node) == EXPECTED_ROUTES
    print(f"first apply {applied_at:.2f}s, restart {restart_at:.2f}s")


def test_removed_specs_leave_foreign_objects_stay(node: Node, runners: list[Runner]) -> None:
    r = start(node, runners)
    r.apply([A4, A6], [R_DEFAULT4, R_METRIC, R_TABLE, R_DEFAULT6])
    # Foreign objects: an address and routes added by hand, one of them with our protocol.
    node.sh(
        "ip addr add 192.0.2.99/24 dev eth0\n"
        "ip route add 10.99.0.0/16 via 192.0.2.1 proto static\n"
        "ip route add 10.98.0.0/16 via 192.0.2.1 metric 7 table 180\n"
    )
    foreign = {
        ("10.99.0.0/16", "192.0.2.1", "main", 0, "static", "global", "", 0),
        ("10.98.0.0/16", "192.0.2.1", "180", 7, "boot", "global", "", 0),
    }
    out = r.apply([A4], [R_DEFAULT4, R_TABLE])  # A6, R_METRIC and R_DEFAULT6 go away
    assert set(out["specs"]) == {
        "eth0/192.0.2.10/24",
        "inet4/192.0.2.1//1024",
        "RoutingTable(180)/inet4/192.0.2.1/10.244.0.0/16/1",
    }
    assert set(addresses(node)) == {"192.0.2.10/24", "192.0.2.99/24"}
    assert our_routes(node) == foreign | {
        ("default", "192.0.2.1", "main", 1024, "static", "global", "", 0),
        ("10.244.0.0/16", "192.0.2.1", "180", 1, "boot", "global", "", 0),
    }
    assert out["applied"] == {
        "address": ["eth0/192.0.2.10/24"],
        "route": ["RoutingTable(180)/inet4/192.0.2.1/10.244.0.0/16/1", "inet4/192.0.2.1//1024"],
    }

    # Restart with a changed desired set: what applied.json recorded and the new set lacks goes;
    # what stays wanted is not rewritten; the foreign objects stay.
    r.stop()
    mon = Monitor(node)
    out = start(node, runners).apply([A4], [R_DEFAULT4])
    events = mon.stop()
    assert out["applied"] == {"address": ["eth0/192.0.2.10/24"], "route": ["inet4/192.0.2.1//1024"]}
    assert set(addresses(node)) == {"192.0.2.10/24", "192.0.2.99/24"}
    assert our_routes(node) == foreign | {("default", "192.0.2.1", "main", 1024, "static", "global", "", 0)}
    assert len(events) == 1 and "Deleted" in events[0] and "10.244.0.0/16" in events[0], events


def test_spec_for_a_link_that_appears_later(lab: Lab, node: Node, runners: list[Runner]) -> None:
    a = {**A4, "address": "192.0.2.20/24", "linkName": "eth1"}
    a6 = {**A6, "address": "2001:db8:9::20/64", "linkName": "eth1"}
    rt = route("inet4", "10.30.0.0/16", "192.0.2.1", link="eth1")
    rt6 = route("inet6", "2001:db8:7::/64", "2001:db8:9::1", link="eth1")
    r = start(node, runners)
    out = r.apply([A4, a, a6], [rt, rt6])
    assert all(s["finalizers"] for s in out["specs"].values())
    assert node.ip("link", "show", "eth1", check=False).returncode != 0
    assert set(addresses(node)) == {"192.0.2.10/24"}
    t0 = time.monotonic()
    lab.stub(node, "eth1")
    wait_until(
        lambda: (
            set(addresses(node, "eth1")) == {"192.0.2.20/24", "2001:db8:9::20/64"}
            and {x[0] for x in our_routes(node)} >= {"10.30.0.0/16", "2001:db8:7::/64"}
        ),
        timeout=10,
        what="addresses and routes on the new link",
    )
    # (the IPv6 gateway route may have needed a retry: its gateway is reachable only once
    # the address controller added the address and with it the prefix route)
    print(f"applied {time.monotonic() - t0:.2f}s after the link appeared")


def _ts(seconds: int) -> str:
    t = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_lease_lifetimes(node: Node, runners: list[Runner]) -> None:
    lease4 = {**A4, "validUntil": _ts(3600), "preferredUntil": _ts(1800)}
    lease6 = {**A6, "validUntil": _ts(600)}  # preferred follows valid
    r = start(node, runners)
    r.apply([lease4, lease6], [])
    v4, v6 = addresses(node)["192.0.2.10/24"], addresses(node)["2001:db8:1::10/64"]
    assert 3590 <= v4["valid_life_time"] <= 3600 and 1790 <= v4["preferred_life_time"] <= 1800
    assert v4.get("dynamic") is True
    assert 590 <= v6["valid_life_time"] <= 600 and v6["preferred_life_time"] <= v6["valid_life_time"]
    time.sleep(1.2)  # the kernel's counters move on; the spec did not change

    mon = Monitor(node)
    r.apply([lease4, lease6], [])
    assert mon.stop() == []

    # A restart adopts them too (the remaining times still agree with the spec).
    r.stop()
    mon = Monitor(node)
    r = start(node, runners)
    r.apply([lease4, lease6], [])
    assert mon.stop() == []

    # A renewal (the spec changes) updates the lifetimes in place: no delete.
    renewed = {**lease4, "validUntil": _ts(7200), "preferredUntil": _ts(3600)}
    renewed6 = {**lease6, "validUntil": _ts(900), "preferredUntil": _ts(300)}
    mon = Monitor(node)
    r.apply([renewed, renewed6], [])
    events = mon.stop()
    assert events and not any("Deleted" in e for e in events), events
    v4, v6 = addresses(node)["192.0.2.10/24"], addresses(node)["2001:db8:1::10/64"]
    assert 7190 <= v4["valid_life_time"] <= 7200 and 3590 <= v4["preferred_life_time"] <= 3600
    assert 890 <= v6["valid_life_time"] <= 900 and 290 <= v6["preferred_life_time"] <= 300
    assert v6.get("nodad") is True

    # A lease-less spec again: the address becomes permanent.
    r.apply([A4, A6], [])
    assert addresses(node)["192.0.2.10/24"]["valid_life_time"] == INFINITE
    assert addresses(node)["2001:db8:1::10/64"]["valid_life_time"] == INFINITE


def test_announce_with_arp_sends_one_gratuitous_arp(lab: Lab, runners: list[Runner]) -> None:
    n = lab.node("v")
    stub = lab.stub(n, "eth0", mac="02:00:00:00:00:0a")
    capture = lab.dir / "arp.log"
    dump = stub.popen(["tcpdump", "-n", "-l", "-e", "-i", "eth0", "arp"], log=capture)
    wait_until(lambda: "listening on" in capture.read_text(), timeout=10, what="tcpdump ready")
    vip = {**A4, "address": "192.0.2.50/32", "announceWithARP": True}
    r = start(n, runners)
    r.apply([A4, vip], [])
    wait_until(lambda: "192.0.2.50" in capture.read_text(), timeout=5, what="gratuitous ARP")
    r.apply([A4, vip], [])  # steady state: no second announcement
    time.sleep(0.3)
    dump.terminate()
    dump.wait(timeout=10)
    lines = [line for line in capture.read_text().splitlines() if "ARP" in line]
    assert len(lines) == 1, lines
    assert "02:00:00:00:00:0a > ff:ff:ff:ff:ff:ff" in lines[0]
    assert "Request who-has 192.0.2.50 (ff:ff:ff:ff:ff:ff) tell 192.0.2.50" in lines[0]
    assert "192.0.2.10" not in capture.read_text()  # only the address that asks for it


def test_replacing_a_primary_address_restores_its_secondaries(node: Node, runners: list[Runner]) -> None:
    primary = {**A4, "address": "192.0.2.5/24"}
    secondary = {**A4, "address": "192.0.2.10/24"}  # its ID sorts before the primary's
    r = start(node, runners)
    r.apply([primary], [])
    r.apply([primary, secondary], [])
    v4 = [a for a in node.ip_json("-4", "addr", "show", "dev", "eth0")[0]["addr_info"]]
    assert [a["local"] for a in v4] == ["192.0.2.5", "192.0.2.10"]
    assert v4[1].get("secondary") is True
    # A flag change replaces the primary (delete + add); the kernel drops the secondary with it.
    r.apply([{**primary, "flags": "permanent,noprefixroute"}, secondary], [])
    wait_until(
        lambda: set(addresses(node)) == {"192.0.2.5/24", "192.0.2.10/24"},
        timeout=5,
        what="both addresses back",
    )
    flags = {a["local"]: a for a in node.ip_json("-4", "addr", "show", "dev", "eth0")[0]["addr_info"]}
    assert flags["192.0.2.5"].get("noprefixroute") is True


def test_a_route_the_kernel_keeps_differently_is_not_rewritten_forever(
    node: Node, runners: list[Runner]
) -> None:
    notify = {**route("inet4", "10.1.0.0/16", "192.0.2.1", metric=10), "flags": "notify"}  # not kept
    unspec6 = route("inet6", "2001:db8:5::/64", metric=10, proto="unspec")  # stored as boot
    r = start(node, runners)
    r.apply([A4], [notify, unspec6])
    assert {x[0] for x in our_routes(node)} == {"10.1.0.0/16", "2001:db8:5::/64"}
    mon = Monitor(node)
    r.apply([A4], [notify, unspec6])
    time.sleep(0.5)
    assert mon.stop() == []
    assert r.logs().count("10.1.0.0/16 via 192.0.2.1 oif") == 1, r.logs()


def test_thousands_of_routes_one_batch_and_a_burst_of_events_costs_few_passes(
    node: Node, runners: list[Runner]
) -> None:
    """2,000 route specs go to the kernel in one batch; the 2,000 events that batch
    causes, and a burst of 2,000 foreign route events, each cost a pass or two (the
    watch drains without decoding and coalesces), and those passes write nothing."""
    n = 2000
    node.sh("ip addr add 192.0.2.10/24 dev eth0")
    specs = [
        route("inet4", f"10.{i >> 8}.{i & 255}.0/24", "192.0.2.1", table="RoutingTable(100)")
        for i in range(n)
    ]
    r = start(node, runners)
    out = r.apply([A4], specs)
    assert len(node.ip_json("route", "show", "table", "100")) == n
    assert len(out["applied"]["route"]) == n and out["applied"]["address"] == []  # A4: adopted
    passes = out["reconciles"]["network.RouteSpecController"]
    assert passes <= 3, out["reconciles"]  # 2: the batch, then one for its own events
    assert "2000 routes added, 0 removed, 0 requests failed (one batch)" in r.logs()

    mon = Monitor(node)
    batch = "\n".join(f"route add 10.{i >> 8}.{i & 255}.0/24 via 192.0.2.1 table 101" for i in range(n))
    node.run(["ip", "-batch", "-"], input=batch)
    time.sleep(0.5)
    again = r.apply([A4], specs)
    events = mon.stop()
    assert len(events) == n and all("table 101" in e for e in events)  # only the foreign adds
    assert again["reconciles"]["network.RouteSpecController"] - passes <= 2, again["reconciles"]
    assert len(node.ip_json("route", "show", "table", "101")) == n
