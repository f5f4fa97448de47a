"""The discovery client against a real in-process gRPC server on loopback (kubespan.md §4.6).

``FakeCluster`` is a deliberately small Cluster servicer: enough of §4.8 to
publish, merge endpoints, delete and watch, plus knobs to redirect, fail calls
and push arbitrary (hostile) Watch messages.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import os
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from discovery_client import (
    AffiliateInfo,
    ClientTimers,
    ClusterCipher,
    DiscoveryClient,
    Endpoint,
    KubeSpanInfo,
    constants,
    marshal_ip,
    open_endpoint,
    seal_affiliate,
    seal_endpoint,
)
from discovery_client.api import affiliate_pb2, cluster_pb2, cluster_pb2_grpc
from discovery_client.backoff import ExponentialBackoff
from discovery_client.constants import DISCOVERY_TTL
from discovery_client.target import Target, parse_endpoint, resolve_redirect

SECRET = "kCQsKr4B28VUl7qw1sVkTDNF9fFH++ViIuKsss+C6kc="
CIPHER = ClusterCipher.from_secret(SECRET)
CLUSTER = "cluster1"
ip = ipaddress.ip_address

FAST = ClientTimers(
    ttl=60.0,
    hello_timeout=1.0,
    refresh_timeout=1.0,
    backoff_initial=0.02,
    backoff_max_interval=0.1,
    leave_timeout=1.0,
    keepalive=0,
)


async def until(pred: Callable[[], object], timeout: float = 3.0, what: str = "condition") -> None:
    """Poll ``pred`` until true; ``timeout`` is >= 3x what each scenario needs."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def info(name: str, *, ks: bool = True) -> AffiliateInfo:
    return AffiliateInfo(
        node_id=name,
        addresses=(ip("10.0.0.1"),),
        hostname=name,
        nodename=name,
        machine_type="worker",
        operating_system="Talos (v1.6.8)",
        kubespan=KubeSpanInfo("pk-" + name, ip("fd00::1")) if ks else None,
    )


class FakeCluster(cluster_pb2_grpc.ClusterServicer):
    def __init__(self) -> None:
        self.affiliates: dict[str, cluster_pb2.Affiliate] = {}
        self.subscribers: list[asyncio.Queue[cluster_pb2.WatchResponse | None]] = []
        self.redirect: str | None = None
        self.hellos: list[cluster_pb2.HelloRequest] = []
        self.updates: list[cluster_pb2.AffiliateUpdateRequest] = []
        self.deletes: list[cluster_pb2.AffiliateDeleteRequest] = []
        self.fail_hello = 0  # fail the next N Hellos
        self.fail_update = 0  # fail the next N AffiliateUpdates

    # --- knobs ---

    def put(self, aff: cluster_pb2.Affiliate) -> None:
        self.affiliates[aff.id] = aff
        self.push(cluster_pb2.WatchResponse(affiliates=[aff]))

    def remove(self, aid: str) -> None:
        self.affiliates.pop(aid, None)
        self.push(cluster_pb2.WatchResponse(affiliates=[cluster_pb2.Affiliate(id=aid)], deleted=True))

    def push(self, msg: cluster_pb2.WatchResponse | None) -> None:
        """None ends every Watch stream cleanly."""
        for q in self.subscribers:
            q.put_nowait(msg)

    def updates_for(self, aid: str) -> list[cluster_pb2.AffiliateUpdateRequest]:
        return [u for u in self.updates if u.affiliate_id == aid]

    # --- RPCs ---

    async def Hello(self, request: Any, context: Any) -> cluster_pb2.HelloResponse:
        self.hellos.append(request)
        if self.fail_hello:
            self.fail_hello -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "not yet")
        resp = cluster_pb2.HelloResponse()
        peer = context.peer()  # "ipv4:127.0.0.1:54321"
        if peer.startswith("ipv4:"):
            resp.client_ip = marshal_ip(ip(peer[5:].rsplit(":", 1)[0]))
        if self.redirect:
            resp.redirect.endpoint = self.redirect
        return resp

    async def AffiliateUpdate(self, request: Any, context: Any) -> cluster_pb2.AffiliateUpdateResponse:
        self.updates.append(request)
        if self.fail_update:
            self.fail_update -= 1
            await context.abort(grpc.StatusCode.INTERNAL, "boom")
        aff = cluster_pb2.Affiliate()
        aff.CopyFrom(
            self.affiliates.get(request.affiliate_id, cluster_pb2.Affiliate(id=request.affiliate_id))
        )
        if request.HasField("affiliate_data") and request.affiliate_data:
            aff.data = request.affiliate_data
        for ep in request.affiliate_endpoints:
            if ep not in aff.endpoints:
                aff.endpoints.append(ep)
        self.put(aff)
        return cluster_pb2.AffiliateUpdateResponse()

    async def AffiliateDelete(self, request: Any, context: Any) -> cluster_pb2.AffiliateDeleteResponse:
        self.deletes.append(request)
        self.remove(request.affiliate_id)
        return cluster_pb2.AffiliateDeleteResponse()

    async def List(self, request: Any, context: Any) -> cluster_pb2.ListResponse:
        return cluster_pb2.ListResponse(affiliates=list(self.affiliates.values()))

    async def Watch(self, request: Any, context: Any) -> AsyncIterator[cluster_pb2.WatchResponse]:
        q: asyncio.Queue[cluster_pb2.WatchResponse | None] = asyncio.Queue()
        self.subscribers.append(q)
        try:
            yield cluster_pb2.WatchResponse(affiliates=list(self.affiliates.values()))
            while (msg := await q.get()) is not None:
                yield msg
        finally:
            self.subscribers.remove(q)


