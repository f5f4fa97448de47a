"""The batched rtnetlink socket against a real kernel, checked with ``ip -j``.

A runner (written to the test's temp dir, run inside a node with the venv's
python) batch-adds 200 addresses and 1,000 routes with our codec, dumps them
back with our decoder and prints JSON; the test compares that with what
``ip -j`` sees. A batch with failing entries must report exactly those.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from harness import Lab, Node

RUNNER = textwrap.dedent(
    """
    import asyncio, ipaddress, json, socket, sys
    from netd.kernel import netlink as nl
    from netd.kernel import rtnl_codec as c
    from netd.kernel.rtnl_batch import Request, RtnlBatch

    P = ipaddress.ip_interface
    A = ipaddress.ip_address

    def addresses(eth0):
        out = []
        for i in range(150):
            ip = "192.0.2.10/24" if i == 0 else f"172.16.{i}.1/32"
            out.append(c.new_address(eth0, P(ip), 0, 0x80))
        for i in range(40):
            out.append(c.new_address(eth0, P(f"2001:db8:ffff::{i + 1:x}/128"), 0, 0x80 | 0x02))  # nodad
        for i in range(10):  # finite lifetimes (a lease)
            out.append(c.new_address(eth0, P(f"198.51.100.{i + 1}/24"), 0, 0, valid=3600, preferred=1800))
        return out

    def routes(eth0):
        out = []
        for i in range(600):  # main table, on-link and via a gateway
            gw = A("192.0.2.1") if i % 2 else None
            dst = P(f"10.{i >> 8}.{i & 255}.0/24")
            out.append(c.new_route(2, dst, gateway=gw, oif=eth0, priority=100 + i % 3,
                                   scope=0 if gw else 253, protocol=4))
        for i in range(200):  # a table above 255, with MTU and source
            out.append(c.new_route(2, P(f"10.200.{i}.0/24"), gateway=A("192.0.2.1"), oif=eth0, priority=50,
                                   table=1000, src=A("192.0.2.10"), mtu=1400, protocol=4))
        for i in range(199):
            dst = P(f"2001:db8:{i:x}::/64")
            out.append(c.new_route(10, dst, gateway=A("fe80::1"), oif=eth0, priority=1024, protocol=4))
        default = c.new_route(10, None, gateway=A("fe80::1"), oif=eth0, priority=1024, table=1000, protocol=4)
        out.append(default)
        return out

    def route_json(r, names):
        s = lambda v: str(v) if v is not None else None
        return {"family": r.family, "dst": s(r.dst), "dst_len": r.dst_len,
                "gateway": s(r.gateway), "dev": names.get(r.oif or 0, ""),
                "table": r.full_table, "metric": r.priority or 0, "protocol": r.protocol, "mtu": r.mtu or 0,
                "prefsrc": str(r.prefsrc) if r.prefsrc is not None else None}

    def addr_json(a, names):
        return {"dev": names.get(a.index, ""), "local": str(a.ip), "prefixlen": a.prefixlen, "scope": a.scope,
                "flags": a.all_flags, "valid": a.cacheinfo.valid if a.cacheinfo else None}

    async def add_and_dump():
        eth0 = socket.if_nametoindex("eth0")
        async with RtnlBatch() as b:
            ra = await b.run_async([Request(nl.RTM_NEWADDR, nl.CREATE_EXCL, a) for a in addresses(eth0)])
            rr = await b.run_async([Request(nl.RTM_NEWROUTE, nl.CREATE_EXCL, r) for r in routes(eth0)])
            names = {lk.index: lk.ifname for lk in await b.dump_async(nl.RTM_GETLINK)}
            rs = await b.dump_async(nl.RTM_GETROUTE)
            ads = await b.dump_async(nl.RTM_GETADDR)
        return {"addr_errors": ra.errors, "route_errors": rr.errors,
                "routes": [route_json(r, names) for r in rs], "addresses": [addr_json(a, names) for a in ads]}

    def failing(ack_all):
        eth0 = socket.if_nametoindex("eth0")
        ok1 = c.new_route(2, P("10.9.0.0/16"), gateway=A("192.0.2.1"), oif=eth0, protocol=4)
        batch = [
            Request(nl.RTM_NEWROUTE, nl.CREATE_EXCL, ok1),
            Request(nl.RTM_NEWROUTE, nl.CREATE_EXCL, ok1),  # EEXIST
            Request(nl.RTM_NEWROUTE, nl.CREATE_EXCL,
                    c.new_route(2, P("10.8.0.0/16"), oif=9999, scope=253)),  # ENODEV
            Request(nl.RTM_NEWROUTE, nl.CREATE_EXCL, c.new_route(2, P("10.7.0.0/16"), oif=eth0, scope=253)),
            Request(nl.RTM_NEWROUTE, nl.CREATE_EXCL,
                    c.new_route(2, P("10.6.0.0/16"), gateway=A("203.0.113.1"), oif=eth0)),  # ENETUNREACH
            Request(nl.RTM_DELADDR, nl.DELETE, c.del_address(eth0, P("192.0.2.99/24"))),  # EADDRNOTAVAIL
            Request(nl.RTM_NEWADDR, nl.CREATE_EXCL, c.new_address(eth0, P("192.0.2.20/24"), 0, 0x80)),
            Request(nl.RTM_DELROUTE, nl.DELETE,
                    c.del_route(c.new_route(2, P("10.5.0.0/16"), oif=eth0))),  # ESRCH
        ]
        with RtnlBatch(ack_all=ack_all) as b:
            res = b.run(batch)
            retry = b.run([batch[i] for i in res.failed()])
        return {"errors": res.errors, "failed": res.failed(), "retry": retry.errors,
                "texts": [res.describe(i) for i in range(len(batch))]}

    def small_buffer():
        # A small receive buffer: chunks shrink to fit; forced big chunks lose answers (ENOBUFS).
        from netd.kernel.rtnl_batch import open_socket
        eth0 = socket.if_nametoindex("eth0")
        reqs = [Request(nl.RTM_NEWROUTE, nl.CREATE_EXCL,
                        c.new_route(2, P(f"10.{i >> 8}.{i & 255}.0/24"), oif=eth0, scope=253, table=77))
                for i in range(3000)]
        out = {}
        for ack_all in (False, True):
            with RtnlBatch(open_socket(rcvbuf=4096), ack_all=ack_all) as b:
                out[f"chunk_{ack_all}"] = b.chunk_messages
                out[f"again_{ack_all}"] = sorted(set(b.run(reqs).errors))
        with RtnlBatch(open_socket(rcvbuf=4096)) as b:
            b.chunk_messages = 3000
            out["forced"] = b.run(reqs).errors
        return out

    mode = sys.argv[1]
    if mode == "small":
        print(json.dumps(small_buffer()))
        sys.exit(0)
    print(json.dumps(asyncio.run(add_and_dump()) if mode == "add" else failing(mode == "fail-ack-all")))
    """
)


def _runner(node: Node, tmp_path: Path, mode: str) -> Any:
    script = tmp_path / "rtnl_runner.py"
    script.write_text(RUNNER)
    out = node.run([sys.executable, str(script), mode], timeout=120).stdout
    return json.loads(out)


def _node(lab: Lab) -> Node:
    node = lab.node("a")
    lab.stub(node, "eth0")
    node.sh("ip addr add 192.0.2.10/24 dev eth0 || true")
    return node


def _ip_table(v: Any) -> int:
    if v is None:
        return 254
    return {"main": 254, "local": 255, "default": 253}.get(v) or int(v)


def _ip_dst(dst: str, family: int) -> str:
    if dst == "default":
        return "0.0.0.0/0" if family == 2 else "::/0"
    if "/" not in dst:
        return f"{dst}/{32 if family == 2 else 128}"
    return str(ipaddress.ip_network(dst))


def _route_key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["dst"], r["table"], r["dev"], r["gateway"], r["metric"], r["mtu"], r["prefsrc"])


def _ours_routes(out: dict[str, Any]) -> set[tuple[Any, ...]]:
    keys = set()
    for r in out["routes"]:
        if r["protocol"] != 4:
            continue
        dst = r["dst"] or ("0.0.0.0" if r["family"] == 2 else "::")
        keys.add(_route_key({**r, "dst": str(ipaddress.ip_network(f"{dst}/{r['dst_len']}"))}))
    return keys


def _ip_routes(node: Node) -> set[tuple[Any, ...]]:
    keys = set()
    for family, flag in ((2, "-4"), (10, "-6")):
        for r in node.ip_json(flag, "route", "show", "table", "all", "proto", "static"):
            mtu = next((m["mtu"] for m in r.get("metrics", []) if "mtu" in m), 0)
            keys.add(
                _route_key(
                    {
                        "dst": _ip_dst(r["dst"], family),
                        "table": _ip_table(r.get("table")),
                        "dev": r.get("dev", ""),
                        "gateway": r.get("gateway"),
                        "metric": r.get("metric", 0),
                        "mtu": mtu,
                        "prefsrc": r.get("prefsrc"),
                    }
                )
            )
    return keys


SCOPES = {"global": 0, "site": 200, "link": 253, "host": 254}


def test_batch_add_and_dump_match_ip(lab: Lab, tmp_path: Path) -> None:
    node = _node(lab)
    node.sh("ip addr del 192.0.2.10/24 dev eth0")  # the batch adds it
    out = _runner(node, tmp_path, "add")
    assert out["addr_errors"] == [0] * 200
    assert out["route_errors"] == [0] * 1000

    ours = _ours_routes(out)
    theirs = _ip_routes(node)
    assert len(ours) == 1000
    assert ours == theirs

    ip_addrs = {
        (link["ifname"], a["local"], a["prefixlen"], SCOPES[a["scope"]])
        for link in node.ip_json("addr")
        for a in link["addr_info"]
    }
    our_addrs = {(a["dev"], a["local"], a["prefixlen"], a["scope"]) for a in out["addresses"]}
    assert our_addrs == ip_addrs
    assert len([a for a in our_addrs if a[0] == "eth0" and a[3] == 0]) == 200

    by_local = {a["local"]: a for a in out["addresses"]}
    assert by_local["2001:db8:ffff::1"]["flags"] & 0x02  # nodad, from IFA_FLAGS
    lease = by_local["198.51.100.1"]
    assert 3500 < lease["valid"] <= 3600
    ip_lease = next(
        a for link in node.ip_json("addr") for a in link["addr_info"] if a["local"] == "198.51.100.1"
    )
    assert abs(ip_lease["valid_life_time"] - lease["valid"]) < 60
    assert by_local["172.16.1.1"]["valid"] == 0xFFFFFFFF


@pytest.mark.parametrize("mode", ["fail", "fail-ack-all"])
def test_batch_reports_exactly_the_failures(lab: Lab, tmp_path: Path, mode: str) -> None:
    node = _node(lab)
    out = _runner(node, tmp_path, mode)
    assert out["errors"] == [
        0,
        errno.EEXIST,
        errno.ENODEV,
        0,
        errno.ENETUNREACH,
        errno.EADDRNOTAVAIL,
        0,
        errno.ESRCH,
    ]
    assert out["failed"] == [1, 2, 4, 5, 7]
    assert out["retry"] == [errno.EEXIST, errno.ENODEV, errno.ENETUNREACH, errno.EADDRNOTAVAIL, errno.ESRCH]
    assert out["texts"][0] == "ok"
    assert out["texts"][1].startswith("File exists")
    # The successes are in the kernel, next to the failures.
    routes = {r["dst"] for r in node.ip_json("-4", "route", "show")}
    assert {"10.9.0.0/16", "10.7.0.0/16"} <= routes
    assert not {"10.8.0.0/16", "10.6.0.0/16"} & routes
    addrs = {a["local"] for link in node.ip_json("addr") for a in link["addr_info"]}
    assert "192.0.2.20" in addrs


def test_small_receive_buffer_shrinks_chunks_and_reports_lost_answers(lab: Lab, tmp_path: Path) -> None:
    node = _node(lab)
    out = _runner(node, tmp_path, "small")
    assert out["chunk_False"] < 3000
    assert out["again_False"] == [0]  # the first run added all 3000
    assert out["again_True"] == [errno.EEXIST]  # every answer arrived, even acking all
    assert len(node.ip_json("route", "show", "table", "77")) == 3000
    # 3000 EEXIST answers cannot fit 8 KiB: those lost are ENOBUFS ("unknown"), none hangs.
    forced = out["forced"]
    assert set(forced) == {errno.EEXIST, errno.ENOBUFS}
    assert forced[0] == errno.EEXIST
