"""An asyncio etcd v3 client over gRPC: KV, transactions, leases, watches.

Wire layer: the etcd v3 protobuf stubs shipped by PyPI `aetcd` (1.0.0, works with protobuf 7 /
grpcio 1.85 against etcd 3.4). Its high-level `aetcd.Client` is *not* used: it hard-codes an
insecure channel to a single host:port, while we need https endpoints with CA/client certificates
and failover between several endpoints; its API is also untyped. This module is the thin adapter:
it owns the channel, turns responses into plain dataclasses (types.py) and errors into
etcd_client.errors.

Failover: one channel at a time; a call failing with UNAVAILABLE moves to the next endpoint and is
retried there once per endpoint. gRPC reports UNAVAILABLE when the connection failed, i.e. before
the request reached a server, so retrying a put or txn does not apply it twice in practice (the
same assumption etcd's Go client makes for its retry policy).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import grpc
from aetcd import rpc  # type: ignore[import-untyped]

from .errors import EtcdError, EtcdUnavailable, WatchCompacted
from .ops import Compare, Op, Sort, prefix_end
from .types import Event, EventType, KeyValue, Lease, RangeResult, TxnResult, WatchBatch

log = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_TIMEOUT = 5.0
_RETRY_CODES = (grpc.StatusCode.UNAVAILABLE,)
_COMPARE_TARGET = {"version": 0, "create": 1, "mod": 2, "value": 3, "lease": 4}
_COMPARE_RESULT = {"==": 0, ">": 1, "<": 2, "!=": 3}
_SORT_TARGET = {"key": 0, "version": 1, "create": 2, "mod": 3, "value": 4}


def _kv(pb: Any) -> KeyValue:
    return KeyValue(
        bytes(pb.key), bytes(pb.value), int(pb.create_revision), int(pb.mod_revision), int(pb.version),
        int(pb.lease),
    )  # fmt: skip


def _range(pb: Any) -> RangeResult:
    return RangeResult([_kv(kv) for kv in pb.kvs], int(pb.header.revision), int(pb.count))


def _target(url: str) -> tuple[str, bool]:
    """`http://h:p` → ("h:p", plaintext); `https://h:p` → TLS; a bare `h:p` is plaintext."""
    if "://" not in url:
        return url, False
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f"etcd endpoint {url!r}: want http://HOST:PORT or https://HOST:PORT")
    host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
    return f"{host}:{u.port or 2379}", u.scheme == "https"


class EtcdClient:
    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        ca: Path | None = None,
        cert: Path | None = None,
        key: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if not endpoints:
            raise ValueError("etcd endpoints: at least one URL is needed")
        if (cert is None) != (key is None):
            raise ValueError("etcd TLS: give both the client certificate and its key, or neither")
        self._targets = [_target(e) for e in endpoints]
        self._ca = ca.read_bytes() if ca else None
        self._cert = cert.read_bytes() if cert else None
        self._key = key.read_bytes() if key else None
        self.timeout = timeout
        self._index = 0
        self._channel: grpc.aio.Channel | None = None
        self._kv: Any = None
        self._lease: Any = None
        self._watch: Any = None
        self._closed = False

    @property
    def endpoint(self) -> str:
        return self._targets[self._index][0]

    def _open(self) -> None:
        target, tls = self._targets[self._index]
        options = [("grpc.max_receive_message_length", 64 << 20), ("grpc.enable_retries", 0)]
        if tls:
            creds = grpc.ssl_channel_credentials(self._ca, self._key, self._cert)
            self._channel = grpc.aio.secure_channel(target, creds, options=options)
        else:
            self._channel = grpc.aio.insecure_channel(target, options=options)
        self._kv = rpc.KVStub(self._channel)
        self._lease = rpc.LeaseStub(self._channel)
        self._watch = rpc.WatchStub(self._channel)

    def _ensure(self) -> None:
        if self._closed:
            raise EtcdError("client closed")
        if self._channel is None:
            self._open()

    async def _failover(self, failed: grpc.aio.Channel | None) -> None:
        if failed is not self._channel:
            return  # another caller already moved on
        old, self._channel = self._channel, None
        self._index = (self._index + 1) % len(self._targets)
        if old is not None:
            await old.close()
        log.info("etcd: switching to endpoint %s", self.endpoint)

    async def _call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        last: grpc.aio.AioRpcError | None = None
        for _ in range(len(self._targets)):
            self._ensure()
            channel = self._channel
            try:
                return await fn()
            except grpc.aio.AioRpcError as e:
                if e.code() not in _RETRY_CODES:
                    raise EtcdError(f"etcd {what} on {self.endpoint}: {e.code().name}: {e.details()}") from e
                last = e
                await self._failover(channel)
        detail = last.details() if last is not None else "no endpoint"
        raise EtcdUnavailable(f"etcd {what}: no endpoint reachable ({detail})")

    async def close(self) -> None:
        self._closed = True
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def __aenter__(self) -> EtcdClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- KV --------------------------------------------------------------------------------------

    async def get(self, key: bytes) -> KeyValue | None:
        res = await self.get_range(key)
        return res.kvs[0] if res.kvs else None

    async def get_prefix(self, prefix: bytes, revision: int = 0) -> RangeResult:
        return await self.get_range(prefix, prefix_end(prefix), revision=revision)

    async def get_range(
        self,
        key: bytes,
        range_end: bytes = b"",
        revision: int = 0,
        limit: int = 0,
        *,
        sort: Sort | None = None,
        max_create_revision: int = 0,
    ) -> RangeResult:
        """Keys in [key, range_end). `sort` orders them (etcd sorts before applying `limit`);
        `max_create_revision` keeps only keys created at or before that revision (the election's
        "my predecessor" query)."""
        req = rpc.RangeRequest(
            key=key, range_end=range_end, revision=revision, limit=limit,
            max_create_revision=max_create_revision,
        )  # fmt: skip
        if sort is not None:
            req.sort_target = _SORT_TARGET[sort.target]
            req.sort_order = 2 if sort.descending else 1
        return _range(await self._call("range", lambda: self._kv.Range(req, timeout=self.timeout)))

    async def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        """Write `key`; return the revision of the write."""
        req = rpc.PutRequest(key=key, value=value, lease=lease)
        resp = await self._call("put", lambda: self._kv.Put(req, timeout=self.timeout))
        return int(resp.header.revision)

    async def delete(self, key: bytes, prefix: bool = False) -> int:
        """Delete `key` (or every key under it); return how many keys went."""
        req = rpc.DeleteRangeRequest(key=key, range_end=prefix_end(key) if prefix else b"")
        resp = await self._call("delete", lambda: self._kv.DeleteRange(req, timeout=self.timeout))
        return int(resp.deleted)

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        req = rpc.TxnRequest(
            compare=[self._compare_pb(c) for c in compare],
            success=[self._op_pb(o) for o in success],
            failure=[self._op_pb(o) for o in failure],
        )
        resp = await self._call("txn", lambda: self._kv.Txn(req, timeout=self.timeout))
        ranges: list[RangeResult | None] = []
        for r in resp.responses:
            ranges.append(_range(r.response_range) if r.WhichOneof("response") == "response_range" else None)
        return TxnResult(bool(resp.succeeded), int(resp.header.revision), ranges)

    @staticmethod
    def _compare_pb(c: Compare) -> Any:
        pb = rpc.Compare(key=c.key, target=_COMPARE_TARGET[c.target], result=_COMPARE_RESULT[c.result])
        if c.target == "version":
            pb.version = int(c.operand)
        elif c.target == "create":
            pb.create_revision = int(c.operand)
        elif c.target == "mod":
            pb.mod_revision = int(c.operand)
        elif c.target == "lease":
            pb.lease = int(c.operand)
        else:
            pb.value = bytes(c.operand)
        return pb

    @staticmethod
    def _op_pb(o: Op) -> Any:
        if o.kind == "put":
            return rpc.RequestOp(request_put=rpc.PutRequest(key=o.key, value=o.value, lease=o.lease))
        if o.kind == "delete":
            return rpc.RequestOp(
                request_delete_range=rpc.DeleteRangeRequest(key=o.key, range_end=o.range_end)
            )
        return rpc.RequestOp(request_range=rpc.RangeRequest(key=o.key, range_end=o.range_end))

    # --- leases ----------------------------------------------------------------------------------

    async def lease_grant(self, ttl: int, lease_id: int = 0) -> Lease:
        req = rpc.LeaseGrantRequest(TTL=ttl, ID=lease_id)
        resp = await self._call("lease grant", lambda: self._lease.LeaseGrant(req, timeout=self.timeout))
        if resp.error:
            raise EtcdError(f"etcd lease grant: {resp.error}")
        return Lease(int(resp.ID), int(resp.TTL))

    async def lease_revoke(self, lease_id: int) -> None:
        """Revoke a lease (its keys are deleted); an unknown or expired lease is not an error."""
        req = rpc.LeaseRevokeRequest(ID=lease_id)
        try:
            await self._call("lease revoke", lambda: self._lease.LeaseRevoke(req, timeout=self.timeout))
        except EtcdError as e:
            if "not found" not in str(e):
                raise

    async def lease_keepalive_once(self, lease_id: int, timeout: float | None = None) -> int:
        """Refresh a lease once; return its new TTL in seconds, 0 if it has already expired.
        `timeout` (default: the client's) bounds the whole exchange, so a holder that must know
        by a deadline whether its lease still lives is not kept waiting."""

        async def once() -> int:
            call = self._lease.LeaseKeepAlive(timeout=self.timeout if timeout is None else timeout)
            try:
                await call.write(rpc.LeaseKeepAliveRequest(ID=lease_id))
                resp = await call.read()
                await call.done_writing()
            finally:
                call.cancel()
            if resp is grpc.aio.EOF:
                raise EtcdError("etcd lease keepalive: stream closed")
            return int(resp.TTL)

        return await self._call("lease keepalive", once)

    async def lease_time_to_live(self, lease_id: int) -> int:
        """Remaining seconds of a lease, -1 when it does not exist (expired or revoked)."""
        req = rpc.LeaseTimeToLiveRequest(ID=lease_id)
        resp = await self._call("lease ttl", lambda: self._lease.LeaseTimeToLive(req, timeout=self.timeout))
        return int(resp.TTL)

    async def keep_alive(self, lease_id: int, ttl: int, on_lost: Callable[[], None] | None = None) -> None:
        """Refresh the lease every ttl/3 until cancelled; returns (after calling `on_lost`) when the
        lease expired or etcd stayed unreachable for longer than the TTL. Run it as a task."""
        interval = max(ttl / 3.0, 0.2)
        deadline = asyncio.get_running_loop().time() + ttl
        while True:
            await asyncio.sleep(interval)
            try:
                left = await self.lease_keepalive_once(lease_id)
            except EtcdError as e:
                log.warning("lease %x keepalive failed: %s", lease_id, e)
                left = -1 if asyncio.get_running_loop().time() > deadline else 1
            if left == 0 or left < 0:
                if on_lost is not None:
                    on_lost()
                return
            deadline = asyncio.get_running_loop().time() + ttl

    # --- watch -----------------------------------------------------------------------------------

    def watch(
        self, key: bytes, *, prefix: bool = False, start_revision: int = 0, prev_kv: bool = False
    ) -> Watch:
        """Events on `key` (or under it) from `start_revision` (0 = from now). Iterate with
        `async for batch in watch`; stop with `watch.cancel()`. The stream resumes on its own after a
        connection loss (on the next endpoint, from the last revision seen + 1); only a compacted
        start revision ends it (WatchCompacted)."""
        end = prefix_end(key) if prefix else b""
        return Watch(self, key, end, start_revision, prev_kv)


class Watch:
    def __init__(self, client: EtcdClient, key: bytes, range_end: bytes, start: int, prev_kv: bool) -> None:
        self._client = client
        self._key = key
        self._end = range_end
        self._next = start
        self._prev_kv = prev_kv
        self._call: Any = None
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True
        if self._call is not None:
            self._call.cancel()

    def __aiter__(self) -> AsyncIterator[WatchBatch]:
        return self._run()

    async def _open(self) -> Any:
        c = self._client
        c._ensure()
        call = c._watch.Watch()
        create = rpc.WatchCreateRequest(
            key=self._key, range_end=self._end, start_revision=self._next, prev_kv=self._prev_kv,
        )  # fmt: skip
        await call.write(rpc.WatchRequest(create_request=create))
        first = await asyncio.wait_for(call.read(), c.timeout)
        if first is grpc.aio.EOF:
            call.cancel()
            raise EtcdError("etcd watch: stream closed before it was created")
        if first.compact_revision:
            call.cancel()
            raise WatchCompacted(int(first.compact_revision))
        if first.canceled:
            call.cancel()
            raise EtcdError(f"etcd watch refused: {first.cancel_reason}")
        if self._next == 0:  # "from now": pin the start so a resume neither skips nor repeats
            self._next = int(first.header.revision) + 1
        return call

    async def _run(self) -> AsyncIterator[WatchBatch]:
        failures = 0
        while not self._cancelled:
            channel = self._client._channel
            try:
                self._call = await self._open()
                failures = 0
                while True:
                    resp = await self._call.read()
                    if resp is grpc.aio.EOF:
                        break
                    if resp.compact_revision:
                        raise WatchCompacted(int(resp.compact_revision))
                    if resp.canceled:
                        raise EtcdError(f"etcd watch cancelled by the server: {resp.cancel_reason}")
                    if not resp.events:
                        continue
                    events = [self._event(ev) for ev in resp.events]
                    self._next = events[-1].kv.mod_revision + 1
                    yield WatchBatch(events[-1].kv.mod_revision, events)
            except (grpc.aio.AioRpcError, TimeoutError) as e:
                if self._cancelled:
                    return
                failures += 1
                log.warning(
                    "etcd watch on %s broke (%s), resuming at revision %d",
                    self._client.endpoint,
                    e,
                    self._next,
                )
                if failures >= len(self._client._targets):
                    await asyncio.sleep(min(0.1 * failures, 2.0))
                await self._client._failover(channel)
            except asyncio.CancelledError:
                raise
            finally:
                if self._call is not None:
                    with contextlib.suppress(Exception):
                        self._call.cancel()
                    self._call = None

    @staticmethod
    def _event(ev: Any) -> Event:
        kind = EventType.DELETE if ev.type == 1 else EventType.PUT
        prev = _kv(ev.prev_kv) if ev.HasField("prev_kv") else None
        return Event(kind, _kv(ev.kv), prev)