class Server:
    """A real grpc.aio server on 127.0.0.1 that can be stopped and restarted on the same port."""

    def __init__(self, credentials: grpc.ServerCredentials | None = None) -> None:
        self.cluster = FakeCluster()
        self.port = 0
        self._credentials = credentials
        self._server: grpc.aio.Server | None = None

    async def start(self, fresh_state: bool = False) -> Server:
        if fresh_state:
            self.cluster = FakeCluster()
        server = grpc.aio.server(options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])
        cluster_pb2_grpc.add_ClusterServicer_to_server(self.cluster, server)
        addr = f"127.0.0.1:{self.port}"
        if self._credentials is None:
            self.port = server.add_insecure_port(addr)
        else:
            self.port = server.add_secure_port(addr.replace("127.0.0.1", "localhost"), self._credentials)
        await server.start()
        self._server = server
        return self

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    s = await Server().start()
    yield s
    await s.stop()


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., DiscoveryClient]]:
    clients: list[DiscoveryClient] = []

    def make(endpoint: str, affiliate_id: str, **kw: Any) -> DiscoveryClient:
        kw.setdefault("timers", FAST)
        c = DiscoveryClient(
            CIPHER,
            endpoint=endpoint,
            cluster_id=CLUSTER,
            affiliate_id=affiliate_id,
            client_version="v1.6.8",
            rng=random.Random(1),
            **kw,
        )
        clients.append(c)
        return c

    yield make
    for c in clients:
        await c.stop()


def ids(c: DiscoveryClient) -> set[str]:
    return {a.id for a in c.get_affiliates()}


def sealed(aid: str, name: str, *eps: Endpoint) -> cluster_pb2.Affiliate:
    return cluster_pb2.Affiliate(
        id=aid, data=seal_affiliate(CIPHER, info(name)), endpoints=[seal_endpoint(CIPHER, e) for e in eps]
    )


EP_A = Endpoint(ip("192.0.2.1"), 51820)
EP_A6 = Endpoint(ip("2001:db8::a"), 51820)


# --- basic flow ---


