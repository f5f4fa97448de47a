"""KubeSpan's nftables table on a real kernel (kubespan.md §7.4, §9.8), with real packets.

Node ``a`` has the table, the rule ``fwmark 0x40/0x60 lookup 180`` and a table-180 default route
out of ``eth1``; the main table reaches the targets out of ``eth0``:

    b (10.0.0.2, fd00:10::2) ── eth0 ── a ── eth1 ── c (10.1.0.2, fd00:11::2; also owns 10.0.0.2
                                                        and fd00:10::2 on lo, "the tunnel")

So a packet to 10.0.0.2 arrives at ``b`` when it is not marked and at ``c`` when it is: which
receiver sees it proves the marking (the WireGuard link is played by ``eth1``: the nft table does
not care what table 180 points at). A foreign table in ``a`` counts the marks after our chains
(§9.8 vectors through the kernel) and must survive our teardown.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from harness import Lab, wait_until
from harness.nodes import Node

PY = sys.executable

REFERENCE = """\
table inet talos_kubespan {
  set kubespan_targets_ipv4 { type ipv4_addr; flags interval; elements = { 10.0.0.2/31 } }
  set kubespan_targets_ipv6 { type ipv6_addr; flags interval; elements = { fd00:10::2/127, fd7f:175a:b97c:5602:0:aff:fe00:2/127 } }
  chain kubespan_prerouting {
    type filter hook prerouting priority filter; policy accept;
    meta mark & 0x00000060 == 0x00000020 accept
    ip daddr @kubespan_targets_ipv4 meta mark set meta mark & 0xffffff9f | 0x00000040 accept
    ip6 daddr @kubespan_targets_ipv6 meta mark set meta mark & 0xffffff9f | 0x00000040 accept
  }
  chain kubespan_outgoing {
    type route hook output priority filter; policy accept;
    meta mark & 0x00000060 == 0x00000020 accept
    oifname "lo" accept
    ip daddr @kubespan_targets_ipv4 tcp flags & (syn | rst) == syn tcp option maxseg size > 1380 tcp option maxseg size set 1380
    ip6 daddr @kubespan_targets_ipv6 tcp flags & (syn | rst) == syn tcp option maxseg size > 1360 tcp option maxseg size set 1360
    ip daddr @kubespan_targets_ipv4 meta mark set meta mark & 0xffffff9f | 0x00000040 accept
    ip6 daddr @kubespan_targets_ipv6 meta mark set meta mark & 0xffffff9f | 0x00000040 accept
  }
}
"""  # noqa: E501  (kubespan.md §7.4, verbatim)

# Applies the table in this namespace: argv[1] = JSON {"v4": [...], "v6": [...], "mtu": n,
# "record": [..] | null, "again": bool}; prints {"wrote": [...], "record": [...]}.
APPLY = """\
import ipaddress, json, sys
from kubespan.nft import KubeSpanTable, RoutedSet

args = json.loads(sys.argv[1])
v4, v6 = tuple(map(ipaddress.IPv4Network, args["v4"])), tuple(map(ipaddress.IPv6Network, args["v6"]))
routed = RoutedSet(v4, v6)
t = KubeSpanTable()
t.adopt(tuple(args["record"]) if args.get("record") else None)
wrote = [t.apply(routed, args.get("mtu", 1420))]
if args.get("again"):
    wrote.append(t.apply(routed, args.get("mtu", 1420)))
print(json.dumps({"wrote": wrote, "record": t.record}))
"""

TEARDOWN = """\
import json
from kubespan.nft import KubeSpanTable
t = KubeSpanTable()
print(json.dumps([t.teardown(), t.teardown()]))
"""

# UDP receiver on port 9000 (both families): one line per datagram, "payload" only.
RECEIVER = """\
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", 9000))
out = open(sys.argv[1], "a", buffering=1)
print("ready", file=out)
while True:
    data, _ = s.recvfrom(2048)
    print(data.decode(), file=out)
"""

# argv: udp|tcp, destination, port, payload, mark (int, 0 = none)
SEND = """\
import socket, struct, sys
kind, dst, port, payload, mark = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5], 0)
fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
if mark:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, struct.pack("I", mark))  # unsigned 32 bits
if kind == "udp":
    s.sendto(payload.encode(), (dst, port))
else:
    s.settimeout(2)
    try:
        s.connect((dst, port))
    except OSError:
        pass  # nobody listens: the SYN is what the test looks at
