"""Policy routing rules on a real kernel (routing-rules.md §4): a node with two uplinks to two
stub routers; the rule spec controller (with the address and route controllers) runs in
``addr_route_runner.py`` inside the node.

Only router 2 holds the far address 198.51.100.7, so a ping from the node reaches it only
when a rule sends the packet out the second uplink: the ping is the proof the rule routes.
"""

from __future__ import annotations

import errno
import json
import subprocess
import time
from typing import Any

import pytest
from harness import Lab, Node, wait_until

from netns.test_address_route_spec import Monitor, Runner, route, start, wait_dad

pytestmark = pytest.mark.netns

FAR = "198.51.100.7"


def rule(priority: int, family: str = "inet4", **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"family": family, "priority": priority, "action": "unicast"}
    out["layer"] = "configuration"
    out.update(kw)
    return out


def table100() -> list[dict[str, Any]]:
    r = route("inet4", gw="10.91.0.1", table="RoutingTable(100)")
    r["outLinkName"] = "eth1"
    return [r]


@pytest.fixture
def site(lab: Lab) -> tuple[Node, Node, Node]:
    n, r1, r2 = lab.node("n"), lab.node("r1"), lab.node("r2")
    lab.link(n, r1, "eth0", "eth0")
    lab.link(n, r2, "eth1", "eth0")
    lab.stub(n, "lan0")
    for cmd in (
        "ip addr add 10.0.0.2/24 dev eth0",
        "ip addr add 10.91.0.2/24 dev eth1",
        "ip addr add 10.1.0.1/24 dev lan0",
        "ip route add default via 10.0.0.1",
        "sysctl -qw net.ipv4.ip_forward=1",
    ):
        n.sh(cmd)
    r1.sh("ip addr add 10.0.0.1/24 dev eth0")
    r2.sh("ip addr add 10.91.0.1/24 dev eth0")
    r2.sh(f"ip addr add {FAR}/32 dev lo")
    for r, via in ((r1, "10.0.0.2"), (r2, "10.91.0.2")):
        r.sh(f"ip route add 10.1.0.0/24 via {via}")
        r.sh(f"ip route add 10.91.0.0/24 via {via}" if r is r1 else "true")
    for ifname in ("eth0", "eth1", "lan0"):
        wait_dad(n, ifname)
    return n, r1, r2


@pytest.fixture
def runners(site: tuple[Node, Node, Node]) -> Any:
    started: list[Runner] = []
    yield started
    for r in started:
        r.stop()


def kernel_rules(node: Node, family: str = "-4") -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = json.loads(node.run(["ip", "-j", family, "rule", "show"]).stdout)
    return [r for r in out if r["priority"] not in (0, 32766, 32767)]


def route_get(node: Node, *args: str) -> dict[str, Any]:
    res = node.run(["ip", "-j", "route", "get", *args], check=False)
    assert res.returncode == 0, res.stderr
    got: dict[str, Any] = json.loads(res.stdout)[0]
    return got


def ping(node: Node, src: str, dst: str = FAR) -> bool:
    return node.run(["ping", "-c1", "-W2", "-I", src, dst], check=False).returncode == 0


def test_source_rule_sends_that_source_out_the_second_uplink(
    site: tuple[Node, Node, Node], runners: list[Runner]
) -> None:
    n, _r1, _r2 = site
    r = start(n, runners)
    assert not ping(n, "10.1.0.1")  # main table: out eth0 to router 1, which has no 198.51.100.7
    out = r.apply([], table100(), [rule(1000, src="10.1.0.0/24", table="RoutingTable(100)")])
    assert out["specs"]["inet4/01000"]["finalizers"] == ["network.RoutingRuleSpecController"]
    rules = kernel_rules(n)
    shown = [(x["priority"], x["src"], x["srclen"], x["table"]) for x in rules]
    assert shown == [(1000, "10.1.0.0", 24, "100")]
    assert rules[0].get("protocol") == "static"
    got = route_get(n, FAR, "from", "10.1.0.1")
    assert (got["dev"], got["gateway"]) == ("eth1", "10.91.0.1")
    assert route_get(n, FAR, "from", "10.0.0.2")["dev"] == "eth0"  # other sources: main table
    assert ping(n, "10.1.0.1")  # a real packet, answered by router 2 only
    assert [k for k in out["applied"]["rule"]] == ["inet4/01000"]


