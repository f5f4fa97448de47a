"""Status converges after overload (issue 16): floods of kernel objects added and removed
behind the status controllers' back, with ENOBUFS on their event sockets; afterwards
every status resource equals the kernel (``ip -j``), compared as full sets.

The controllers run in the in-process runner of ``test_status.py``, whose ``specs``
command reads the cosi state directly: ``netctl get routes`` cannot carry 60,000 routes
under the 4 MiB gRPC message limit (issue 17). A small receive buffer (``rcvbuf``,
SO_RCVBUF without FORCE: capped by rmem_max) makes the floods overflow the sockets for
sure; machined's own 32 MiB buffer mostly avoids the overflow. The 100k-route flood and
its timing are in ``bench/apply.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netns.test_status import VETH_UP, Runner, _kernel_routes, _status_routes

if TYPE_CHECKING:
    from harness import Lab, Node

SMALL_RCVBUF = 100_000


def _converge(want: Callable[[], Any], got: Callable[[], Any], timeout: float) -> tuple[Any, Any]:
    deadline = time.monotonic() + timeout
    w, g = want(), got()
    while w != g and time.monotonic() < deadline:
        time.sleep(0.5)
        w, g = want(), got()
    return w, g


def _kernel_addresses(node: Node) -> set[tuple[str, str]]:
    out = set()
    for link in node.ip_json("addr", "show"):
        for a in link.get("addr_info", []):
            out.add((link["ifname"], f"{a['local']}/{a['prefixlen']}"))
    return out


def _status_addresses(specs: dict[str, dict[str, Any]]) -> set[tuple[str, str]]:
    return {(s["linkName"], s["address"]) for s in specs.values()}


def _kernel_links(node: Node) -> set[tuple[str, int, bool]]:
    return {(lk["ifname"], lk["mtu"], "UP" in lk["flags"]) for lk in node.ip_json("link", "show")}


def _status_links(specs: dict[str, dict[str, Any]]) -> set[tuple[str, int, bool]]:
    return {(i, s["mtu"], "UP" in s["flags"].split(",")) for i, s in specs.items()}


def _overflows(r: Runner, controller: str) -> int:
    n: int = r.command("stats", "stats")["stats"][controller]["overflows"]
    return n


def test_route_flood_60k(lab: Lab, tmp_path: Path) -> None:
    node = lab.node("n")
    node.sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1")
    node.sh(VETH_UP)
    r = Runner(node, watch=("NetworkStatus",), rcvbuf=SMALL_RCVBUF)
    n = 60_000
    add = tmp_path / "add.batch"
    add.write_text(
        "".join(
            f"route add 172.{16 + i // 65536}.{(i // 256) % 256}.{i % 256}/32 via 10.0.0.2\n"
            for i in range(n)
        )
    )
    rm = tmp_path / "rm.batch"
    rm.write_text(add.read_text().replace("route add", "route del"))

    def status() -> set[tuple[str, str, str, str, int]]:
        return _status_routes(r.specs("RouteStatus"))

    node.run(["ip", "-batch", str(add)], timeout=120)
    t0 = time.monotonic()
    want, got = _converge(lambda: _kernel_routes(node), status, 60)
    print(f"{n} routes added: status == kernel after {time.monotonic() - t0:.1f} s")
    assert len(want) > n
    assert got == want, (len(got), len(want), sorted(want - got)[:5], sorted(got - want)[:5])
    assert _overflows(r, "network.RouteStatusController") >= 1, "the flood should overflow the socket"
    node.run(["ip", "-batch", str(rm)], timeout=120)
    want, got = _converge(lambda: _kernel_routes(node), status, 60)
    assert got == want, (len(got), len(want))
    assert len(want) < 50


def test_address_and_link_floods(lab: Lab, tmp_path: Path) -> None:
    node = lab.node("n")
    node.sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1")
    node.sh(VETH_UP)
    r = Runner(node, watch=("NetworkStatus",), rcvbuf=SMALL_RCVBUF)

    def addresses() -> set[tuple[str, str]]:
        return _status_addresses(r.specs("AddressStatus"))

    def links() -> set[tuple[str, int, bool]]:
        return _status_links(r.specs("LinkStatus"))

    n = 5000
    add = tmp_path / "addr.batch"
    add.write_text(
        "".join(f"addr add 10.{1 + i // 65536}.{(i // 256) % 256}.{i % 256}/32 dev v0\n" for i in range(n))
    )
    node.run(["ip", "-batch", str(add)], timeout=120)
    want, got = _converge(lambda: _kernel_addresses(node), addresses, 60)
    assert len(want) > n
    assert got == want, (len(got), len(want), sorted(want - got)[:5])

    veths = 300
    lk = tmp_path / "links.batch"
    lk.write_text(
        "".join(
            f"link add fa{i} mtu {1400 + i} type veth peer name fb{i}\nlink set fa{i} up\n"
            for i in range(veths)
        )
    )
    node.run(["ip", "-batch", str(lk)], timeout=120)
    want, got = _converge(lambda: _kernel_links(node), links, 60)
    assert len(want) >= 2 * veths
    assert got == want, (len(got), len(want), sorted(want - got)[:5])

    # And away again: addresses (one batch) and links.
    node.run(["ip", "-batch", "-"], input=add.read_text().replace("addr add", "addr del"), timeout=120)
    node.run(["ip", "-batch", "-"], input="".join(f"link del fa{i}\n" for i in range(veths)), timeout=120)
    want, got = _converge(lambda: _kernel_addresses(node), addresses, 60)
    assert got == want and len(want) < 10
    want, got = _converge(lambda: _kernel_links(node), links, 60)
    assert got == want and len(want) < 10
    stats = r.command("stats", "stats")["stats"]
    print({k: v["overflows"] for k, v in stats.items()})
