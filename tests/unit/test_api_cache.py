"""The fast paths of ``netctl get``: the server's per-resource message cache and the
client's ``-o json`` that pastes the server's spec JSON.

Both must be invisible: a List after an update shows the new version, after a
destroy nothing (also when the id comes back at version 1), and ``-o json``
prints exactly the bytes of ``json.dumps`` over the decoded documents, for
every kind of string (quotes, backslashes, non-ASCII, astral) in ids, labels,
finalizers and specs. The memoised helpers (timestamps, flag names) are
checked against the plain computations they replace.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cosi import State
from cosi.resource import metadata_dict, rfc3339, spec_dict
from machined.api.server import PbCache, resource_pb
from netctl.cli import main as netctl
from netctl.client import Client
from netd.resources import register_all
from netd.resources.enums import AddressFlags, LinkFlags, RouteFlags
from netd.resources.namespaces import NETWORK
from netd.resources.resolver import RESOLVER_SPEC_TYPE, ResolverSpec
from netd.resources.route import ROUTE_STATUS_TYPE, RouteStatus

sys.path.insert(0, str(Path(__file__).parent))
from test_api import NETCTL, Lines, ServerThread  # same directory

WEIRD = 'q"b\\s/ä\u2603\U0001f600\t\x01'


def route(dst: str, name: str = "eth0", flags: int = 0) -> RouteStatus:
    return RouteStatus.model_validate(
        {"family": "inet4", "dst": dst, "outLinkIndex": 2, "outLinkName": name, "table": "main",
         "scope": "link", "type": "unicast", "protocol": "boot", "flags": flags}
    )  # fmt: skip


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    srv = ServerThread(tmp_path).start()
    yield srv
    srv.stop()


def json_out(server: ServerThread, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    rc = netctl(["get", *args, "-o", "json", "--endpoint", server.socket])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


def reference(server: ServerThread, type_: str, id_: str | None = None) -> str:
    """``-o json`` as it was printed before the fast path: decode, then json.dumps."""
    with Client(server.socket) as c:
        if id_ is None:
            node, _, items = c.list(type_)
        else:
            node, _, md, spec = c.get(type_, id_)
            items = [(md, spec)]
    docs = [{"node": node, "metadata": md, "spec": spec} for md, spec in items]
    return "".join(json.dumps(d, separators=(",", ":")) + "\n" for d in docs)


def test_list_after_update_and_destroy(server: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    st = server.node.state
    server.call(lambda: [st.put(NETWORK, RESOLVER_SPEC_TYPE, f"r{i}", ResolverSpec()) for i in range(3)])
    first = [json.loads(x) for x in json_out(server, capsys, "resolverspecs").splitlines()]
    assert [(d["metadata"]["id"], d["metadata"]["version"]) for d in first] == [
        ("r0", 1),
        ("r1", 1),
        ("r2", 1),
    ]
    assert json_out(server, capsys, "resolverspecs") == json_out(server, capsys, "resolverspecs")  # cached

    server.call(lambda: st.put(NETWORK, RESOLVER_SPEC_TYPE, "r1", ResolverSpec(dns_servers=["9.9.9.9"])))
    docs = {
        d["metadata"]["id"]: d
        for d in map(json.loads, json_out(server, capsys, "resolverspecs").splitlines())
    }
    assert docs["r1"]["metadata"]["version"] == 2 and docs["r1"]["spec"]["dnsServers"] == ["9.9.9.9"]
    assert docs["r0"] == first[0]
    one = json.loads(json_out(server, capsys, "resolverspecs", "r1"))
    assert one["metadata"]["version"] == 2 and one["spec"]["dnsServers"] == ["9.9.9.9"]

    server.call(lambda: st.destroy(NETWORK, RESOLVER_SPEC_TYPE, "r1"))
    ids = [json.loads(x)["metadata"]["id"] for x in json_out(server, capsys, "resolverspecs").splitlines()]
    assert ids == ["r0", "r2"]
    rc = netctl(["get", "resolverspecs", "r1", "--endpoint", server.socket])
    assert rc == 1 and "does not exist" in capsys.readouterr().err

    # The same id again starts at version 1: what was cached for it must not come back.
    server.call(lambda: st.put(NETWORK, RESOLVER_SPEC_TYPE, "r1", ResolverSpec(dns_servers=["8.8.8.8"])))
    docs = {
        d["metadata"]["id"]: d
        for d in map(json.loads, json_out(server, capsys, "resolverspecs").splitlines())
    }
    assert docs["r1"]["metadata"]["version"] == 1 and docs["r1"]["spec"]["dnsServers"] == ["8.8.8.8"]
    # Finalizer and phase changes are new versions too.
    server.call(lambda: st.add_finalizer(NETWORK, RESOLVER_SPEC_TYPE, "r1", "ctl"))
    server.call(lambda: st.teardown(NETWORK, RESOLVER_SPEC_TYPE, "r1"))
    one = json.loads(json_out(server, capsys, "resolverspecs", "r1"))
    assert one["metadata"]["finalizers"] == ["ctl"] and one["metadata"]["phase"] == "tearingDown"


def test_cache_holds_current_resources_only() -> None:
    st = State()
    register_all(st)
    cache = PbCache(st)
    r1 = st.put(NETWORK, RESOLVER_SPEC_TYPE, "a", ResolverSpec())
    m1 = cache.get(r1)
    assert cache.get(r1) is m1  # built once
    entries = cache._kinds[(NETWORK, RESOLVER_SPEC_TYPE)]
    r2 = st.put(NETWORK, RESOLVER_SPEC_TYPE, "a", ResolverSpec(dns_servers=["1.1.1.1"]))
    assert "a" not in entries  # dropped by the update itself, not at the next read
    m2 = cache.get(r2)
    assert m2.metadata.version == 2 and json.loads(m2.spec_json)["dnsServers"] == ["1.1.1.1"]
    # An old resource (a watcher behind on its events) is encoded but not cached.
    assert cache.get(r1).metadata.version == 1
    assert entries["a"][0] is r2
    st.destroy(NETWORK, RESOLVER_SPEC_TYPE, "a")
    assert entries == {}
    cache.get(r2)  # the last state, as a DESTROYED event carries it
    assert entries == {}
    cache.close()
    r3 = st.put(NETWORK, RESOLVER_SPEC_TYPE, "b", ResolverSpec())
    assert cache.get(r3).metadata.id == "b" and cache._kinds[(NETWORK, RESOLVER_SPEC_TYPE)]["b"][0] is r3


def test_json_is_byte_identical(server: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    st = server.node.state

    def seed() -> None:
        st.put(NETWORK, ROUTE_STATUS_TYPE, "plain", route("10.0.0.0/24"), owner="x")
        st.put(NETWORK, ROUTE_STATUS_TYPE, "flags", route("10.0.1.0/24", flags=0x300), owner="x")
        st.put(
            NETWORK,
            ROUTE_STATUS_TYPE,
            WEIRD,
            route("10.0.2.0/24", WEIRD),
            owner="x",
            labels={WEIRD: WEIRD, "a": "b"},
        )
        st.add_finalizer(NETWORK, ROUTE_STATUS_TYPE, WEIRD, WEIRD, "f2")
        st.put(NETWORK, RESOLVER_SPEC_TYPE, "empty", ResolverSpec())

    server.call(seed)
    for _ in range(2):  # built, then from the cache
        out = json_out(server, capsys, "routestatuses")
        assert out == reference(server, "routestatuses") and len(out.splitlines()) == 3
        assert json_out(server, capsys, "routestatuses", WEIRD) == reference(server, "routestatuses", WEIRD)
        assert json_out(server, capsys, "resolverspecs") == reference(server, "resolverspecs")
    doc = json.loads(json_out(server, capsys, "routestatuses", WEIRD))
    assert doc["metadata"]["labels"] == {"a": "b", WEIRD: WEIRD} and doc["metadata"]["finalizers"] == [
        WEIRD,
        "f2",
    ]
    assert doc["spec"]["outLinkName"] == WEIRD
    flags = json.loads(json_out(server, capsys, "routestatuses", "flags"))["spec"]["flags"]
    assert flags == "notify,cloned"


def test_watch_json_is_byte_identical(server: ServerThread) -> None:
    st = server.node.state
    server.call(
        lambda: st.put(NETWORK, ROUTE_STATUS_TYPE, WEIRD, route("10.0.2.0/24", WEIRD), labels={"k": WEIRD})
    )
    proc = subprocess.Popen(
        [NETCTL, "get", "routestatuses", "-w", "-o", "json", "--endpoint", server.socket],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines = Lines(proc)
    try:
        doc = json.loads(reference(server, "routestatuses"))
        created = lines.next()
        assert created == json.dumps(
            {"node": doc["node"], "event": "created", "metadata": doc["metadata"], "spec": doc["spec"]},
            separators=(",", ":"),
        )
        server.call(
            lambda: st.put(NETWORK, ROUTE_STATUS_TYPE, WEIRD, route("10.0.2.0/24", "x"), labels={"k": WEIRD})
        )
        updated = json.loads(lines.next())
        assert updated["event"] == "updated" and updated["spec"]["outLinkName"] == "x"
        server.call(lambda: st.destroy(NETWORK, ROUTE_STATUS_TYPE, WEIRD))
        destroyed = json.loads(lines.next())
        assert destroyed["event"] == "destroyed" and destroyed["metadata"]["version"] == 2
        assert list(destroyed) == ["node", "event", "metadata", "spec"]
    finally:
        proc.kill()
        proc.wait()


def test_rfc3339_memo_matches_strftime() -> None:
    now = time.time()
    for ts in (0.0, 0.999, 1.0, -0.5, -1.0, 1e9 + 0.5, now, now + 0.4, 253402300799.9):
        assert rfc3339(ts) == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)), ts
    for bad, exc in ((float("nan"), ValueError), (float("inf"), OverflowError)):
        with pytest.raises(exc):
            rfc3339(bad)


@pytest.mark.parametrize("cls", [RouteFlags, AddressFlags, LinkFlags])
def test_flag_names_memo_matches_the_walk(cls: type[RouteFlags]) -> None:
    for v in [*range(1 << 12), 0x7FFFF, 0xFFFFFFFF, 1 << 40]:
        x = cls(v)
        want = [m._flag_label() for m in cls if m._value_ and (x & m) == m]
        assert x.names() == want and str(x) == ",".join(want) and f"{x}" == ",".join(want)
        x.names().append("mutated")  # a fresh list every time
        assert x.names() == want


def test_resource_pb_is_metadata_dict_and_compact_spec_json() -> None:
    st = State()
    register_all(st)
    st.put(
        NETWORK, ROUTE_STATUS_TYPE, WEIRD, route("10.0.2.0/24", WEIRD, 0x100), labels={WEIRD: "x", "a": ""}
    )
    st.add_finalizer(NETWORK, ROUTE_STATUS_TYPE, WEIRD, "b", WEIRD)
    st.teardown(NETWORK, ROUTE_STATUS_TYPE, WEIRD)
    st.put(NETWORK, RESOLVER_SPEC_TYPE, "plain", ResolverSpec())
    for res in (
        st.must_get(NETWORK, ROUTE_STATUS_TYPE, WEIRD),
        st.must_get(NETWORK, RESOLVER_SPEC_TYPE, "plain"),
    ):
        m = resource_pb(res)
        md = metadata_dict(res.md)
        got = {f: getattr(m.metadata, f) for f in ("namespace", "type", "id", "version", "owner", "phase")}
        got |= {"created": m.metadata.created, "updated": m.metadata.updated}
        if m.metadata.labels:
            got["labels"] = dict(m.metadata.labels)
        got["finalizers"] = list(m.metadata.finalizers)
        assert got == md
        assert m.spec_json == json.dumps(spec_dict(res.spec), separators=(",", ":"))