async def test_publish_and_watch(server: Server, make_client: Callable[..., DiscoveryClient]) -> None:
    notified: list[int] = []
    a = make_client(server.endpoint, "node-a")
    b = make_client(server.endpoint, "node-b", on_update=lambda: notified.append(1))
    a.set_local_data(info("a"), [EP_A, EP_A6])
    a.start()
    b.start()
    await until(lambda: ids(b) == {"node-a"}, what="b sees a")
    [seen] = b.get_affiliates()
    assert seen.affiliate == info("a")
    assert seen.endpoints == (EP_A, EP_A6)
    assert ids(a) == set()  # never itself; b published nothing
    assert notified and b.changed.is_set()
    assert b.get_public_ip() == ip("127.0.0.1")
    assert server.cluster.hellos[0] == cluster_pb2.HelloRequest(cluster_id=CLUSTER, client_version="v1.6.8")
    [upd] = server.cluster.updates_for("node-a")
    assert upd.ttl.seconds == 60 and upd.HasField("affiliate_data")

    b.set_local_data(info("b"), [])
    await until(lambda: ids(a) == {"node-b"}, what="a sees b")
    assert a.get_affiliates()[0].endpoints == ()


async def test_hello_redirect(make_client: Callable[..., DiscoveryClient]) -> None:
    first, second = await Server().start(), await Server().start()
    try:
        first.cluster.redirect = second.endpoint
        c = make_client(first.endpoint, "node-a")
        c.set_local_data(info("a"), [EP_A])
        c.start()
        await until(lambda: second.cluster.updates_for("node-a"), what="publish on the redirect target")
        assert c.target == Target(second.endpoint, tls=False)
        assert first.cluster.updates == [] and len(first.cluster.hellos) == 1
        assert len(second.cluster.hellos) == 1
    finally:
        await first.stop()
        await second.stop()


async def test_snapshot_then_deltas_and_deleted(
    server: Server, make_client: Callable[..., DiscoveryClient]
) -> None:
    server.cluster.affiliates = {"x": sealed("x", "x", EP_A), "y": sealed("y", "y")}
    c = make_client(server.endpoint, "node-a")
    c.start()
    await until(lambda: ids(c) == {"x", "y"}, what="snapshot")
    server.cluster.remove("y")
    await until(lambda: ids(c) == {"x"}, what="deleted")
    server.cluster.put(sealed("z", "z", EP_A6))
    await until(lambda: ids(c) == {"x", "z"}, what="delta")
    # an update replaces the previous entry of the same id
    server.cluster.put(sealed("x", "x2"))
    await until(lambda: c.get_affiliates()[0].affiliate.node_id == "x2", what="replaced")
    assert c.get_affiliates()[0].endpoints == ()
    # an entry only other nodes reported endpoints for (no data) is not a member
    server.cluster.put(cluster_pb2.Affiliate(id="w", endpoints=[seal_endpoint(CIPHER, EP_A)]))
    server.cluster.put(sealed("v", "v"))
    await until(lambda: "v" in ids(c), what="later delta")
    assert ids(c) == {"x", "z", "v"}


async def test_refresh_republishes(server: Server, make_client: Callable[..., DiscoveryClient]) -> None:
    c = make_client(
        server.endpoint, "node-a", timers=ClientTimers(**{**FAST.__dict__, "refresh_interval": 0.1})
    )
    c.set_local_data(info("a"), [EP_A])
    c.start()
    await until(lambda: len(server.cluster.updates_for("node-a")) >= 4, what="periodic refresh")
    blobs = {u.affiliate_data for u in server.cluster.updates_for("node-a")}
    assert len(blobs) == 1  # same payload re-sent, not re-encrypted
    assert len(server.cluster.hellos) == 1  # on the same connection


async def test_refresh_interval_defaults_to_half_ttl() -> None:
    assert ClientTimers().effective_refresh_interval == DISCOVERY_TTL / 2 == 900
    assert ClientTimers().effective_keepalive == 180
    assert ClientTimers(ttl=20).effective_keepalive == 10
    t = ClientTimers.from_tunables({"DISCOVERY_TTL": 4, "DISCOVERY_BACKOFF_INITIAL": "0.1", "OTHER": 1})
    assert (t.ttl, t.backoff_initial, t.effective_refresh_interval) == (4.0, 0.1, 2.0)


