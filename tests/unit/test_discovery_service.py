"""The discovery service's §4.8 semantics through a real grpc.aio server and client on 127.0.0.1.

Fast pure tests of the shared rules (model, rate limiter, subscriptions, state file) first, then
the gRPC API end to end, then the command itself (SIGTERM, state file across a restart).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf.duration_pb2 import Duration
from harness.etcd import free_port

from discovery_client.api import cluster_pb2, cluster_pb2_grpc
from discovery_client.crypto import ClusterCipher
from discovery_client.models import AffiliateInfo, Endpoint
from discovery_client.payload import open_affiliate, open_endpoint, seal_affiliate, seal_endpoint
from discovery_service.config import ServiceConfig
from discovery_service.errors import LimitExceeded
from discovery_service.limits import Limits
from discovery_service.memory_store import MemoryStore
from discovery_service.metrics import client_version_label
from discovery_service.model import (
    AffiliateRecord,
    AffiliateView,
    EndpointRecord,
    Notification,
    expire,
    merge_update,
)
from discovery_service.ratelimit import RateLimiter
from discovery_service.server import DiscoveryServer
from discovery_service.statefile import decode, encode
from discovery_service.subscriptions import Hub, LostUpdate

CLUSTER = "8XuV9TZHW08DOk3bVxQjH9ih_TBKjnh-j44tsCLSBzo="
SECRET = "kCQsKr4B28VUl7qw1sVkTDNF9fFH++ViIuKsss+C6kc="
ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 10.0  # every poll/await below: ≥ 3x what the operation needs


# --- helpers -------------------------------------------------------------------------------------


def ttl(seconds: float) -> Duration:
    return Duration(seconds=int(seconds), nanos=int((seconds % 1) * 1e9))


def update(
    aid: str,
    data: bytes | None = None,
    endpoints: list[bytes] | None = None,
    seconds: float = 1800,
    cluster: str = CLUSTER,
) -> cluster_pb2.AffiliateUpdateRequest:
    req = cluster_pb2.AffiliateUpdateRequest(
        cluster_id=cluster, affiliate_id=aid, affiliate_endpoints=endpoints or [], ttl=ttl(seconds)
    )
    if data is not None:
        req.affiliate_data = data
    return req


async def until(cond: Callable[[], Awaitable[bool]], timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not await cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


class Service:
    """A running DiscoveryServer with a client stub on it."""

    def __init__(self, server: DiscoveryServer, channel: grpc.aio.Channel) -> None:
        self.server = server
        self.channel = channel
        self.stub = cluster_pb2_grpc.ClusterStub(channel)
        self.target = f"127.0.0.1:{server.port}"

    async def listing(self, cluster: str = CLUSTER) -> dict[str, cluster_pb2.Affiliate]:
        resp = await self.stub.List(cluster_pb2.ListRequest(cluster_id=cluster), timeout=DEADLINE)
        return {a.id: a for a in resp.affiliates}

    async def watch(self, cluster: str = CLUSTER) -> Watcher:
        w = Watcher(self.stub.Watch(cluster_pb2.WatchRequest(cluster_id=cluster)))
        await w.next()  # the snapshot; keep it in w.snapshot
        return w


class Watcher:
    def __init__(self, call: Any) -> None:
        self.call = call
        self.snapshot: cluster_pb2.WatchResponse | None = None

    async def next(self, timeout: float = DEADLINE) -> cluster_pb2.WatchResponse:
        msg = await asyncio.wait_for(self.call.read(), timeout)
        assert msg is not grpc.aio.EOF, "watch stream ended"
        if self.snapshot is None:
            self.snapshot = msg
        return msg

    async def nothing(self, within: float = 0.3) -> None:
        """No message arrives for `within` seconds (used sparingly: only for "must not notify")."""
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._peek()), within)

    async def _peek(self) -> None:
        msg = await self.call.read()
        raise AssertionError(f"unexpected notification {msg}")


async def start_service(cfg: ServiceConfig | None = None, **kw: Any) -> Service:
    cfg = cfg or ServiceConfig(listen="127.0.0.1:0", rate_limit=0, **kw)
    server = DiscoveryServer(cfg)
    port = await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return Service(server, channel)


@pytest.fixture
async def svc() -> AsyncIterator[Service]:
    s = await start_service()
    yield s
    await s.channel.close()
    await s.server.stop()


@pytest.fixture
async def many() -> AsyncIterator[Callable[..., Awaitable[Service]]]:
    started: list[Service] = []

    async def make(**kw: Any) -> Service:
        s = await start_service(ServiceConfig(**{"listen": "127.0.0.1:0", "rate_limit": 0, **kw}))
        started.append(s)
        return s

    yield make
    for s in started:
        await s.channel.close()
        await s.server.stop()


def cipher() -> ClusterCipher:
    return ClusterCipher.from_secret(SECRET)


def sealed(node: str, ip: str = "10.0.0.1") -> tuple[bytes, bytes]:
    c = cipher()
    info = AffiliateInfo(node_id=node, addresses=(ipaddress.ip_address(ip),), hostname=node, nodename=node)
    return seal_affiliate(c, info), seal_endpoint(c, Endpoint(ipaddress.ip_address(ip), 51820))


# --- pure rules ----------------------------------------------------------------------------------


def test_merge_sets_data_and_dedupes_endpoints_with_max_expiration() -> None:
    r, changed = merge_update(None, "a", b"d1", [b"e1", b"e1"], 100.0, 64)
    assert changed and r.data == b"d1" and [e.blob for e in r.endpoints] == [b"e1"] and r.expiration == 100.0
    r2, changed = merge_update(r, "a", None, [b"e1"], 50.0, 64)
    assert not changed and r2.endpoints[0].expiration == 100.0 and r2.expiration == 100.0
    r3, changed = merge_update(r2, "a", b"d1", [b"e1", b"e2"], 200.0, 64)
    assert changed and [e.blob for e in r3.endpoints] == [b"e1", b"e2"]  # insertion order
    assert r3.endpoints[0].expiration == 200.0 and r3.expiration == 200.0
    _, changed = merge_update(r3, "a", b"d1", [], 300.0, 64)
    assert not changed  # same data again: not a change for watchers


def test_merge_data_sets_expiration_not_max() -> None:
    r, _ = merge_update(None, "a", b"d", [], 500.0, 64)
    r, _ = merge_update(r, "a", b"d2", [], 100.0, 64)
    assert r.expiration == 100.0  # §4.8: data sets expiration; only endpoints use max()


def test_merge_endpoint_limit_leaves_record_untouched() -> None:
    r, _ = merge_update(None, "a", None, [bytes([i]) for i in range(3)], 10.0, 3)
    with pytest.raises(LimitExceeded):
        merge_update(r, "a", b"new", [b"x"], 20.0, 3)
    assert r.data == b"" and len(r.endpoints) == 3


def test_expire_drops_affiliate_or_endpoints() -> None:
    rec = AffiliateRecord("a", b"d", 100.0, [EndpointRecord(b"e1", 50.0), EndpointRecord(b"e2", 100.0)])
    assert expire(rec, 40.0) == (rec, False)
    new, changed = expire(rec, 50.0)  # endpoint expiration ≤ now goes
    assert changed and new is not None and [e.blob for e in new.endpoints] == [b"e2"]
    assert expire(rec, 100.0)[0] is not None  # affiliate: only when expiration < now
    assert expire(rec, 100.5) == (None, True)


def test_rate_limiter_burst_then_rate_and_deadline() -> None:
    now = [0.0]
    lim = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [lim.reserve("ip") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert lim.reserve("ip") == pytest.approx(0.5)
    assert lim.reserve("ip", max_wait=0.5) is None  # would wait 1.0 s: refused, nothing taken
    assert lim.reserve("other") == 0.0  # per IP
    now[0] = 10.0
    assert lim.collect() == 2 and len(lim) == 0  # idle, full buckets are forgotten


async def test_subscription_overflow_is_lost_update() -> None:
    hub = Hub()
    sub = hub.subscribe("c", 2)
    for i in range(2):
        hub.publish("c", Notification(AffiliateView(str(i))))
    assert sub.pending() == 2 and not sub.lost
    hub.publish("c", Notification(AffiliateView("x")))
    with pytest.raises(LostUpdate):
        await sub.next()
    assert not hub.has_subscribers("c")


def test_state_file_roundtrip_drops_expired() -> None:
    state = {
        "c": [
            AffiliateRecord(
                "live", b"d", 200.0, [EndpointRecord(b"old", 90.0), EndpointRecord(b"new", 150.0)]
            ),
            AffiliateRecord("dead", b"d", 50.0, []),
        ]
    }
    back = decode(encode(state, 0.0), now=100.0)
    assert list(back) == ["c"] and [r.id for r in back["c"]] == ["live"]
    assert [e.blob for e in back["c"][0].endpoints] == [b"new"]


def test_client_version_label() -> None:
    assert client_version_label("v1.6.8") == "v1.6"
    assert client_version_label("v1.7.0-alpha.1") == "v1.7"
    assert client_version_label("1.6.8") == "unknown"
    assert client_version_label("garbage" * 100) == "unknown"


async def test_memory_store_cluster_removed_when_empty() -> None:
    store = MemoryStore(Limits())
    await store.update("c", "a", b"d", [], 0.0)
    _, sub = store.watch("c")
    store.collect(time.time() + 1)
    assert store.stats().clusters == 1 and store.stats().affiliates == 0  # a subscriber keeps it
    sub.close()
    store.collect(time.time() + 1)
    assert store.stats().clusters == 0


# --- the gRPC API --------------------------------------------------------------------------------


async def test_watch_snapshot_update_delete_with_encrypted_payloads(svc: Service) -> None:
    w = await svc.watch()
    assert w.snapshot is not None and list(w.snapshot.affiliates) == [] and not w.snapshot.deleted
    data, ep = sealed("node-1")
    await svc.stub.AffiliateUpdate(update("node-1", data, [ep]), timeout=DEADLINE)
    msg = await w.next()
    assert not msg.deleted and len(msg.affiliates) == 1
    a = msg.affiliates[0]
    assert a.id == "node-1" and a.data == data and list(a.endpoints) == [ep]  # opaque, byte-identical
    assert open_affiliate(cipher(), a.data).hostname == "node-1"
    assert open_endpoint(cipher(), a.endpoints[0]).port == 51820
    await svc.stub.AffiliateDelete(
        cluster_pb2.AffiliateDeleteRequest(cluster_id=CLUSTER, affiliate_id="node-1"), timeout=DEADLINE
    )
    msg = await w.next()
    assert msg.deleted and [x.id for x in msg.affiliates] == ["node-1"]
    assert msg.affiliates[0].data == b"" and not msg.affiliates[0].endpoints
    assert await svc.listing() == {}
    # deleting what is not there is no error and notifies nothing
    await svc.stub.AffiliateDelete(cluster_pb2.AffiliateDeleteRequest(cluster_id=CLUSTER, affiliate_id="x"))
    w.call.cancel()


async def test_second_watcher_gets_snapshot_with_data_less_entries(svc: Service) -> None:
    await svc.stub.AffiliateUpdate(update("a", b"data-a", [b"e" * 16]))
    await svc.stub.AffiliateUpdate(update("b", None, [b"f" * 16]))  # only endpoints reported by others
    w = await svc.watch()
    assert w.snapshot is not None
    got = {a.id: (a.data, list(a.endpoints)) for a in w.snapshot.affiliates}
    assert got == {"a": (b"data-a", [b"e" * 16]), "b": (b"", [b"f" * 16])}
    assert set(await svc.listing()) == {"a", "b"}
    w.call.cancel()


BAD_REQUESTS: list[tuple[str, Callable[[], tuple[str, Any]], str]] = [
    (
        "empty cluster",
        lambda: ("AffiliateUpdate", update("a", b"d", cluster="")),
        "cluster_id: must not be empty",
    ),
    (
        "long cluster",
        lambda: ("AffiliateUpdate", update("a", b"d", cluster="c" * 257)),
        "cluster_id: is 257 bytes",
    ),
    ("empty affiliate", lambda: ("AffiliateUpdate", update("", b"d")), "affiliate_id: must not be empty"),
    ("long affiliate", lambda: ("AffiliateUpdate", update("a" * 257, b"d")), "affiliate_id: is 257 bytes"),
    ("multibyte id", lambda: ("AffiliateUpdate", update("é" * 129, b"d")), "affiliate_id: is 258 bytes"),
    ("data 2049", lambda: ("AffiliateUpdate", update("a", b"x" * 2049)), "affiliate_data: is 2049 bytes"),
    (
        "endpoint 33",
        lambda: ("AffiliateUpdate", update("a", None, [b"e" * 16, b"x" * 33])),
        "affiliate_endpoints[1]: is 33 bytes",
    ),
    ("ttl 31 min", lambda: ("AffiliateUpdate", update("a", b"d", seconds=31 * 60)), "ttl: is 1860s"),
    (
        "delete empty affiliate",
        lambda: ("AffiliateDelete", cluster_pb2.AffiliateDeleteRequest(cluster_id="c")),
        "affiliate_id: must not be empty",
    ),
    (
        "delete long cluster",
        lambda: (
            "AffiliateDelete",
            cluster_pb2.AffiliateDeleteRequest(cluster_id="c" * 257, affiliate_id="a"),
        ),
        "cluster_id",
    ),
    ("list empty cluster", lambda: ("List", cluster_pb2.ListRequest()), "cluster_id: must not be empty"),
    ("hello long cluster", lambda: ("Hello", cluster_pb2.HelloRequest(cluster_id="c" * 257)), "cluster_id"),
]


@pytest.mark.parametrize(("case", "make", "message"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
async def test_validation_is_invalid_argument_naming_the_field(
    svc: Service, case: str, make: Callable[[], tuple[str, Any]], message: str
) -> None:
    method, req = make()
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await getattr(svc.stub, method)(req, timeout=DEADLINE)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (e.value.details() or "")
    assert await svc.listing() == {}


async def test_watch_with_bad_cluster_id_is_invalid_argument(svc: Service) -> None:
    call = svc.stub.Watch(cluster_pb2.WatchRequest(cluster_id=""))
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call.read()
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_limits_at_the_boundary_are_accepted(svc: Service) -> None:
    cid, aid = "c" * 256, "a" * 256
    req = update(aid, b"x" * 2048, [b"e" * 32], seconds=30 * 60, cluster=cid)
    await svc.stub.AffiliateUpdate(req, timeout=DEADLINE)
    assert set(await svc.listing(cid)) == {aid}


async def test_malformed_message_does_not_crash_the_server(svc: Service) -> None:
    raw = svc.channel.unary_unary(
        "/sidero.discovery.server.Cluster/AffiliateUpdate",
        request_serializer=None,
        response_deserializer=None,
    )
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await raw(b"\xff\xff\xff\xff garbage", timeout=DEADLINE)
    assert e.value.code() != grpc.StatusCode.OK
    await svc.stub.AffiliateUpdate(update("still-alive", b"d"), timeout=DEADLINE)
    assert set(await svc.listing()) == {"still-alive"}


async def test_1024_affiliates_then_resource_exhausted(svc: Service) -> None:
    for start in range(0, 1024, 128):
        await asyncio.gather(
            *(
                svc.stub.AffiliateUpdate(update(f"n{i}", b"d"), timeout=DEADLINE)
                for i in range(start, start + 128)
            )
        )
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await svc.stub.AffiliateUpdate(update("n1024", b"d"), timeout=DEADLINE)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    await svc.stub.AffiliateUpdate(update("n5", b"d2"), timeout=DEADLINE)  # existing ones still update
    assert len(await svc.listing()) == 1024
    # another cluster has its own budget
    await svc.stub.AffiliateUpdate(update("n1024", b"d", cluster="other"), timeout=DEADLINE)


async def test_64_endpoints_then_resource_exhausted_and_dedupe(svc: Service) -> None:
    blobs = [i.to_bytes(2, "big") * 8 for i in range(64)]
    await svc.stub.AffiliateUpdate(update("a", b"d", blobs[:40]), timeout=DEADLINE)
    await svc.stub.AffiliateUpdate(update("a", None, blobs[30:]), timeout=DEADLINE)  # 10 duplicates
    assert list((await svc.listing())["a"].endpoints) == blobs
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await svc.stub.AffiliateUpdate(update("a", b"new", [b"z" * 16]), timeout=DEADLINE)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    a = (await svc.listing())["a"]
    assert a.data == b"d" and len(a.endpoints) == 64  # refused update changed nothing
    await svc.stub.AffiliateUpdate(update("a", None, [blobs[0]]), timeout=DEADLINE)  # a duplicate is fine


async def test_same_endpoint_from_two_reporters_stored_once_no_notify_when_unchanged(svc: Service) -> None:
    data, ep = sealed("n3", "10.0.0.3")
    await svc.stub.AffiliateUpdate(update("n3", data, [ep]))
    w = await svc.watch()
    # n1 and n2 harvest the same endpoint of n3 (§6.4): byte-equal blob, stored once, no change
    await svc.stub.AffiliateUpdate(update("n3", None, [ep]))
    await svc.stub.AffiliateUpdate(update("n3", None, [ep]))
    await svc.stub.AffiliateUpdate(update("n3", data, [ep]))  # a refresh with identical data
    await svc.stub.AffiliateUpdate(update("sentinel", b"s"))
    msg = await w.next()
    assert [a.id for a in msg.affiliates] == ["sentinel"]  # nothing was sent for the no-op updates
    assert list((await svc.listing())["n3"].endpoints) == [ep]
    w.call.cancel()


async def test_gc_expires_affiliates_and_endpoints(many: Callable[..., Awaitable[Service]]) -> None:
    svc = await many(gc_interval=0.1)
    await svc.stub.AffiliateUpdate(update("short", b"d", seconds=0))  # missing/0 ttl: gone at next GC
    await svc.stub.AffiliateUpdate(update("long", b"d", [b"keep" * 4], seconds=600))
    await svc.stub.AffiliateUpdate(update("long", None, [b"drop" * 4], seconds=0.3))
    w = await svc.watch()
    seen: dict[str, cluster_pb2.WatchResponse] = {}
    while len(seen) < 2:
        msg = await w.next()
        seen[msg.affiliates[0].id] = msg
    assert seen["short"].deleted
    # quirk Q1 decided (kubespan.md §11): expired endpoints of a live affiliate are a normal update
    assert not seen["long"].deleted and list(seen["long"].affiliates[0].endpoints) == [b"keep" * 4]
    assert set(await svc.listing()) == {"long"}
    w.call.cancel()


async def test_lost_update_when_watcher_falls_behind(many: Callable[..., Awaitable[Service]]) -> None:
    svc = await many(limits=Limits(watch_buffer=32))
    call = svc.stub.Watch(cluster_pb2.WatchRequest(cluster_id=CLUSTER))
    await call.read()  # snapshot; from now on this watcher does not read
    sub_count = lambda: svc.server.store.stats().subscriptions  # noqa: E731
    big = os.urandom(2048)
    # gRPC flow control absorbs some messages before the servicer blocks; keep producing until the
    # server drops the subscriber (each notification carries a fresh 2 KiB blob)
    for i in range(4000):
        await svc.stub.AffiliateUpdate(update(f"n{i % 1000}", big[:-4] + i.to_bytes(4, "big")))
        if sub_count() == 0:
            break
    assert sub_count() == 0, "subscriber never dropped"
    with pytest.raises(grpc.aio.AioRpcError) as e:
        while True:
            assert await asyncio.wait_for(call.read(), DEADLINE) is not grpc.aio.EOF
    assert e.value.code() == grpc.StatusCode.ABORTED and e.value.details() == "lost update"


async def test_rate_limit_waits_then_refuses_past_deadline(many: Callable[..., Awaitable[Service]]) -> None:
    svc = await many(rate_limit=2.0, rate_burst=3)
    hello = cluster_pb2.HelloRequest(cluster_id=CLUSTER)
    for _ in range(3):
        await svc.stub.Hello(hello, timeout=DEADLINE)
    t0 = time.monotonic()
    await svc.stub.Hello(hello, timeout=DEADLINE)  # waits ~0.5 s for its token
    assert time.monotonic() - t0 >= 0.3
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await svc.stub.Hello(hello, timeout=0.2)  # the token is ≥ 0.5 s away
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # another client IP (trusted X-Real-IP) has its own bucket
    await svc.stub.Hello(hello, timeout=0.2, metadata=(("x-real-ip", "192.0.2.7"),))


async def test_hello_client_ip_and_proxy_headers(svc: Service) -> None:
    hello = cluster_pb2.HelloRequest(cluster_id=CLUSTER, client_version="v1.6.8")
    r = await svc.stub.Hello(hello, timeout=DEADLINE)
    assert r.client_ip == bytes([127, 0, 0, 1]) and not r.HasField("redirect")
    r = await svc.stub.Hello(hello, metadata=(("x-real-ip", "203.0.113.9"),))
    assert r.client_ip == ipaddress.ip_address("203.0.113.9").packed
    r = await svc.stub.Hello(hello, metadata=(("x-forwarded-for", "2001:db8::1, 10.0.0.1"),))
    assert r.client_ip == ipaddress.ip_address("2001:db8::1").packed and len(r.client_ip) == 16
    r = await svc.stub.Hello(hello, metadata=(("x-real-ip", "not an ip"),))
    assert r.client_ip == bytes([127, 0, 0, 1])  # unusable header: the TCP peer


async def test_hello_ignores_headers_when_not_trusted(many: Callable[..., Awaitable[Service]]) -> None:
    svc = await many(trust_proxy_headers=False)
    r = await svc.stub.Hello(
        cluster_pb2.HelloRequest(cluster_id=CLUSTER), metadata=(("x-real-ip", "203.0.113.9"),)
    )
    assert r.client_ip == bytes([127, 0, 0, 1])


async def test_hello_ipv6_peer_is_16_bytes(many: Callable[..., Awaitable[Service]]) -> None:
    svc = await many(listen="[::1]:0")
    async with grpc.aio.insecure_channel(f"[::1]:{svc.server.port}") as ch:
        r = await cluster_pb2_grpc.ClusterStub(ch).Hello(cluster_pb2.HelloRequest(cluster_id=CLUSTER))
    assert r.client_ip == ipaddress.IPv6Address("::1").packed


async def test_redirect_client_registers_on_second_server_only(
    many: Callable[..., Awaitable[Service]],
) -> None:
    second = await many()
    first = await many(redirect_endpoint=second.target)
    r = await first.stub.Hello(cluster_pb2.HelloRequest(cluster_id=CLUSTER), timeout=DEADLINE)
    assert r.HasField("redirect") and r.redirect.endpoint == second.target
    async with grpc.aio.insecure_channel(r.redirect.endpoint) as ch:  # what a client does (§4.6)
        stub = cluster_pb2_grpc.ClusterStub(ch)
        r2 = await stub.Hello(cluster_pb2.HelloRequest(cluster_id=CLUSTER), timeout=DEADLINE)
        assert not r2.HasField("redirect")
        await stub.AffiliateUpdate(update("n1", b"d"), timeout=DEADLINE)
    assert set(await second.listing()) == {"n1"} and await first.listing() == {}


async def test_metrics_endpoint(many: Callable[..., Awaitable[Service]]) -> None:
    svc = await many(metrics="127.0.0.1:0")
    await svc.stub.Hello(cluster_pb2.HelloRequest(cluster_id=CLUSTER, client_version="v1.6.8"))
    await svc.stub.Hello(cluster_pb2.HelloRequest(cluster_id=CLUSTER, client_version="dev"))
    await svc.stub.AffiliateUpdate(update("a", b"d", [b"e" * 16, b"f" * 16]))
    with pytest.raises(grpc.aio.AioRpcError):
        await svc.stub.AffiliateUpdate(update("", b"d"))
    w = await svc.watch()
    async with httpx.AsyncClient() as http:
        r = await http.get(f"http://127.0.0.1:{svc.server.metrics_port}/metrics", timeout=DEADLINE)
    assert r.status_code == 200
    text = r.text
    for line in (
        "discovery_clusters 1.0",
        "discovery_affiliates 1.0",
        "discovery_endpoints 2.0",
        "discovery_subscriptions 1.0",
        'discovery_rpc_total{code="OK",method="AffiliateUpdate"} 1.0',
        'discovery_rpc_total{code="INVALID_ARGUMENT",method="AffiliateUpdate"} 1.0',
        'discovery_rpc_total{code="OK",method="Hello"} 2.0',
        'discovery_hello_client_versions_total{version="v1.6"} 1.0',
        'discovery_hello_client_versions_total{version="unknown"} 1.0',
    ):
        assert line in text, line
    w.call.cancel()


def _self_signed(tmp: Path) -> tuple[Path, Path]:
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
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (tmp / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return tmp / "tls.crt", tmp / "tls.key"


async def test_tls(many: Callable[..., Awaitable[Service]], tmp_path: Path) -> None:
    crt, key = _self_signed(tmp_path)
    svc = await many(tls_cert=crt, tls_key=key)
    creds = grpc.ssl_channel_credentials(root_certificates=crt.read_bytes())
    async with grpc.aio.secure_channel(f"localhost:{svc.server.port}", creds) as ch:
        r = await cluster_pb2_grpc.ClusterStub(ch).Hello(
            cluster_pb2.HelloRequest(cluster_id=CLUSTER), timeout=DEADLINE
        )
    assert len(r.client_ip) in (4, 16)


async def test_state_file_restart_keeps_affiliates(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    first = await start_service(ServiceConfig(listen="127.0.0.1:0", rate_limit=0, state_file=state))
    data, ep = sealed("n1")
    await first.stub.AffiliateUpdate(update("n1", data, [ep]))
    await first.stub.AffiliateUpdate(update("n2", b"d2", [b"x" * 16]))
    await first.stub.AffiliateUpdate(update("gone", b"d", seconds=0))  # expired by the time we reload
    await first.channel.close()
    await first.server.stop()
    assert state.exists() and not list(tmp_path.glob(".state.json.*"))  # no temp file left behind
    await asyncio.sleep(0.01)
    second = await start_service(ServiceConfig(listen="127.0.0.1:0", rate_limit=0, state_file=state))
    try:
        got = await second.listing()
        assert set(got) == {"n1", "n2"}
        assert got["n1"].data == data and list(got["n1"].endpoints) == [ep]
    finally:
        await second.channel.close()
        await second.server.stop()
    third = await start_service()  # no state file: a restart starts empty
    try:
        assert await third.listing() == {}
    finally:
        await third.channel.close()
        await third.server.stop()


async def test_periodic_snapshot(many: Callable[..., Awaitable[Service]], tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    svc = await many(state_file=state, snapshot_interval=0.1)
    await svc.stub.AffiliateUpdate(update("n1", b"d"))

    async def saved() -> bool:
        return state.exists() and b'"n1"' in state.read_bytes()

    await until(saved)


# --- the command ---------------------------------------------------------------------------------


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "discovery_service", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


async def _wait_serving(target: str, proc: subprocess.Popen[bytes]) -> None:
    async with grpc.aio.insecure_channel(target) as ch:
        stub = cluster_pb2_grpc.ClusterStub(ch)

        async def up() -> bool:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
            try:
                await stub.Hello(cluster_pb2.HelloRequest(cluster_id=CLUSTER), timeout=0.5)
                return True
            except grpc.aio.AioRpcError:
                return False

        await until(up, 20.0)


async def test_command_sigterm_saves_state_and_restart_restores(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    port = free_port()
    target = f"127.0.0.1:{port}"
    proc = _spawn("--listen", target, "--state-file", str(state))
    try:
        await _wait_serving(target, proc)
        async with grpc.aio.insecure_channel(target) as ch:
            stub = cluster_pb2_grpc.ClusterStub(ch)
            await stub.AffiliateUpdate(update("n1", b"payload", [b"e" * 16]), timeout=DEADLINE)
            call = stub.Watch(cluster_pb2.WatchRequest(cluster_id=CLUSTER))
            await call.read()
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            rc = await asyncio.to_thread(proc.wait, 15)
            assert rc == 0 and time.monotonic() - t0 < 5.0
        assert b"stopping" in (proc.stderr.read() if proc.stderr else b"")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    proc = _spawn("--listen", target, "--state-file", str(state))
    try:
        await _wait_serving(target, proc)
        async with grpc.aio.insecure_channel(target) as ch:
            resp = await cluster_pb2_grpc.ClusterStub(ch).List(cluster_pb2.ListRequest(cluster_id=CLUSTER))
        assert [(a.id, a.data, list(a.endpoints)) for a in resp.affiliates] == [
            ("n1", b"payload", [b"e" * 16])
        ]
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(proc.wait, 15) == 0


def test_command_rejects_bad_flags() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "discovery_service", "--store", "etcd"],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 2 and b"--etcd-endpoints: required" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "discovery_service", "--listen", "nope"],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 2 and b"--listen" in r.stderr
