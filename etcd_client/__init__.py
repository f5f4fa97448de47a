"""A small asyncio etcd v3 client shared by the discovery service's replicated store and the VIP operator.

    client = EtcdClient(["http://127.0.0.1:2379"])          # https + ca/cert/key for TLS
    lease = await client.lease_grant(10)
    await client.put(b"/k", b"v", lease=lease.id)
    res = await client.txn([Compare.absent(b"/leader")], [Op.put(b"/leader", b"me", lease.id)])
    async for batch in client.watch(b"/k", prefix=True, start_revision=res.revision + 1): ...

Why gRPC through aetcd's stubs and not the JSON gateway or aetcd's own client: see client.py.
"""

from .client import EtcdClient, Watch
from .errors import EtcdError, EtcdUnavailable, WatchCompacted
from .ops import Compare, Op, Sort, prefix_end
from .types import Event, EventType, KeyValue, Lease, RangeResult, TxnResult, WatchBatch

__all__ = [
    "Compare",
    "EtcdClient",
    "EtcdError",
    "EtcdUnavailable",
    "Event",
    "EventType",
    "KeyValue",
    "Lease",
    "Op",
    "RangeResult",
    "Sort",
    "TxnResult",
    "Watch",
    "WatchBatch",
    "WatchCompacted",
    "prefix_end",
]