async def test_local_update_triggers_refresh(
    server: Server, make_client: Callable[..., DiscoveryClient]
) -> None:
    c = make_client(server.endpoint, "node-a")
    c.start()
    await until(lambda: server.cluster.subscribers, what="watch")
    assert server.cluster.updates == []  # nothing to publish yet
    c.set_local_data(info("a"), [])
    await until(lambda: len(server.cluster.updates) == 1, what="first publish")
    c.set_local_data(info("a2"), [EP_A])
    await until(lambda: len(server.cluster.updates) == 2, what="second publish")
    assert server.cluster.updates[0].affiliate_data != server.cluster.updates[1].affiliate_data


async def test_other_endpoints_sent_without_data(
    server: Server, make_client: Callable[..., DiscoveryClient]
) -> None:
    c = make_client(server.endpoint, "node-a")
    c.set_local_data(info("a"), [EP_A], [("node-x", [EP_A6]), ("node-y", [EP_A, EP_A6])])
    c.start()
    await until(lambda: server.cluster.updates_for("node-y"), what="harvested endpoints")
    [x] = server.cluster.updates_for("node-x")
    assert not x.HasField("affiliate_data")
    assert [open_endpoint(CIPHER, e) for e in x.affiliate_endpoints] == [EP_A6]
    assert x.ttl.seconds == 60
    [y] = server.cluster.updates_for("node-y")
    assert [open_endpoint(CIPHER, e) for e in y.affiliate_endpoints] == [EP_A, EP_A6]
    assert [u.affiliate_id for u in server.cluster.updates] == ["node-a", "node-x", "node-y"]


async def test_delete_local_affiliate_through_run_loop(
    server: Server, make_client: Callable[..., DiscoveryClient]
) -> None:
    a = make_client(server.endpoint, "node-a")
    b = make_client(server.endpoint, "node-b")
    a.set_local_data(info("a"), [EP_A])
    a.start()
    b.start()
    await until(lambda: ids(b) == {"node-a"}, what="published")
    a.delete_local_affiliate()
    await until(lambda: ids(b) == set(), what="deleted")
    assert server.cluster.deletes[-1] == cluster_pb2.AffiliateDeleteRequest(
        cluster_id=CLUSTER, affiliate_id="node-a"
    )


async def test_leave(server: Server, make_client: Callable[..., DiscoveryClient]) -> None:
    a = make_client(server.endpoint, "node-a")
    b = make_client(server.endpoint, "node-b")
    a.set_local_data(info("a"), [EP_A])
    a.start()
    b.start()
    await until(lambda: ids(b) == {"node-a"}, what="published")
    await a.stop()  # the daemon stops the loop, then leaves
    assert "node-a" in server.cluster.affiliates  # a plain stop keeps the record (TTL)
    assert await a.leave() is True
    assert "node-a" not in server.cluster.affiliates
    await until(lambda: ids(b) == set(), what="b sees a leave")


async def test_leave_is_best_effort(make_client: Callable[..., DiscoveryClient]) -> None:
    s = await Server().start()
    port = s.port
    await s.stop()
    c = make_client(f"127.0.0.1:{port}", "node-a")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert await c.leave(timeout=0.3) is False
    assert loop.time() - t0 < 2.0


# --- failures and reconnects ---


