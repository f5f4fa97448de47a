"""The ingress firewall on a real kernel (netd.md §8): TCP/UDP/ICMP across namespaces.

A server node runs NfTablesChainConfigController + NfTablesChainController (a runner
script that reads ``config.<n>.yaml`` files as they appear, puts them as the
MachineConfig, settles and writes ``result.<n>.json``) and small Python TCP/UDP
servers. Client nodes on the same switch have different source addresses:

* ``a``  192.0.2.10, 2001:db8::10  — inside the allowed 192.0.2.0/25
* ``x``  192.0.2.3                 — the rule's ``except`` address
* ``b``  192.0.2.200, 2001:db8::200 — outside the /25 (and the IPv6 except)
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from harness import Lab, wait_until
from harness.nodes import Node

PY = sys.executable

RUNNER = """\
import asyncio, json, logging, os, sys
from pathlib import Path

from cosi import Runtime, State
from netd.config import load_config
from netd.controllers.nftables import NfTablesChainConfigController, NfTablesChainController
from netd.kernel.applied import Applied
from netd.resources import register_all
from netd.resources.machine_config import MACHINE_CONFIG_ID, MACHINE_CONFIG_TYPE, MachineConfigSpec
from netd.resources.namespaces import CONFIG


async def main() -> None:
    work, state_dir = Path(sys.argv[1]), sys.argv[2]
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    state = State()
    register_all(state)
    ctl = NfTablesChainController(Applied.in_dir(state_dir))
    rt = Runtime(state)
    rt.register(NfTablesChainConfigController())
    rt.register(ctl)
    n = 0
    while True:
        path = work / f"config.{n}.yaml"
        if not path.exists():
            await asyncio.sleep(0.02)
            continue
        loaded = load_config(path.read_text())
        spec = MachineConfigSpec(
            config=loaded.config, default_action=loaded.default_action, rules=loaded.rules
        )
        state.put(CONFIG, MACHINE_CONFIG_TYPE, MACHINE_CONFIG_ID, spec, "test")
        if n == 0:  # as machined: spec controllers start once the config is there
            rt.start()
        settled = await rt.settle(timeout=20)
        failing = sorted(ctl.retry._failing) if ctl.retry is not None else []
        out = {"n": n, "settled": settled, "applies": ctl.applies, "failing": failing}
        out["restarts"] = rt.restarts
        tmp = work / f"result.{n}.tmp"
        tmp.write_text(json.dumps(out))
        os.replace(tmp, work / f"result.{n}.json")
        n += 1


asyncio.run(main())
"""

SERVERS = """\
import selectors, socket, sys

sel = selectors.DefaultSelector()
for spec in sys.argv[1:]:
    proto, port = spec.split(":")
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", int(port)))
    if proto == "tcp":
        s.listen(64)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, proto)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        s = key.fileobj
        try:
            if key.data == "tcp":
                c, _ = s.accept()
                c.setblocking(True)
                c.sendall(b"ok\\n")
                c.close()
            else:
                data, addr = s.recvfrom(256)
                s.sendto(b"ok\\n", addr)
        except OSError:
            pass
"""

PROBE = """\
import json, socket, sys

res = {}
for spec in sys.argv[1:]:
    proto, host, port = spec.split(",")
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    ok = False
    try:
        if proto == "tcp":
            with socket.create_connection((host, int(port)), timeout=0.6) as s:
                s.settimeout(0.6)
                ok = s.recv(16).startswith(b"ok")
        else:
            with socket.socket(fam, socket.SOCK_DGRAM) as s:
                s.settimeout(0.6)
                s.sendto(b"hi", (host, int(port)))
                ok = s.recvfrom(16)[0].startswith(b"ok")
    except OSError:
        pass
    res[spec] = ok
print(json.dumps(res))
"""

# Echo requests with distinct ICMP ids: each one is a new conntrack entry, so none of them
# rides the "ct state established" rule and all go through the rate-limited ICMP rule.
# (ping(8) uses one id, and after the first reply conntrack calls the rest established.)
ICMP_FLOOD = """\
import os, select, socket, struct, sys, time

host, count, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])


def csum(b):
    if len(b) % 2:
        b += b"\\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
base = (os.getpid() * 64) & 0xFFFF
ids = set()
start = time.monotonic()
for i in range(count):
    ident = (base + i) & 0xFFFF
    ids.add(ident)
    body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"firewall"
    pkt = struct.pack("!BBHHH", 8, 0, csum(body), ident, 1) + b"firewall"
    s.sendto(pkt, (host, 0))
    time.sleep(max(0.0, start + (i + 1) * seconds / count - time.monotonic()))
