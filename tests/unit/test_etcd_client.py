"""etcd_client against a real etcd (tests/harness/etcd.py): KV, txn, leases, watch, failover."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from harness.etcd import EtcdServer, etcd_fixture, free_port

from etcd_client import Compare, EtcdClient, EtcdError, EventType, Op, WatchBatch, prefix_end

etcd = pytest.fixture(scope="module")(etcd_fixture)
DEADLINE = 10.0


@pytest.fixture
async def client(etcd: EtcdServer) -> AsyncIterator[EtcdClient]:
    c = EtcdClient([etcd.url])
    await c.delete(b"/t/", prefix=True)
    yield c
    await c.close()


def test_prefix_end() -> None:
    assert prefix_end(b"/a/") == b"/a0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"


def test_bad_endpoint_is_rejected() -> None:
    with pytest.raises(ValueError, match="ftp://x"):
        EtcdClient(["ftp://x"])
    with pytest.raises(ValueError, match="at least one"):
        EtcdClient([])


async def test_put_get_range_delete(client: EtcdClient) -> None:
    r1 = await client.put(b"/t/a", b"1")
    await client.put(b"/t/b", b"2")
    await client.put(b"/t/c", b"3")
    kv = await client.get(b"/t/a")
    assert kv is not None and kv.value == b"1" and kv.mod_revision == r1 and kv.version == 1
    assert await client.get(b"/t/zz") is None
    res = await client.get_prefix(b"/t/")
    assert [k.key for k in res.kvs] == [b"/t/a", b"/t/b", b"/t/c"] and res.count == 3
    assert [k.key for k in (await client.get_range(b"/t/a", b"/t/c")).kvs] == [b"/t/a", b"/t/b"]
    old = await client.get_prefix(b"/t/", revision=r1)  # a read at a past revision
    assert [k.key for k in old.kvs] == [b"/t/a"]
    assert await client.delete(b"/t/b") == 1
    assert await client.delete(b"/t/", prefix=True) == 2


async def test_txn_compare_create_is_an_election(client: EtcdClient) -> None:
    lease = await client.lease_grant(10)
    won = await client.txn([Compare.absent(b"/t/leader")], [Op.put(b"/t/leader", b"a", lease.id)])
    lost = await client.txn(
        [Compare.absent(b"/t/leader")], [Op.put(b"/t/leader", b"b")], failure=[Op.get(b"/t/leader")]
    )
    assert won.succeeded and not lost.succeeded
    holder = lost.ranges[0]
    assert holder is not None and holder.kvs[0].value == b"a" and holder.kvs[0].lease == lease.id
    kv = await client.get(b"/t/leader")
    assert kv is not None
    stale = await client.txn(
        [Compare.mod_revision_is(b"/t/leader", kv.mod_revision - 1)], [Op.delete(b"/t/leader")]
    )
    fresh = await client.txn(
        [Compare.mod_revision_is(b"/t/leader", kv.mod_revision)], [Op.delete(b"/t/leader")]
    )
    assert not stale.succeeded and fresh.succeeded and await client.get(b"/t/leader") is None
    await client.lease_revoke(lease.id)


async def test_lease_expiry_keepalive_and_revoke(client: EtcdClient) -> None:
    short = await client.lease_grant(1)  # etcd may raise it to its minimum TTL
    kept = await client.lease_grant(2)
    await client.put(b"/t/short", b"x", lease=short.id)
    await client.put(b"/t/kept", b"y", lease=kept.id)
    keeper = asyncio.create_task(client.keep_alive(kept.id, kept.ttl))
    deadline = time.monotonic() + DEADLINE
    while await client.get(b"/t/short") is not None:
        assert time.monotonic() < deadline, "leased key never expired"
        await asyncio.sleep(0.1)
    assert await client.lease_time_to_live(short.id) == -1
    assert await client.lease_keepalive_once(short.id) == 0  # expired: nothing to refresh
    await asyncio.sleep(kept.ttl + 0.5)  # longer than its TTL: only the keepalive keeps it
    assert await client.get(b"/t/kept") is not None
    keeper.cancel()
    await client.lease_revoke(kept.id)
    assert await client.get(b"/t/kept") is None
    await client.lease_revoke(kept.id)  # twice is fine


async def test_watch_from_revision_sees_puts_and_deletes(client: EtcdClient) -> None:
    start = await client.put(b"/t/w1", b"1")  # before the watch starts, seen through start_revision
    w = client.watch(b"/t/", prefix=True, start_revision=start, prev_kv=True)
    got: list[WatchBatch] = []

    async def collect() -> None:
        async for batch in w:
            got.append(batch)
            if sum(len(b.events) for b in got) >= 4:
                return

    task = asyncio.create_task(collect())
    await client.put(b"/t/w2", b"2")
    await client.put(b"/t/w1", b"1b")
    await client.put(b"/other", b"not watched")
    await client.delete(b"/t/w2")
    await asyncio.wait_for(task, DEADLINE)
    events = [e for b in got for e in b.events]
    assert [(e.type, e.kv.key) for e in events] == [
        (EventType.PUT, b"/t/w1"),
        (EventType.PUT, b"/t/w2"),
        (EventType.PUT, b"/t/w1"),
        (EventType.DELETE, b"/t/w2"),
    ]
    assert events[2].prev_kv is not None and events[2].prev_kv.value == b"1"
    assert [b.revision for b in got] == sorted(b.revision for b in got)
    w.cancel()


async def test_failover_to_the_next_endpoint(etcd: EtcdServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    async with EtcdClient([dead, etcd.url], timeout=3.0) as c:
        await c.put(b"/t/fo", b"v")
        kv = await c.get(b"/t/fo")
        assert kv is not None and kv.value == b"v" and c.endpoint == etcd.url.removeprefix("http://")


async def test_unreachable_is_an_error_not_a_hang() -> None:
    async with EtcdClient([f"http://127.0.0.1:{free_port()}"], timeout=1.0) as c:
        with pytest.raises(EtcdError):
            await c.get(b"/x")


async def test_watch_resumes_after_etcd_restart() -> None:
    with EtcdServer() as server:
        async with EtcdClient([server.url], timeout=2.0) as c:
            rev = await c.put(b"/r/a", b"1")
            w = c.watch(b"/r/", prefix=True, start_revision=rev + 1)
            seen: list[bytes] = []

            async def collect() -> None:
                async for batch in w:
                    seen.extend(e.kv.value for e in batch.events)
                    if b"after" in seen:
                        return

            task = asyncio.create_task(collect())
            await c.put(b"/r/a", b"before")
            server.kill()
            server.start()  # same data dir and ports
            deadline = time.monotonic() + DEADLINE
            while True:
                try:
                    await c.put(b"/r/a", b"after")
                    break
                except EtcdError:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.1)
            await asyncio.wait_for(task, DEADLINE)
            assert seen == [b"before", b"after"]  # nothing lost, nothing repeated
