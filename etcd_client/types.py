"""Plain values returned by the etcd client (no protobuf objects leak to callers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: list[KeyValue]
    revision: int  # the store revision the read was served at
    count: int


class EventType(Enum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    kv: KeyValue  # for DELETE: key and mod_revision (the deleting revision) only
    prev_kv: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """The events of one watch response, all at or below `revision`, in revision order."""

    revision: int
    events: list[Event] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Lease:
    id: int
    ttl: int  # seconds granted (etcd may raise a very short TTL to its minimum)


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    # One entry per executed op: the range results of get ops, None for put/delete.
    ranges: list[RangeResult | None] = field(default_factory=list)