got = set()
end = time.monotonic() + 1.0
while time.monotonic() < end:
    r, _, _ = select.select([s], [], [], 0.1)
    if not r:
        continue
    data = s.recv(2048)
    ihl = (data[0] & 15) * 4
    typ, _, _, ident, _ = struct.unpack("!BBHHH", data[ihl : ihl + 8])
    if typ == 0 and ident in ids:
        got.add(ident)
print(len(got))
"""

SRV4, SRV6 = "192.0.2.1", "2001:db8::1"

BLOCK = """\
version: v1alpha1
machine:
  type: worker
---
apiVersion: v1alpha1
kind: NetworkDefaultActionConfig
ingress: block
---
apiVersion: v1alpha1
kind: NetworkRuleConfig
name: web
portSelector:
  ports: [{web_ports}]
  protocol: tcp
ingress:
  - subnet: 192.0.2.0/25
    except: 192.0.2.3/32
---
apiVersion: v1alpha1
kind: NetworkRuleConfig
name: dns
portSelector:
  ports: [5353]
  protocol: udp
ingress:
  - subnet: 192.0.2.0/25
    except: 2001:db8::200/128
  - subnet: 2001:db8::/64
    except: 192.0.2.3/32
"""

ACCEPT = """\
version: v1alpha1
machine:
  type: worker
---
apiVersion: v1alpha1
kind: NetworkRuleConfig
name: web
portSelector:
  ports: [8080]
  protocol: tcp
ingress:
  - subnet: 192.0.2.0/25
    except: 192.0.2.3/32