async def test_reconnect_after_server_restart(
    make_client: Callable[..., DiscoveryClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="discovery_client")
    s = await Server().start()
    try:
        s.cluster.affiliates = {"x": sealed("x", "x")}
        c = make_client(s.endpoint, "node-a")
        c.set_local_data(info("a"), [EP_A])
        c.start()
        await until(lambda: ids(c) == {"x"} and s.cluster.updates, what="connected")
        await s.stop()
        await until(lambda: c._watch_task is None or c._watch_task.done(), what="watch noticed the outage")
        await until(lambda: caplog.text.count("hello to") >= 3, what="a few failed Hellos with backoff")
        assert ids(c) == {"x"}  # last known state kept while the service is away
        await s.start(fresh_state=True)  # same port, empty memory (a restarted service)
        await until(lambda: s.cluster.updates_for("node-a"), what="re-published after restart")
        assert s.cluster.affiliates["node-a"].data  # own record is back
        await until(lambda: ids(c) == set(), what="new snapshot replaced the old members")
    finally:
        await s.stop()


async def test_hello_errors_retry_with_backoff(
    server: Server, make_client: Callable[..., DiscoveryClient]
) -> None:
    server.cluster.fail_hello = 3
    c = make_client(server.endpoint, "node-a")
    c.set_local_data(info("a"), [])
    c.start()
    await until(lambda: server.cluster.updates, what="publish after failed hellos")
    assert len(server.cluster.hellos) == 4


async def test_refresh_failure_reconnects_at_once(
    server: Server, make_client: Callable[..., DiscoveryClient]
) -> None:
    """Q2: a failed refresh goes through the backoff path instead of waiting 15 min."""
    server.cluster.fail_update = 2
    c = make_client(server.endpoint, "node-a")
    c.set_local_data(info("a"), [])
    c.start()
    await until(lambda: "node-a" in server.cluster.affiliates, what="publish after failed refreshes")
    assert len(server.cluster.hellos) == 3
    assert len(server.cluster.updates) == 3


async def test_watch_end_reconnects(server: Server, make_client: Callable[..., DiscoveryClient]) -> None:
    c = make_client(server.endpoint, "node-a")
    c.set_local_data(info("a"), [])
    c.start()
    await until(lambda: server.cluster.subscribers and server.cluster.updates, what="connected")
    server.cluster.push(None)  # server ends the stream with OK
    await until(
        lambda: len(server.cluster.hellos) == 2 and len(server.cluster.updates) == 2, what="reconnect"
    )


# --- hostile server ---


def _junk(rnd: random.Random, n: int) -> bytes:
    return rnd.randbytes(n)


async def test_hostile_server(
    server: Server, make_client: Callable[..., DiscoveryClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="discovery_client")
    rnd = random.Random(7)
    good = sealed("good", "good", EP_A)
    server.cluster.affiliates = {"good": good}
    c = make_client(server.endpoint, "node-a")
    c.set_local_data(info("a"), [])
    c.start()
    await until(lambda: ids(c) == {"good"} and server.cluster.updates, what="connected")

    bad_ip_aff = affiliate_pb2.Affiliate(node_id="badip", addresses=[bytes(5), b"", bytes([10, 0, 0, 9])])
    bad_ip_aff.kubespan.address = bytes(7)
    bad_eps = [
        CIPHER.encrypt_endpoint(affiliate_pb2.Endpoint(ip=bytes(3), port=1).SerializeToString()),
        CIPHER.encrypt_endpoint(affiliate_pb2.Endpoint(ip=bytes(17) + b"\xff", port=1).SerializeToString()),
        _junk(rnd, 16),
        _junk(rnd, 7),
        seal_endpoint(CIPHER, EP_A6),
    ]
    hostile = [
        cluster_pb2.Affiliate(id="random", data=_junk(rnd, 200), endpoints=[_junk(rnd, 16), _junk(rnd, 33)]),
        cluster_pb2.Affiliate(id="eleven", data=_junk(rnd, 11)),
        cluster_pb2.Affiliate(id="twelve", data=_junk(rnd, 12)),
        cluster_pb2.Affiliate(id="nonpb", data=CIPHER.encrypt_data(b"\xff" * 40)),
        cluster_pb2.Affiliate(
            id="badip", data=CIPHER.encrypt_data(bad_ip_aff.SerializeToString()), endpoints=bad_eps
        ),
    ]
    for aff in hostile:
        server.cluster.push(cluster_pb2.WatchResponse(affiliates=[aff]))
    # several junk affiliates in one message, then a "deleted" for an unknown id
    server.cluster.push(
        cluster_pb2.WatchResponse(
            affiliates=[cluster_pb2.Affiliate(id=f"j{i}", data=_junk(rnd, 64)) for i in range(50)]
        )
    )
    server.cluster.push(
        cluster_pb2.WatchResponse(affiliates=[cluster_pb2.Affiliate(id="nobody")], deleted=True)
    )
    server.cluster.put(sealed("marker", "marker"))
    await until(lambda: "marker" in ids(c), what="stream still alive after hostile messages")
    assert ids(c) == {"good", "badip", "marker"}
    badip = next(a for a in c.get_affiliates() if a.id == "badip")
    assert badip.affiliate.addresses == (ip("10.0.0.9"),)
    assert badip.affiliate.kubespan is not None and badip.affiliate.kubespan.address is None
    assert badip.endpoints == (EP_A6,)
    assert "affiliate 'random' skipped" in caplog.text
    assert "'eleven': data too short" in caplog.text
    assert "affiliate 'twelve' skipped" in caplog.text
    assert len(server.cluster.hellos) == 1  # none of that cost a reconnect

    # several MB, but within the receive limit: accepted (and the junk skipped)
    server.cluster.push(
        cluster_pb2.WatchResponse(affiliates=[cluster_pb2.Affiliate(id="big", data=os.urandom(5 << 20))])
    )
    server.cluster.put(sealed("marker2", "marker2"))
    await until(lambda: "marker2" in ids(c), what="5 MB message accepted")
    assert len(server.cluster.hellos) == 1

    # too large: the stream fails with RESOURCE_EXHAUSTED, the client reconnects and keeps its members
    server.cluster.push(
        cluster_pb2.WatchResponse(affiliates=[cluster_pb2.Affiliate(id="huge", data=os.urandom(9 << 20))])
    )
    await until(
        lambda: len(server.cluster.hellos) == 2 and len(server.cluster.updates) == 2, what="reconnect"
    )
    await until(lambda: len(server.cluster.subscribers) == 1, what="new watch")
    assert "RESOURCE_EXHAUSTED" in caplog.text
    assert {"good", "marker", "marker2"} <= ids(c)
    server.cluster.put(sealed("after", "after"))
    await until(lambda: "after" in ids(c), what="watch works after reconnect")


async def test_hostile_hello(server: Server, make_client: Callable[..., DiscoveryClient]) -> None:
    """A malformed client_ip and an unusable redirect do not stop the client."""

    class Hostile(FakeCluster):
        async def Hello(self, request: Any, context: Any) -> cluster_pb2.HelloResponse:
            self.hellos.append(request)
            resp = cluster_pb2.HelloResponse(client_ip=bytes(5))
            resp.redirect.endpoint = "host:notaport"
            return resp

    await server.stop()
    server.cluster = Hostile()
    await server.start()
    c = make_client(server.endpoint, "node-a")
    c.set_local_data(info("a"), [])
    c.start()
    await until(lambda: server.cluster.updates, what="publish")
    assert c.get_public_ip() is None
    assert c.target.address == server.endpoint


async def test_callback_errors_are_contained(
    server: Server, make_client: Callable[..., DiscoveryClient]
) -> None:
    def boom() -> None:
        raise RuntimeError("owner bug")

    server.cluster.affiliates = {"x": sealed("x", "x")}
    c = make_client(server.endpoint, "node-a", on_update=boom)
    c.start()
    await until(lambda: ids(c) == {"x"}, what="snapshot")
    server.cluster.put(sealed("y", "y"))
    await until(lambda: ids(c) == {"x", "y"}, what="delta after a failing callback")


# --- TLS ---


def _self_signed() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


async def test_tls(make_client: Callable[..., DiscoveryClient]) -> None:
    cert, key = _self_signed()
    s = await Server(grpc.ssl_server_credentials([(key, cert)])).start()
    try:
        c = make_client(f"https://localhost:{s.port}/", "node-a", root_certificates=cert)
        assert c.target == Target(f"localhost:{s.port}", tls=True)
        c.set_local_data(info("a"), [EP_A])
        c.start()
        await until(lambda: s.cluster.updates, what="publish over TLS")
        # an untrusted certificate never gets a Hello through
        other_cert, _ = _self_signed()
        bad = make_client(f"https://localhost:{s.port}", "node-b", root_certificates=other_cert)
        assert await bad.leave(timeout=0.3) is False
        assert s.cluster.deletes == []
    finally:
        await s.stop()


# --- endpoint parsing (§4.1) ---


@pytest.mark.parametrize(
    ("endpoint", "insecure", "target"),
    [
        ("https://discovery.talos.dev/", False, Target("discovery.talos.dev:443", True)),
        ("discovery.talos.dev:443", False, Target("discovery.talos.dev:443", True)),
        ("discovery.talos.dev:443", True, Target("discovery.talos.dev:443", False)),
        ("https://discovery.talos.dev:3000", True, Target("discovery.talos.dev:3000", False)),
        ("http://10.5.0.1:3000", False, Target("10.5.0.1:3000", False)),
        ("127.0.0.1:3000", False, Target("127.0.0.1:3000", False)),
        ("[::1]:3000", False, Target("[::1]:3000", False)),
        ("https://[::1]:3000", False, Target("[::1]:3000", True)),
        ("localhost:3000", False, Target("localhost:3000", False)),
    ],
)
def test_parse_endpoint(endpoint: str, insecure: bool, target: Target) -> None:
    assert parse_endpoint(endpoint, insecure) == target


@pytest.mark.parametrize("endpoint", ["ftp://x:1", "https://:80", "x:port", ""])
def test_parse_endpoint_rejects(endpoint: str) -> None:
    with pytest.raises(ValueError):
        parse_endpoint(endpoint)


def test_redirect_keeps_transport_security() -> None:
    tls = Target("a:443", True)
    assert resolve_redirect(tls, "b.example:443") == Target("b.example:443", True)
    assert resolve_redirect(Target("a:80", False), "b.example:3000") == Target("b.example:3000", False)
    assert resolve_redirect(tls, "http://b:1") == Target("b:1", False)


def test_client_rejects_bad_endpoint() -> None:
    with pytest.raises(ValueError):
        DiscoveryClient(CIPHER, endpoint="ftp://x", cluster_id=CLUSTER, affiliate_id="a")


# --- backoff (§4.6) ---


def test_backoff_sequence() -> None:
    b = ExponentialBackoff(rng=random.Random(3))
    expected = 0.5
    for _ in range(30):
        assert b.current == pytest.approx(expected)
        wait = b.next()
        assert 0.5 * expected <= wait <= 1.5 * expected
        expected = min(expected * 1.5, 60.0)
    assert b.current == 60.0  # the interval is capped; a single wait may reach 90 s
    b.reset()
    assert b.current == 0.5


def test_tunable_keys_match_constant_names() -> None:
    keys = ClientTimers.tunable_keys()
    for name in (
        "DISCOVERY_TTL",
        "DISCOVERY_HELLO_TIMEOUT",
        "DISCOVERY_REFRESH_TIMEOUT",
        "DISCOVERY_BACKOFF_INITIAL",
        "DISCOVERY_BACKOFF_MULTIPLIER",
        "DISCOVERY_BACKOFF_RANDOMIZATION",
        "DISCOVERY_BACKOFF_MAX_INTERVAL",
        "DISCOVERY_LEAVE_TIMEOUT",
    ):
        assert name in keys
        assert hasattr(constants, name)
    assert ClientTimers.from_tunables({k: 1 for k in keys}) == ClientTimers(*([1.0] * len(keys)))