"""

# §9.8: marks a packet can carry, and what our chains must turn them into.
MARK_VECTORS = [(0x00000000, 0x00000040), (0x12345678, 0x12345658), (0xFFFFFFFF, 0xFFFFFFDF)]

FOREIGN = """\
table inet foreign {
  chain out {
    type filter hook output priority 10; policy accept;
    meta mark 0x00000040 counter
    meta mark 0x12345658 counter
    meta mark 0xffffffdf counter
    meta mark 0x00000020 counter
  }
}
"""


def _script(node: Node, name: str, text: str) -> Path:
    path = node.dir / name
    if not path.exists():
        path.write_text(text)
    return path


def apply(a: Node, v4: list[str], v6: list[str], **kw: object) -> dict[str, list[object]]:
    args = json.dumps({"v4": v4, "v6": v6, **kw})
    out: dict[str, list[object]] = json.loads(a.run([PY, str(_script(a, "apply.py", APPLY)), args]).stdout)
    return out


def send(a: Node, kind: str, dst: str, port: int, payload: str, mark: int = 0) -> None:
    a.run([PY, str(_script(a, "send.py", SEND)), kind, dst, str(port), payload, hex(mark)])


class Receiver:
    def __init__(self, node: Node) -> None:
        self.log = node.log_dir / "udp.log"
        node.popen([PY, str(_script(node, "recv.py", RECEIVER)), str(self.log)])
        wait_until(lambda: self.log.exists() and "ready" in self.log.read_text(), timeout=10)

    def got(self) -> list[str]:
        return self.log.read_text().split()[1:]


def lab_nodes(lab: Lab) -> tuple[Node, Node, Node]:
    a, b, c = lab.node("a"), lab.node("b"), lab.node("c")
    lab.link(a, b, "eth0", "eth0")
    lab.link(a, c, "eth1", "eth0")
    a.sh(
        """
        ip link set lo up
        ip addr add 10.0.0.1/24 dev eth0; ip addr add fd00:10::1/64 dev eth0 nodad
        ip addr add 10.1.0.1/24 dev eth1; ip addr add fd00:11::1/64 dev eth1 nodad
        ip route add default via 10.1.0.2 dev eth1 table 180
        ip -6 route add default via fd00:11::2 dev eth1 table 180
        ip rule add fwmark 0x40/0x60 lookup 180 pref 32500
        ip -6 rule add fwmark 0x40/0x60 lookup 180 pref 32500
        """
    )
    b.sh("ip link set lo up; ip addr add 10.0.0.2/24 dev eth0; ip addr add fd00:10::2/64 dev eth0 nodad")
    c.sh(
        """
        ip link set lo up
        ip addr add 10.1.0.2/24 dev eth0; ip addr add fd00:11::2/64 dev eth0 nodad
        ip addr add 10.0.0.2/32 dev lo; ip addr add fd00:10::2/128 dev lo
        ip route add 10.0.0.0/24 via 10.1.0.1; ip -6 route add fd00:10::/64 via fd00:11::1
        """
    )
    return a, b, c


def _words(text: str) -> str:
    """Whitespace-insensitive text (nft indents with tabs and wraps long element lists)."""
    return " ".join(text.split())


def test_table_is_the_reference_rendering(lab: Lab) -> None:
    a, _, _ = lab_nodes(lab)
    out = apply(a, ["10.0.0.2/31"], ["fd00:10::2/127", "fd7f:175a:b97c:5602:0:aff:fe00:2/127"])
    assert out["wrote"] == [True]
    listed = a.run(["nft", "list", "table", "inet", "talos_kubespan"]).stdout
    # nft prints two statements in another (equivalent) spelling than §7.4 does: the set-mark as one
    # bitwise op (the kernel's mask/xor: `& 0xffffffdf | 0x40`, which is the same function, since
    # 0x40 is set either way), and the SYN test as `tcp flags syn / syn,rst`; set attributes go on
    # lines of their own instead of being separated by `;`.
    want = (
        REFERENCE.replace("& 0xffffff9f |", "& 0xffffffdf |")
        .replace("tcp flags & (syn | rst) == syn", "tcp flags syn / syn,rst")
        .replace("_addr; flags interval;", "_addr flags interval")
    )
    assert _words(listed) == _words(want)


def test_marked_packets_take_table_180_and_wireguard_packets_do_not(lab: Lab) -> None:
    a, b, c = lab_nodes(lab)
    rb, rc = Receiver(b), Receiver(c)
    a.run(["nft", "-f", "-"], input=FOREIGN)
    # empty sets: everything follows the main table to b
    apply(a, [], [])
    send(a, "udp", "10.0.0.2", 9000, "before4")
    send(a, "udp", "fd00:10::2", 9000, "before6")
    apply(a, ["10.0.0.2/32"], ["fd00:10::2/128"])
    # (a) UDP to an address in the set is marked 0x40 and leaves by table 180 (c)
    send(a, "udp", "10.0.0.2", 9000, "marked4")
    send(a, "udp", "fd00:10::2", 9000, "marked6")
    # (b) WireGuard's own packets (SO_MARK 0x20) are not re-marked: main table (b)
    send(a, "udp", "10.0.0.2", 9000, "wg4", mark=0x20)
    send(a, "udp", "fd00:10::2", 9000, "wg6", mark=0x20)
    # §9.8: other bits survive, both KubeSpan bits are rewritten
    for mark, _ in MARK_VECTORS:
        send(a, "udp", "10.0.0.2", 9000, f"vec{mark:x}", mark=mark)
    wait_until(lambda: len(rb.got()) >= 4 and len(rc.got()) >= 5, timeout=10)
    time.sleep(0.2)
    assert sorted(rb.got()) == ["before4", "before6", "wg4", "wg6"]
    assert sorted(rc.got()) == sorted(["marked4", "marked6", "vec0", "vec12345678", "vecffffffff"])
    counters = json.loads(a.run(["nft", "-j", "list", "table", "inet", "foreign"]).stdout)
    seen: dict[int, int] = {}
    for item in counters["nftables"]:
        rule = item.get("rule")
        if rule:
            mark = rule["expr"][0]["match"]["right"]
            seen[mark] = next(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
    # 0x40: marked4 + marked6 + the 0x0 vector; the other two vectors land on their §9.8 values
    assert seen == {0x40: 3, 0x12345658: 1, 0xFFFFFFDF: 1, 0x20: 2}
    # a marked packet's route: `ip route get ... mark 0x40` goes by table 180
    assert "table 180" in a.run(["ip", "route", "get", "10.0.0.2", "mark", "0x40"]).stdout


def _mss(log: Path, port: int) -> list[int]:
    return [int(m) for m in re.findall(rf"\.{port}: Flags \[S\].*?mss (\d+)", log.read_text())]


def test_syn_mss_is_clamped_to_mtu_minus_40_and_60(lab: Lab) -> None:
    a, _, c = lab_nodes(lab)
    apply(a, ["10.0.0.2/32"], ["fd00:10::2/128"], mtu=1420)
    log = c.log_dir / "tcpdump.log"
    c.popen(["tcpdump", "-i", "eth0", "-n", "-v", "-l", "tcp"], log=log)
    wait_until(lambda: log.exists() and "listening on" in log.read_text(), timeout=10)
    send(a, "tcp", "10.0.0.2", 9001, "")
    send(a, "tcp", "fd00:10::2", 9002, "")
    send(a, "tcp", "10.1.0.2", 9003, "")  # not in the set: no clamp (eth1's MTU 1500 → 1460)
    wait_until(lambda: _mss(log, 9001) and _mss(log, 9002) and _mss(log, 9003), timeout=10)
    assert set(_mss(log, 9001)) == {1380}
    assert set(_mss(log, 9002)) == {1360}
    assert set(_mss(log, 9003)) == {1460}


def test_reapply_writes_nothing_and_teardown_removes_only_our_table(lab: Lab) -> None:
    a, _, _ = lab_nodes(lab)
    a.run(["nft", "-f", "-"], input=FOREIGN)
    v4, v6 = ["10.0.0.2/31"], ["fd00:10::2/127"]
    first = apply(a, v4, v6)
    assert first["wrote"] == [True]
    mon_log = a.log_dir / "nft-monitor.log"
    mon = a.popen(["nft", "monitor"], log=mon_log, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # the monitor subscribes
    # (e) same process: the second apply is a read only; a new process given the record: the same
    assert apply(a, v4, v6, again=True)["wrote"] == [True, False]  # no record: one rewrite, then silence
    time.sleep(0.3)
    rewrite = mon_log.read_text()
    assert "talos_kubespan" in rewrite  # the monitor does see our writes
    mon_log.write_text("")
    again = apply(a, v4, v6, record=first["record"], again=True)
    assert again["wrote"] == [False, False]
    time.sleep(0.5)
    assert mon_log.read_text() == ""
    # overlapping change of the interval sets in one transaction (flush before re-adding)
    assert apply(a, ["10.0.0.0/24", "10.2.0.0/16"], ["fd00:10::/64"], record=first["record"])["wrote"] == [
        True
    ]
    els = a.run(["nft", "list", "set", "inet", "talos_kubespan", "kubespan_targets_ipv4"]).stdout
    assert "10.0.0.0/24" in els and "10.2.0.0/16" in els and "10.0.0.2/31" not in els
    mon.terminate()
    mon.wait(timeout=10)
    # (d) teardown: our table gone (idempotent), the foreign table untouched
    assert json.loads(a.run([PY, str(_script(a, "teardown.py", TEARDOWN))]).stdout) == [True, False]
    tables = a.run(["nft", "list", "tables"]).stdout.split("\n")
    assert "table inet foreign" in tables and "table inet talos_kubespan" not in tables