"""


class Firewall:
    """The runner in the server node, driven through numbered config files."""

    def __init__(self, node: Node, work: str = "fw") -> None:
        self.node = node
        self.work = node.dir / work
        self.work.mkdir()
        (self.work / "runner.py").write_text(RUNNER)
        self.proc = node.popen([PY, str(self.work / "runner.py"), str(self.work), str(node.state_dir)])
        self.n = 0

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)

    def apply(self, text: str) -> dict[str, Any]:
        n, self.n = self.n, self.n + 1
        tmp = self.work / f"config.{n}.tmp"
        tmp.write_text(text)
        tmp.rename(self.work / f"config.{n}.yaml")
        result = self.work / f"result.{n}.json"

        def done() -> bool:
            assert self.proc.poll() is None, "firewall runner exited"
            return result.exists()

        wait_until(done, timeout=30, what=f"firewall runner result {n}")
        out: dict[str, Any] = json.loads(result.read_text())
        assert out["settled"] and not out["failing"] and out["restarts"] == {}, out
        return out


def table(node: Node, name: str = "talos", handles: bool = False) -> list[dict[str, Any]]:
    """``nft -j list table inet NAME`` items (metainfo dropped)."""
    argv = ["nft", "-j", *(["-a"] if handles else []), "list", "table", "inet", name]
    items = json.loads(node.run(argv).stdout)["nftables"]
    return [i for i in items if "metainfo" not in i]


def chains(items: list[dict[str, Any]]) -> list[str]:
    return [i["chain"]["name"] for i in items if "chain" in i]


def dports(items: list[dict[str, Any]]) -> set[int]:
    """Every destination port named in the rules (single values and range ends)."""
    out: set[int] = set()

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            m = v.get("match")
            if isinstance(m, dict) and m.get("left", {}).get("payload", {}).get("field") == "dport":
                right = m["right"]
                elems = right["set"] if isinstance(right, dict) and "set" in right else [right]
                for e in elems:
                    out.update(e["range"] if isinstance(e, dict) else [e])
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(items)
    return out


def probe(node: Node, *specs: str) -> dict[str, bool]:
    script = node.dir / "probe.py"
    if not script.exists():
        script.write_text(PROBE)
    res: dict[str, bool] = json.loads(node.run([PY, str(script), *specs], timeout=60).stdout)
    return res


def serve(node: Node, *specs: str) -> None:
    script = node.dir / "servers.py"
    script.write_text(SERVERS)
    node.popen([PY, str(script), *specs])
    first = specs[0].split(":")
    wait_until(
        lambda: probe(node, f"{first[0]},127.0.0.1,{first[1]}")[f"{first[0]},127.0.0.1,{first[1]}"],
        timeout=15,
        what=f"servers in {node.name}",
    )


def icmp_flood(node: Node, host: str, count: int = 50, seconds: float = 1.0) -> int:
    script = node.dir / "flood.py"
    script.write_text(ICMP_FLOOD)
    return int(node.run([PY, str(script), host, str(count), str(seconds)], timeout=30).stdout.strip())


def setup(lab: Lab) -> tuple[Node, Node, Node, Node]:
    sw = lab.switch("sw")
    srv, a, x, b = lab.node("srv"), lab.node("a"), lab.node("x"), lab.node("b")
    addrs = {
        srv: ("192.0.2.1/24", "2001:db8::1/64"),
        a: ("192.0.2.10/24", "2001:db8::10/64"),
        x: ("192.0.2.3/24", "2001:db8::3/64"),
        b: ("192.0.2.200/24", "2001:db8::200/64"),
    }
    for i, (node, (v4, v6)) in enumerate(addrs.items()):
        lab.connect(node, sw, "eth0", mac=f"02:00:00:00:00:{i + 1:02x}")
        node.sh(f"ip addr add {v4} dev eth0 && ip addr add {v6} dev eth0 nodad && ip link set lo up")
    for node in (a, x, b):  # neighbours resolved before the firewall is up (NDP is rate-limited ICMPv6)
        wait_until(
            lambda n=node: n.run(["ping", "-c1", "-W1", SRV4], check=False).returncode == 0, timeout=10
        )
        wait_until(
            lambda n=node: n.run(["ping", "-c1", "-W1", SRV6], check=False).returncode == 0, timeout=10
        )
    return srv, a, x, b


def test_block_mode(lab: Lab) -> None:
    srv, a, x, b = setup(lab)
    serve(srv, "tcp:8080", "tcp:8081", "tcp:8091", "tcp:8092", "tcp:9090", "udp:5353")
    serve(a, "tcp:7000", "udp:7001")
    # a foreign table (left alone) and a stale chain in ours (removed by the first apply)
    srv.sh(
        "nft add table inet foreign\n"
        "nft add chain inet foreign c '{ type filter hook input priority 10; policy accept; }'\n"
        "nft add rule inet foreign c tcp dport 1234 counter\n"
        "nft add table inet talos\n"
        "nft add chain inet talos stale\n"
    )
    foreign_before = table(srv, "foreign")
    fw = Firewall(srv)

    first = fw.apply(BLOCK.format(web_ports='8080, "8090-8091"'))
    assert chains(table(srv)) == ["ingress"]
    assert dports(table(srv)) == {8080, 8090, 8091, 5353}

    res = probe(
        a,
        "tcp,192.0.2.1,8080",
        "tcp,192.0.2.1,8091",  # hi of the range is open
        "tcp,192.0.2.1,8092",  # hi + 1 is not
        "tcp,192.0.2.1,9090",  # no rule: policy drop
        "udp,192.0.2.1,5353",
        "udp,2001:db8::1,5353",
        "tcp,2001:db8::1,8080",  # the web rule has IPv4 subnets only
    )
    assert res == {
        "tcp,192.0.2.1,8080": True,
        "tcp,192.0.2.1,8091": True,
        "tcp,192.0.2.1,8092": False,
        "tcp,192.0.2.1,9090": False,
        "udp,192.0.2.1,5353": True,
        "udp,2001:db8::1,5353": True,
        "tcp,2001:db8::1,8080": False,
    }, res
    # the except address of the rule, and an address outside the subnet
    assert probe(x, "tcp,192.0.2.1,8080", "udp,192.0.2.1,5353") == {
        "tcp,192.0.2.1,8080": False,
        "udp,192.0.2.1,5353": False,
    }
    assert probe(b, "tcp,192.0.2.1,8080", "udp,192.0.2.1,5353", "udp,2001:db8::1,5353") == {
        "tcp,192.0.2.1,8080": False,
        "udp,192.0.2.1,5353": False,
        "udp,2001:db8::1,5353": False,  # its IPv6 address is an except (of the other subnet)
    }
    # connections opened by the server get their replies (ct state established)
    assert probe(srv, "tcp,192.0.2.10,7000", "udp,192.0.2.10,7001", "tcp,2001:db8::10,7000") == {
        "tcp,192.0.2.10,7000": True,
        "udp,192.0.2.10,7001": True,
        "tcp,2001:db8::10,7000": True,
    }
    # ICMP: 5/s with a burst of 5, so ~10 of 50 echo requests in 1 s are answered
    replies = icmp_flood(b, SRV4)
    assert 4 <= replies <= 15, replies

    # steady state: the same config again commits nothing (rule handles and counters stay)
    before = table(srv, handles=True)
    again = fw.apply(BLOCK.format(web_ports='8080, "8090-8091"'))
    assert again["applies"] == first["applies"]
    assert handles(table(srv, handles=True)) == handles(before)

    # a config change replaces the chain in one transaction
    changed = fw.apply(BLOCK.format(web_ports="8081"))
    assert changed["applies"] == first["applies"] + 1
    items = table(srv)
    assert chains(items) == ["ingress"]
    assert dports(items) == {8081, 5353}
    assert probe(a, "tcp,192.0.2.1,8081", "tcp,192.0.2.1,8080") == {
        "tcp,192.0.2.1,8081": True,
        "tcp,192.0.2.1,8080": False,
    }
    # someone edits our table by hand: the next reconcile (here: a config change) rebuilds it
    srv.sh("nft add chain inet talos intruder")
    fw.apply(BLOCK.format(web_ports="8080"))
    assert chains(table(srv)) == ["ingress"]

    # the foreign table survived every apply untouched
    assert table(srv, "foreign") == foreign_before
    assert dports(foreign_before) == {1234}


def test_accept_mode(lab: Lab) -> None:
    srv, a, x, b = setup(lab)
    serve(srv, "tcp:8080", "tcp:9090", "udp:5353")
    fw = Firewall(srv)
    fw.apply(ACCEPT)
    items = table(srv)
    assert chains(items) == ["ingress"]
    assert next(i["chain"] for i in items if "chain" in i)["policy"] == "accept"

    specs = ("tcp,192.0.2.1,8080", "tcp,192.0.2.1,9090", "udp,192.0.2.1,5353")
    assert probe(a, *specs, "tcp,2001:db8::1,8080", "tcp,2001:db8::1,9090") == {
        "tcp,192.0.2.1,8080": True,
        "tcp,192.0.2.1,9090": True,
        "udp,192.0.2.1,5353": True,
        "tcp,2001:db8::1,8080": False,  # an IPv4-only rule drops the port for IPv6
        "tcp,2001:db8::1,9090": True,
    }
    for client in (x, b):  # the except address, and an address outside the subnet
        assert probe(client, *specs) == {
            "tcp,192.0.2.1,8080": False,
            "tcp,192.0.2.1,9090": True,
            "udp,192.0.2.1,5353": True,
        }
    # no ICMP limit in accept mode
    assert icmp_flood(b, SRV4) >= 40

    # back to accept without rules: no chain at all, the table stays (empty)
    fw.apply("version: v1alpha1\nmachine:\n  type: worker\n")
    assert chains(table(srv)) == []
    assert probe(b, "tcp,192.0.2.1,8080")["tcp,192.0.2.1,8080"] is True


def test_runner_survives_reapply_timing(lab: Lab) -> None:
    """Several quick config changes in a row: each settles with exactly the last one applied."""
    srv, a, _x, _b = setup(lab)
    serve(srv, "tcp:8080", "tcp:8081")
    fw = Firewall(srv)
    for ports in ("8080", "8081", "8080", "8081"):
        fw.apply(BLOCK.format(web_ports=ports))
        time.sleep(0.05)
    assert dports(table(srv)) == {8081, 5353}
    assert probe(a, "tcp,192.0.2.1,8081", "tcp,192.0.2.1,8080") == {
        "tcp,192.0.2.1,8081": True,
        "tcp,192.0.2.1,8080": False,
    }


EVERY_MATCHER = """\
import json
from netd.kernel.nftables import LibNftables, build_batch, chains_in_listing, compile_ruleset
from netd.resources.nftables import NfTablesChain

