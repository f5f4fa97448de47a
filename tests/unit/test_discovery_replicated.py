"""Replicated mode (`--store etcd`): several service replicas on one real etcd.

Each test uses its own key prefix in one module-wide etcd, so tests stay independent and fast.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from harness.etcd import EtcdServer, etcd_fixture

from discovery_client.api import cluster_pb2, cluster_pb2_grpc
from discovery_service.config import ServiceConfig
from discovery_service.limits import Limits
from discovery_service.server import DiscoveryServer
from etcd_client import EtcdClient

etcd = pytest.fixture(scope="module")(etcd_fixture)
CLUSTER = "8XuV9TZHW08DOk3bVxQjH9ih_TBKjnh-j44tsCLSBzo="
DEADLINE = 10.0
_prefixes = itertools.count()


def update(
    aid: str, data: bytes | None = None, endpoints: list[bytes] | None = None, seconds: float = 1800
) -> Any:
    req = cluster_pb2.AffiliateUpdateRequest(
        cluster_id=CLUSTER,
        affiliate_id=aid,
        affiliate_endpoints=endpoints or [],
        ttl=Duration(seconds=int(seconds), nanos=int((seconds % 1) * 1e9)),
    )
    if data is not None:
        req.affiliate_data = data
    return req


class Replica:
    def __init__(self, server: DiscoveryServer) -> None:
        self.server = server
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        self.stub = cluster_pb2_grpc.ClusterStub(self.channel)

    async def listing(self) -> dict[str, Any]:
        resp = await self.stub.List(cluster_pb2.ListRequest(cluster_id=CLUSTER), timeout=DEADLINE)
        return {a.id: a for a in resp.affiliates}

    async def watch(self) -> tuple[Any, Any]:
        call = self.stub.Watch(cluster_pb2.WatchRequest(cluster_id=CLUSTER))
        snapshot = await asyncio.wait_for(call.read(), DEADLINE)
        return call, snapshot

    async def stop(self) -> None:
        await self.channel.close()
        await self.server.stop()


async def next_msg(call: Any) -> Any:
    msg = await asyncio.wait_for(call.read(), DEADLINE)
    assert msg is not grpc.aio.EOF
    return msg


async def until(cond: Callable[[], Awaitable[bool]], timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not await cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.fixture
async def replicas(etcd: EtcdServer) -> AsyncIterator[Callable[..., Awaitable[Replica]]]:
    prefix = f"/dsv-test-{next(_prefixes)}/"
    started: list[Replica] = []

    async def make(**kw: Any) -> Replica:
        cfg = ServiceConfig(
            **{
                "listen": "127.0.0.1:0",
                "rate_limit": 0,
                "store": "etcd",
                "etcd_endpoints": [etcd.url],
                "etcd_prefix": prefix,
                **kw,
            }
        )
        server = DiscoveryServer(cfg)
        await server.start()
        r = Replica(server)
        started.append(r)
        return r

    yield make
    for r in started:
        if r.server._server is not None:
            await r.stop()


async def test_watch_on_one_replica_sees_updates_through_the_other(replicas: Any) -> None:
    a, b = await replicas(), await replicas()
    call, snapshot = await a.watch()
    assert list(snapshot.affiliates) == []
    await b.stub.AffiliateUpdate(update("n1", b"data-1", [b"e" * 16]), timeout=DEADLINE)
    msg = await next_msg(call)
    assert not msg.deleted and [(x.id, x.data, list(x.endpoints)) for x in msg.affiliates] == [
        ("n1", b"data-1", [b"e" * 16])
    ]
    assert set(await b.listing()) == {"n1"}  # read-your-writes on the writing replica
    await until(lambda: _has(a, {"n1"}))
    await b.stub.AffiliateDelete(cluster_pb2.AffiliateDeleteRequest(cluster_id=CLUSTER, affiliate_id="n1"))
    msg = await next_msg(call)
    assert msg.deleted and [x.id for x in msg.affiliates] == ["n1"]
    call.cancel()


async def _has(r: Replica, ids: set[str]) -> bool:
    return set(await r.listing()) == ids


async def test_clients_split_between_replicas_and_a_fresh_replica_rebuilds(replicas: Any) -> None:
    a, b = await replicas(), await replicas()
    for i in range(10):
        r = a if i % 2 else b
        await r.stub.AffiliateUpdate(update(f"n{i}", f"d{i}".encode(), [bytes([i]) * 16]), timeout=DEADLINE)
    want = {f"n{i}" for i in range(10)}
    await until(lambda: _has(a, want))
    await until(lambda: _has(b, want))
    watch_b, _ = await b.watch()
    await a.stop()  # replica A dies; B and etcd keep everything
    await b.stub.AffiliateUpdate(update("n10", b"d10"), timeout=DEADLINE)
    fresh = await replicas()  # a new, empty replica: rebuilds from etcd
    call, snapshot = await fresh.watch()
    got = {x.id: (x.data, list(x.endpoints)) for x in snapshot.affiliates}
    assert got == {**{f"n{i}": (f"d{i}".encode(), [bytes([i]) * 16]) for i in range(10)}, "n10": (b"d10", [])}
    await fresh.stub.AffiliateUpdate(update("n11", b"d11"), timeout=DEADLINE)
    seen = set()
    while "n11" not in seen:  # B's watcher sees both the update via B and the one via the new replica
        seen.add((await next_msg(watch_b)).affiliates[0].id)
    assert "n10" in seen
    call.cancel()
    watch_b.cancel()


async def test_concurrent_updates_of_one_affiliate_merge(replicas: Any) -> None:
    a, b = await replicas(), await replicas()
    await a.stub.AffiliateUpdate(update("n1", b"d"), timeout=DEADLINE)
    await until(lambda: _has(b, {"n1"}))
    ups = [a.stub.AffiliateUpdate(update("n1", None, [bytes([i]) * 16])) for i in range(10)]
    ups += [b.stub.AffiliateUpdate(update("n1", None, [bytes([100 + i]) * 16])) for i in range(10)]
    await asyncio.gather(*ups)
    want = {bytes([i]) * 16 for i in range(10)} | {bytes([100 + i]) * 16 for i in range(10)}

    async def merged() -> bool:
        return [set((await r.listing())["n1"].endpoints) for r in (a, b)] == [want, want]

    await until(merged)  # optimistic concurrency: no endpoint lost to a race


async def test_limits_and_dedupe_in_etcd(replicas: Any) -> None:
    a = await replicas(limits=Limits(max_affiliates=3, max_endpoints=4))
    for i in range(3):
        await a.stub.AffiliateUpdate(update(f"n{i}", b"d"), timeout=DEADLINE)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await a.stub.AffiliateUpdate(update("n3", b"d"), timeout=DEADLINE)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    blobs = [bytes([i]) * 16 for i in range(4)]
    await a.stub.AffiliateUpdate(update("n0", None, blobs[:3]), timeout=DEADLINE)
    await a.stub.AffiliateUpdate(update("n0", None, blobs), timeout=DEADLINE)  # 3 duplicates + 1 new
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await a.stub.AffiliateUpdate(update("n0", None, [b"x" * 16]), timeout=DEADLINE)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert list((await a.listing())["n0"].endpoints) == blobs  # insertion order kept


async def test_no_notification_when_nothing_changed(replicas: Any) -> None:
    a, b = await replicas(), await replicas()
    await a.stub.AffiliateUpdate(update("n1", b"d", [b"e" * 16]), timeout=DEADLINE)
    call, _ = await b.watch()
    await a.stub.AffiliateUpdate(update("n1", b"d", [b"e" * 16]), timeout=DEADLINE)  # only expirations move
    await a.stub.AffiliateUpdate(update("sentinel", b"s"), timeout=DEADLINE)
    msg = await next_msg(call)
    assert [x.id for x in msg.affiliates] == ["sentinel"]
    call.cancel()


async def test_ttl_expiry_through_etcd_leases(replicas: Any, etcd: EtcdServer) -> None:
    # Replica GC effectively off: only the etcd leases can remove the record.
    a = await replicas(gc_interval=3600, etcd_lease_bucket=1.0)
    b = await replicas(gc_interval=3600, etcd_lease_bucket=1.0)
    await a.stub.AffiliateUpdate(update("short", b"d", [b"e" * 16], seconds=1), timeout=DEADLINE)
    await a.stub.AffiliateUpdate(update("long", b"d", seconds=600), timeout=DEADLINE)
    call, snapshot = await b.watch()
    if {x.id for x in snapshot.affiliates} != {"short", "long"}:
        await next_msg(call)  # b's cache may see the writes a moment later
    msg = await asyncio.wait_for(call.read(), 15.0)  # lease granularity: ≤ bucket + etcd's minimum TTL
    while not msg.deleted:
        msg = await asyncio.wait_for(call.read(), 15.0)
    assert [x.id for x in msg.affiliates] == ["short"]
    assert set(await a.listing()) == {"long"} and set(await b.listing()) == {"long"}
    async with EtcdClient([etcd.url]) as c:  # nothing of it is left in etcd
        prefix = a.server.cfg.etcd_prefix.encode()
        keys = [kv.key for kv in (await c.get_prefix(prefix)).kvs]
        assert not [k for k in keys if b"/short/" in k]
    call.cancel()


async def test_replica_gc_expires_on_time_and_q1_update(replicas: Any) -> None:
    a = await replicas(gc_interval=0.1)
    b = await replicas(gc_interval=0.1)
    await a.stub.AffiliateUpdate(update("gone", b"d", seconds=0), timeout=DEADLINE)
    await a.stub.AffiliateUpdate(update("live", b"d", [b"keep" * 4], seconds=600), timeout=DEADLINE)
    await a.stub.AffiliateUpdate(update("live", None, [b"drop" * 4], seconds=0.3), timeout=DEADLINE)
    call, _ = await b.watch()

    async def settled() -> bool:
        got = await b.listing()
        return set(got) == {"live"} and list(got["live"].endpoints) == [b"keep" * 4]

    await until(settled)
    call.cancel()