def test_mark_and_interface_rules_match(site: tuple[Node, Node, Node], runners: list[Runner]) -> None:
    n, _r1, _r2 = site
    r = start(n, runners)
    r.apply(
        [],
        table100(),
        [
            rule(1100, fwMark=0x100, fwMask=0xFF00, table="RoutingTable(100)"),
            rule(1200, oifName="eth1", table="RoutingTable(100)"),
            rule(1300, iifName="lan0", table="RoutingTable(100)"),
        ],
    )
    shown = {x["priority"]: x for x in kernel_rules(n)}
    assert (shown[1100]["fwmark"], shown[1100]["fwmask"]) == ("0x100", "0xff00")
    assert shown[1200]["oif"] == "eth1" and shown[1300]["iif"] == "lan0"
    assert route_get(n, FAR, "mark", "0x1ff")["dev"] == "eth1"  # 0x1ff & 0xff00 == 0x100
    assert route_get(n, FAR, "mark", "0x200")["dev"] == "eth0"
    assert route_get(n, FAR, "oif", "eth1")["gateway"] == "10.91.0.1"
    assert route_get(n, FAR, "from", "10.1.0.9", "iif", "lan0")["dev"] == "eth1"
    assert route_get(n, FAR, "from", "10.0.0.9", "iif", "eth0")["dev"] == "eth0"


def _connect_errno(node: Node, dst: str) -> int:
    code = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
        "try:\n"
        f" s.connect(({dst!r},9)); print(0)\n"
        "except OSError as e: print(e.errno)\n"
    )
    return int(node.run(["python3", "-c", code]).stdout.strip())


def test_blackhole_unreachable_prohibit_give_their_errors_to_a_socket(
    site: tuple[Node, Node, Node], runners: list[Runner]
) -> None:
    n, _r1, _r2 = site
    r = start(n, runners)
    r.apply(
        [],
        [],
        [
            rule(2000, dst="203.0.113.1/32", action="blackhole"),
            rule(2001, dst="203.0.113.2/32", action="unreachable"),
            rule(2002, dst="203.0.113.3/32", action="prohibit"),
        ],
    )
    assert _connect_errno(n, "203.0.113.1") == errno.EINVAL
    assert _connect_errno(n, "203.0.113.2") == errno.ENETUNREACH  # FR_ACT_UNREACHABLE
    assert _connect_errno(n, "203.0.113.3") == errno.EACCES
    assert _connect_errno(n, "203.0.113.4") == 0  # no rule: the default route


def test_both_families_restart_is_silent_foreign_rule_untouched_removal_exact(
    site: tuple[Node, Node, Node], runners: list[Runner]
) -> None:
    n, _r1, _r2 = site
    n.sh("ip rule add priority 1500 from 10.9.0.0/16 lookup 200")  # foreign, at a configured priority
    n.sh("ip rule add priority 1600 to 10.8.0.0/16 lookup 201")  # foreign, elsewhere
    specs = [
        rule(1400, fwMark=0x40, fwMask=0x60, table="RoutingTable(180)"),
        rule(1400, family="inet6", fwMark=0x40, fwMask=0x60, table="RoutingTable(180)"),
        rule(1500, src="10.1.0.0/24", table="RoutingTable(100)"),
    ]
    first = start(n, runners)
    out = first.apply([], [], specs)
    assert {x["priority"] for x in kernel_rules(n, "-6")} == {1400}
    v4 = {(x["priority"], x.get("src", ""), x["table"]) for x in kernel_rules(n)}
    assert v4 == {(1400, "all", "180"), (1500, "10.9.0.0", "200"), (1600, "all", "201")}  # 1500: not replaced
    assert "inet4/01500" not in out["applied"].get("rule", [])
    assert "rule at priority 1500 is not ours" in first.logs()
    first.stop()
    runners.remove(first)

    mon = Monitor(n)  # `ip monitor address route`: rules have their own command, below
    rule_mon = n.popen(
        ["ip", "-ts", "monitor", "rule"], log=n.log_dir / "rule-monitor.log", stderr=subprocess.DEVNULL
    )
    time.sleep(0.3)  # started (the address/route monitor above waited for its own start)
    second = start(n, runners)
    second.apply([], [], specs)
    assert mon.stop() == []
    time.sleep(0.3)  # late events
    rule_mon.terminate()
    rule_mon.wait(timeout=10)
    assert (n.log_dir / "rule-monitor.log").read_text().strip() == ""  # restart wrote nothing

    second.apply([], [], [])  # every spec gone: exactly ours are removed
    assert {(x["priority"], x["table"]) for x in kernel_rules(n)} == {(1500, "200"), (1600, "201")}
    assert kernel_rules(n, "-6") == []


