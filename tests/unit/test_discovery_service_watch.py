"""Coalescing Watch fan-out (discovery_service/subscriptions.py, servicer.encode_batch).

A watcher that falls behind gets, per affiliate, only the latest pending state: never a stale
export after a newer one, never a missed delete, and after applying what it got (§4.6 apply()) it
holds exactly the state it would have after the full sequence of notifications.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from hypothesis import given, settings
from hypothesis import strategies as st

from discovery_client.api import cluster_pb2, cluster_pb2_grpc
from discovery_service.config import ServiceConfig
from discovery_service.model import AffiliateView, Notification
from discovery_service.server import DiscoveryServer
from discovery_service.servicer import encode_batch
from discovery_service.subscriptions import Batch, Hub, LostUpdate

CLUSTER = "coalesce"
DEADLINE = 10.0


def upd(aid: str, data: bytes = b"", *eps: bytes) -> Notification:
    return Notification(AffiliateView(aid, data, eps))


def dele(aid: str) -> Notification:
    return Notification(AffiliateView(aid), deleted=True)


def ids(ns: list[Notification]) -> list[str]:
    return [n.view.id for n in ns]


def apply(state: dict[str, bytes], msg: cluster_pb2.WatchResponse) -> None:
    """§4.6 apply() of one delta, reduced to what a client keeps: id → data."""
    for a in msg.affiliates:
        if msg.deleted:
            state.pop(a.id, None)
        elif a.data:  # data-less entries are skipped, not stored (and do not replace)
            state[a.id] = a.data


def apply_batch(state: dict[str, bytes], batch: Batch) -> None:
    for wire in encode_batch(batch):
        apply(state, cluster_pb2.WatchResponse.FromString(wire))


# --- Subscription ---------------------------------------------------------------------------------


def test_slow_watcher_gets_latest_state_of_each_affiliate() -> None:
    hub = Hub()
    sub = hub.subscribe(CLUSTER, 32)
    hub.publish(CLUSTER, upd("a", b"a1"))
    hub.publish(CLUSTER, upd("b", b"b1"))
    hub.publish(CLUSTER, upd("a", b"a2", b"ep"))
    assert sub.pending() == 2
    batch = sub.take()
    assert batch.deleted == [] and [(n.view.id, n.view.data) for n in batch.updated] == [
        ("a", b"a2"),
        ("b", b"b1"),
    ]
    assert batch.updated[0].view.endpoints == (b"ep",)
    hub.publish(CLUSTER, upd("a", b"a3"))  # after a take: a fresh window
    assert [n.view.data for n in sub.take().updated] == [b"a3"]
    assert len(sub.take()) == 0


def test_delete_supersedes_pending_update_and_is_never_lost() -> None:
    hub = Hub()
    sub = hub.subscribe(CLUSTER, 32)
    hub.publish(CLUSTER, upd("a", b"a1"))
    hub.publish(CLUSTER, dele("a"))
    batch = sub.take()
    assert ids(batch.deleted) == ["a"] and batch.updated == []
    # deleted then re-created: the delete is still sent, before the new incarnation
    hub.publish(CLUSTER, dele("a"))
    hub.publish(CLUSTER, upd("a", b"", b"ep"))  # re-created by another node's endpoint report
    batch = sub.take()
    assert ids(batch.deleted) == ["a"] and ids(batch.updated) == ["a"]
    state = {"a": b"old incarnation"}
    apply_batch(state, batch)
    assert state == {}  # not the old data: the client must not keep a deleted affiliate's payload
    # update, delete, update, delete: one delete
    for n in (upd("b", b"1"), dele("b"), upd("b", b"2"), dele("b")):
        hub.publish(CLUSTER, n)
    batch = sub.take()
    assert ids(batch.deleted) == ["b"] and batch.updated == []


def test_buffer_counts_distinct_affiliates() -> None:
    hub = Hub()
    sub = hub.subscribe(CLUSTER, 2)
    for i in range(100):  # one affiliate updated 100 times: one pending entry
        hub.publish(CLUSTER, upd("a", str(i).encode()))
    hub.publish(CLUSTER, upd("b", b"b"))
    assert sub.pending() == 2 and not sub.lost
    hub.publish(CLUSTER, upd("c", b"c"))
    assert sub.lost and not hub.has_subscribers(CLUSTER)


async def test_next_waits_then_returns_everything_pending() -> None:
    hub = Hub()
    sub = hub.subscribe(CLUSTER, 32)
    task = asyncio.create_task(sub.next())
    await asyncio.sleep(0)
    assert not task.done()
    hub.publish(CLUSTER, upd("a", b"1"))
    hub.publish(CLUSTER, upd("a", b"2"))  # before the watcher ran: coalesced
    batch = await asyncio.wait_for(task, DEADLINE)
    assert [n.view.data for n in batch.updated] == [b"2"]
    hub.publish(CLUSTER, upd("x", b"x"))
    hub.publish(CLUSTER, upd("y", b"y"))
    hub.publish(CLUSTER, upd("z", b"z"))
    sub2 = hub.subscribe(CLUSTER, 1)
    hub.publish(CLUSTER, upd("w", b"w"))
    hub.publish(CLUSTER, upd("v", b"v"))
    with pytest.raises(LostUpdate):
        await sub2.next()


def test_encode_batch_is_what_protobuf_serializes() -> None:
    batch = Batch(
        deleted=[dele("gone"), dele("gone2")],
        updated=[upd("a", b"data-a", b"e1" * 8, b"e2" * 16), upd("b", b"data-b"), upd("c")],
    )
    wires = encode_batch(batch)
    gone = cluster_pb2.WatchResponse(
        affiliates=[cluster_pb2.Affiliate(id="gone"), cluster_pb2.Affiliate(id="gone2")], deleted=True
    )
    ups = cluster_pb2.WatchResponse(
        affiliates=[
            cluster_pb2.Affiliate(id="a", data=b"data-a", endpoints=[b"e1" * 8, b"e2" * 16]),
            cluster_pb2.Affiliate(id="b", data=b"data-b"),
            cluster_pb2.Affiliate(id="c"),
        ]
    )
    assert wires == [gone.SerializeToString(), ups.SerializeToString()]
    single = encode_batch(Batch([], [upd("a", b"x")]))
    assert single == [
        cluster_pb2.WatchResponse(affiliates=[cluster_pb2.Affiliate(id="a", data=b"x")]).SerializeToString()
    ]
    assert encode_batch(Batch([dele("d")], [])) == [
        cluster_pb2.WatchResponse(
            affiliates=[cluster_pb2.Affiliate(id="d")], deleted=True
        ).SerializeToString()
    ]


# Random interleavings: what a coalescing watcher ends up with == what a watcher receiving every
# notification ends up with, whatever the points at which the stream drains. Notifications follow
# the server's rules (model.merge_update): data, once set, is only ever replaced by other data
# until the affiliate is deleted; an endpoint report alone keeps the data (or creates a data-less
# affiliate).
_op = st.tuples(
    st.sampled_from(["a", "b", "c"]),
    st.sampled_from(["data", "endpoint", "delete", "take"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_op, max_size=40))
def test_coalesced_state_equals_full_sequence(ops: list[tuple[str, str]]) -> None:
    hub = Hub()
    sub = hub.subscribe(CLUSTER, 32)
    server: dict[str, AffiliateView] = {}
    full: dict[str, bytes] = {}
    coalesced: dict[str, bytes] = {}
    for i, (aid, kind) in enumerate(ops):
        if kind == "take":
            apply_batch(coalesced, sub.take())
            continue
        if kind == "delete":
            if server.pop(aid, None) is None:
                continue  # AffiliateDelete of an absent affiliate notifies nothing
            n = dele(aid)
        else:
            old = server.get(aid, AffiliateView(aid))
            if kind == "data":
                view = AffiliateView(aid, f"{aid}{i}".encode(), old.endpoints)
            else:
                view = AffiliateView(aid, old.data, (*old.endpoints, str(i).encode()))
            server[aid] = view
            n = Notification(view)
        hub.publish(CLUSTER, n)
        apply_batch(full, Batch([n] if n.deleted else [], [] if n.deleted else [n]))
    batch = sub.take()
    for n in batch.updated:  # never a stale export: each is the server's current one
        assert n.view == server[n.view.id]
    for n in batch.deleted:
        assert n.view.id not in server or n.view.id in ids(batch.updated)
    apply_batch(coalesced, batch)
    assert coalesced == full


# --- over gRPC ------------------------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[tuple[DiscoveryServer, cluster_pb2_grpc.ClusterStub]]:
    srv = DiscoveryServer(ServiceConfig(listen="127.0.0.1:0", rate_limit=0))
    port = await srv.start()
    # a small, fixed receive window (no BDP probing): a watcher that stops reading blocks the
    # server's writer after a few messages instead of a few megabytes
    ch = grpc.aio.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16384)]
    )
    yield srv, cluster_pb2_grpc.ClusterStub(ch)
    await ch.close()
    await srv.stop()


def request(aid: str, data: bytes, seconds: int = 1800) -> cluster_pb2.AffiliateUpdateRequest:
    return cluster_pb2.AffiliateUpdateRequest(
        cluster_id=CLUSTER, affiliate_id=aid, affiliate_data=data, ttl=Duration(seconds=seconds)
    )


async def test_notifications_published_together_arrive_as_one_response_each_kind(
    server: tuple[DiscoveryServer, cluster_pb2_grpc.ClusterStub],
) -> None:
    srv, stub = server
    for aid in ("x", "y", "z"):
        await stub.AffiliateUpdate(request(aid, b"d", seconds=0), timeout=DEADLINE)
    await stub.AffiliateUpdate(request("keep", b"k"), timeout=DEADLINE)
    call = stub.Watch(cluster_pb2.WatchRequest(cluster_id=CLUSTER))
    snapshot = await asyncio.wait_for(call.read(), DEADLINE)
    assert {a.id for a in snapshot.affiliates} == {"x", "y", "z", "keep"}
    srv.store.collect(time.time() + 1)  # type: ignore[attr-defined]  # memory store: one GC pass
    msg = await asyncio.wait_for(call.read(), DEADLINE)
    assert msg.deleted and sorted(a.id for a in msg.affiliates) == ["x", "y", "z"]
    await stub.AffiliateUpdate(request("keep", b"k2"), timeout=DEADLINE)
    msg = await asyncio.wait_for(call.read(), DEADLINE)
    assert not msg.deleted and [(a.id, a.data) for a in msg.affiliates] == [("keep", b"k2")]
    call.cancel()


async def test_slow_watcher_over_grpc_never_sees_stale_state(
    server: tuple[DiscoveryServer, cluster_pb2_grpc.ClusterStub],
) -> None:
    _, stub = server
    call = stub.Watch(cluster_pb2.WatchRequest(cluster_id=CLUSTER))
    await asyncio.wait_for(call.read(), DEADLINE)  # snapshot; now the watcher stalls
    pad = (
        b"p" * 2000
    )  # big messages (+ 2 KiB of endpoints): gRPC flow control blocks the server's writer soon
    rounds, affs = 200, [f"n{i}" for i in range(10)]
    for r in range(rounds):
        for aid in affs:
            await stub.AffiliateUpdate(request(aid, pad + r.to_bytes(4, "big")), timeout=DEADLINE)
        if r == rounds // 2:
            await stub.AffiliateDelete(
                cluster_pb2.AffiliateDeleteRequest(cluster_id=CLUSTER, affiliate_id="n0"), timeout=DEADLINE
            )
    await stub.AffiliateDelete(
        cluster_pb2.AffiliateDeleteRequest(cluster_id=CLUSTER, affiliate_id="n9"), timeout=DEADLINE
    )
    await stub.AffiliateUpdate(request("sentinel", b"s"), timeout=DEADLINE)
    state: dict[str, bytes] = {}
    newest: dict[str, int] = {}
    messages = 0
    while "sentinel" not in state:
        msg = await asyncio.wait_for(call.read(), DEADLINE)
        assert msg is not grpc.aio.EOF
        messages += 1
        if not msg.deleted:
            for a in msg.affiliates:
                if a.id == "sentinel":
                    continue
                r = int.from_bytes(a.data[-4:], "big")
                assert r > newest.get(a.id, -1), f"{a.id}: round {r} after round {newest[a.id]}"
                newest[a.id] = r
        apply(state, msg)
    want = {aid: pad + (rounds - 1).to_bytes(4, "big") for aid in affs if aid != "n9"}
    assert state == {**want, "sentinel": b"s"}
    print(f"{messages} responses for {rounds * len(affs) + 3} notifications")
    assert messages < rounds * len(affs) / 2, "hardly anything was coalesced"
    call.cancel()