chains = {k: NfTablesChain.model_validate(v) for k, v in json.loads(open(0).read()).items()}
nft = LibNftables()
listing = nft.list_table()
nft.apply(build_batch(compile_ruleset(chains), chains_in_listing(listing) if listing else []))
print(json.dumps(nft.list_table()))
"""


def test_every_matcher_is_accepted_by_the_kernel(lab: Lab) -> None:
    """Rules using each NfTablesRule matcher (KubeSpan-style ones too) commit in one batch."""
    node = lab.node("n")
    mark = {"mask": 0x60, "xor": 0, "value": 0x20}
    chains = {
        "ingress": {
            "type": "filter",
            "hook": "input",
            "priority": "filter",
            "policy": "accept",
            "rules": [
                {"matchIIfName": {"interfaceName": ["lo"], "operator": "!="}, "verdict": "accept"},
                {"matchConntrackState": {"states": ["new"]}, "matchMark": mark, "anonymousCounter": True},
                {
                    "matchSourceAddress": {
                        "includeSubnets": ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"],
                        "excludeSubnets": ["10.1.0.0/16", "2001:db8:1::/48"],
                    },
                    "matchDestinationAddress": {"includeSubnets": ["0.0.0.0/0"], "invert": True},
                    "matchLayer4": {
                        "protocol": "udp",
                        "matchSourcePort": {"ranges": [{"lo": 1, "hi": 1023}]},
                        "matchDestinationPort": {"ranges": [{"lo": 53, "hi": 53}, {"lo": 54, "hi": 60}]},
                    },
                    "verdict": "drop",
                },
            ],
        },
        "kubespan_prerouting": {
            "type": "filter",
            "hook": "prerouting",
            "priority": "mangle",
            "policy": "accept",
            "rules": [
                {"matchMark": mark, "verdict": "accept"},
                {
                    "matchDestinationAddress": {"includeSubnets": ["10.5.0.0/24", "fd00::/64"]},
                    "setMark": {"mask": 0xFFFFFF9F, "xor": 0x20},
                    "verdict": "accept",
                },
            ],
        },
        "kubespan_outgoing": {
            "type": "route",
            "hook": "output",
            "priority": "filter",
            "policy": "accept",
            "rules": [
                {
                    "matchOIfName": {"interfaceName": ["kubespan"], "operator": "=="},
                    "matchLayer4": {"protocol": "tcp"},
                    "clampMSS": {"mtu": 1420},
                },
            ],
        },
    }
    script = node.dir / "every.py"
    script.write_text(EVERY_MATCHER)
    out = node.run([PY, str(script)], input=json.dumps(chains), timeout=60).stdout
    items = json.loads(out)["nftables"]
    assert sorted(chains_of(items)) == ["ingress", "kubespan_outgoing", "kubespan_prerouting"]
    rules = [i["rule"] for i in items if "rule" in i]
    # ingress: 1 + 1 + 1 (the third: daddr "not any IPv4" leaves only its IPv6 part)
    assert [r["chain"] for r in rules].count("ingress") == 3
    assert [r["chain"] for r in rules].count("kubespan_prerouting") == 3  # 1 + (IPv4, IPv6)
    assert [r["chain"] for r in rules].count("kubespan_outgoing") == 2  # MSS clamp per family
    text = node.run(["nft", "list", "table", "inet", "talos"]).stdout
    assert "maxseg size set 1380" in text and "maxseg size set 1360" in text
    assert "2001:db8::-2001:db8:0:ffff:ffff:ffff:ffff:ffff" in text or "2001:db8::/48" in text
    assert "udp sport 1-1023" in text or "udp sport { 1-1023 }" in text
    # a second run (existing chains deleted in the same batch) gives the same ruleset
    again = json.loads(node.run([PY, str(script)], input=json.dumps(chains), timeout=60).stdout)["nftables"]
    assert len([i for i in again if "rule" in i]) == len(rules)


def chains_of(items: list[dict[str, Any]]) -> list[str]:
    return [i["chain"]["name"] for i in items if "chain" in i]


def test_restart_adopts_the_applied_ruleset(lab: Lab) -> None:
    """A restart with the same config and an untouched table commits nothing (counters keep
    counting); a restart with another config rebuilds the chain."""
    srv, a, _x, _b = setup(lab)
    serve(srv, "tcp:8080", "tcp:8081")
    fw = Firewall(srv, "run1")
    assert fw.apply(BLOCK.format(web_ports="8080"))["applies"] == 1
    assert probe(a, "tcp,192.0.2.1,8080")["tcp,192.0.2.1,8080"]
    before = table(srv, handles=True)
    fw.stop()

    fw = Firewall(srv, "run2")
    assert fw.apply(BLOCK.format(web_ports="8080"))["applies"] == 0
    after = table(srv, handles=True)
    assert handles(after) == handles(before)  # the same rules, not rebuilt
    assert packets(before) > 0 and packets(after) >= packets(before)  # counters not reset
    fw.stop()

    fw = Firewall(srv, "run3")
    assert fw.apply(BLOCK.format(web_ports="8081"))["applies"] == 1
    assert dports(table(srv)) == {8081, 5353}


def handles(items: list[dict[str, Any]]) -> list[int]:
    return [i["rule"]["handle"] for i in items if "rule" in i]


def packets(items: list[dict[str, Any]]) -> int:
    return sum(
        e["counter"]["packets"]
        for i in items
        if "rule" in i
        for e in i["rule"]["expr"]
        if isinstance(e.get("counter"), dict)
    )