# ---- the whole path: machine config → network-config → merge → rule controller (machined) ----

MACHINE_CONFIG = """version: v1alpha1
machine:
  type: worker
  network:
    hostname: n
    interfaces:
      - interface: eth0
        addresses: [10.0.0.2/24]
        routes:
          - network: 0.0.0.0/0
            gateway: 10.0.0.1
---
apiVersion: v1alpha1
kind: LinkConfig
name: eth1
multicast: false
addresses:
  - address: 10.91.0.2/24
    routePriority: 50
routes:
  - gateway: 10.91.0.1
    table: "100"
---
apiVersion: v1alpha1
kind: RoutingRuleConfig
name: "1000"
src: 10.1.0.0/24
table: "100"
---
apiVersion: v1alpha1
kind: RoutingRuleConfig
name: "1100"
fwMark: 0x100
fwMask: 0xff00
table: "100"
"""


def test_machined_applies_routing_rule_configs_and_removes_exactly_a_dropped_one(
    site: tuple[Node, Node, Node],
) -> None:
    from netns.test_api import Machined

    n, _r1, _r2 = site
    n.sh("ip rule add priority 1600 to 10.8.0.0/16 lookup 201")  # foreign
    m = Machined(n, MACHINE_CONFIG)

    def v4() -> set[tuple[int, str]]:
        return {(x["priority"], x["table"]) for x in kernel_rules(n)}

    wait_until(lambda: v4() == {(1000, "100"), (1100, "100"), (1600, "201")}, timeout=30, what="rules")
    assert {(x["priority"], x["table"]) for x in kernel_rules(n, "-6")} == {(1100, "100")}  # both families
    wait_until(lambda: ping(n, "10.1.0.1"), timeout=20, what="ping via the second uplink")  # table 100 route

    def prefix_metric() -> int | None:
        got = [r.get("metric", 0) for r in n.ip_json("route", "show", "10.91.0.0/24")]
        return got[0] if len(got) == 1 else None

    wait_until(lambda: prefix_metric() == 50, timeout=20, what="routePriority as the prefix route metric")
    wait_until(lambda: "MULTICAST" not in n.link("eth1")["flags"], timeout=20, what="multicast off")
    ids = {d["metadata"]["id"] for d in m.json("routingrules")}
    assert {"inet4/00000", "inet4/01000", "inet4/01100", "inet6/01100", "inet4/01600"} <= ids
    specs = {d["metadata"]["id"] for d in m.json("routingrulespecs")}
    assert specs == {"inet4/01000", "inet4/01100", "inet6/01100"}

    smaller = n.dir / "smaller.yaml"
    docs = MACHINE_CONFIG.split("---\n")
    smaller.write_text("---\n".join(d for d in docs if 'name: "1000"' not in d))
    assert m.netctl("apply-config", str(smaller)).stdout == "applied\n"
    wait_until(lambda: v4() == {(1100, "100"), (1600, "201")}, timeout=30, what="rule 1000 removed")
    assert m.stop() == 0
    assert v4() == {(1100, "100"), (1600, "201")}  # a plain stop keeps the node's rules
