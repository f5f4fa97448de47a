"""The `sidero.discovery.server.Cluster` gRPC API (kubespan.md §4.2, §4.8) over any `Store`.

Handlers are registered by hand (not through the generated `add_ClusterServicer_to_server`) so
that Watch can send pre-serialized responses: one notification is encoded once and the same bytes
go to every watcher of the cluster, which is most of the CPU at high fan-out.

Every handler runs the same prologue: validation (INVALID_ARGUMENT naming the field), rate limit by
client IP (RESOURCE_EXHAUSTED if the token cannot come before the deadline), then the store; a
malformed request or an unexpected store error becomes a status, never a crashed server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from discovery_client.api import cluster_pb2

from .clientip import Address, binary, client_address
from .errors import InvalidArgument, LimitExceeded, Unavailable
from .limits import Limits
from .metrics import Metrics, client_version_label
from .model import AffiliateView, Notification
from .ratelimit import RateLimiter
from .store import Store
from .subscriptions import Batch, LostUpdate, SubscriptionClosed

log = logging.getLogger(__name__)

SERVICE = "sidero.discovery.server.Cluster"
T = TypeVar("T")


def _affiliate_pb(v: AffiliateView) -> cluster_pb2.Affiliate:
    return cluster_pb2.Affiliate(id=v.id, data=v.data, endpoints=list(v.endpoints))


DELETED_FLAG = b"\x10\x01"  # WatchResponse field 2 `deleted` (varint) = true


def encode_notification(n: Notification) -> bytes:
    """The `affiliates` entry of `n` as WatchResponse bytes (field 1: tag, length, Affiliate),
    computed once per notification and shared by every watcher of the cluster. For an update it is
    the whole WatchResponse; entries concatenate into one WatchResponse with several affiliates
    (a repeated field's encoding is the concatenation of its elements')."""
    if n.wire is None:
        aff = cluster_pb2.Affiliate(id=n.view.id) if n.deleted else _affiliate_pb(n.view)
        n.wire = cluster_pb2.WatchResponse(affiliates=[aff]).SerializeToString()
    return n.wire


def encode_batch(batch: Batch) -> list[bytes]:
    """The WatchResponses for one coalesced batch (subscriptions.py): the deletions first (one
    response, `deleted: true`), then the updates (one response), byte-identical to what protobuf
    serializes for the same messages."""
    out = []
    if batch.deleted:
        out.append(b"".join([encode_notification(n) for n in batch.deleted]) + DELETED_FLAG)
    if batch.updated:
        out.append(b"".join([encode_notification(n) for n in batch.updated]))  # 1 item: no copy
    return out


class ClusterServicer:
    def __init__(
        self,
        store: Store,
        limiter: RateLimiter | None = None,
        metrics: Metrics | None = None,
        trust_headers: bool = True,
        redirect_endpoint: str = "",
    ) -> None:
        self.store = store
        self.limits: Limits = store.limits
        self.limiter = limiter
        self.metrics = metrics
        self.trust_headers = trust_headers
        self.redirect_endpoint = redirect_endpoint

    # --- plumbing -------------------------------------------------------------------------------

    def _address(self, context: grpc.aio.ServicerContext) -> Address | None:
        return client_address(context.invocation_metadata() or (), context.peer() or "", self.trust_headers)

    async def _admit(self, context: grpc.aio.ServicerContext) -> None:
        if self.limiter is None:
            return
        addr = self._address(context)
        remaining = context.time_remaining()
        wait = self.limiter.reserve(str(addr), remaining)
        if wait is None:
            raise LimitExceeded(f"rate limit for {addr} exceeded")
        if wait > 0:
            await asyncio.sleep(wait)

    def _count(self, method: str, code: grpc.StatusCode) -> None:
        if self.metrics is not None:
            self.metrics.rpcs.labels(method, code.name).inc()

    async def _run(
        self, method: str, context: grpc.aio.ServicerContext, body: Callable[[], Awaitable[T]]
    ) -> T:
        code = grpc.StatusCode.OK
        try:
            await self._admit(context)
            return await body()
        except InvalidArgument as e:
            code, message = grpc.StatusCode.INVALID_ARGUMENT, str(e)
        except LimitExceeded as e:
            code, message = grpc.StatusCode.RESOURCE_EXHAUSTED, str(e)
        except Unavailable as e:
            code, message = grpc.StatusCode.UNAVAILABLE, str(e)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception:
            log.exception("%s failed", method)
            code, message = grpc.StatusCode.INTERNAL, "internal error"
        finally:
            self._count(method, code)
        await context.abort(code, message)
        raise AssertionError("unreachable")  # abort() raises

    # --- RPCs -----------------------------------------------------------------------------------

    async def Hello(self, request: Any, context: grpc.aio.ServicerContext) -> cluster_pb2.HelloResponse:
        async def body() -> cluster_pb2.HelloResponse:
            self.limits.check_id("cluster_id", request.cluster_id)
            if self.metrics is not None:
                self.metrics.hellos.labels(client_version_label(request.client_version)).inc()
            resp = cluster_pb2.HelloResponse(client_ip=binary(self._address(context)))
            if self.redirect_endpoint:
                resp.redirect.endpoint = self.redirect_endpoint
            return resp

        return await self._run("Hello", context, body)

    async def AffiliateUpdate(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def body() -> Any:
            self.limits.check_id("cluster_id", request.cluster_id)
            self.limits.check_id("affiliate_id", request.affiliate_id)
            data = request.affiliate_data if request.HasField("affiliate_data") else b""
            endpoints = list(request.affiliate_endpoints)
            ttl = 0.0
            if request.HasField("ttl"):
                ttl = request.ttl.seconds + request.ttl.nanos / 1e9
            self.limits.check_update(data, endpoints, ttl)
            await self.store.update(request.cluster_id, request.affiliate_id, data or None, endpoints, ttl)
            return cluster_pb2.AffiliateUpdateResponse()

        return await self._run("AffiliateUpdate", context, body)

    async def AffiliateDelete(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def body() -> Any:
            self.limits.check_id("cluster_id", request.cluster_id)
            self.limits.check_id("affiliate_id", request.affiliate_id)
            await self.store.delete(request.cluster_id, request.affiliate_id)
            return cluster_pb2.AffiliateDeleteResponse()

        return await self._run("AffiliateDelete", context, body)

    async def List(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def body() -> Any:
            self.limits.check_id("cluster_id", request.cluster_id)
            views = await self.store.list_affiliates(request.cluster_id)
            return cluster_pb2.ListResponse(affiliates=[_affiliate_pb(v) for v in views])

        return await self._run("List", context, body)

    async def Watch(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        """Snapshot first (possibly empty), then the deltas (§4.8): one response per notification
        while the watcher keeps up, coalesced batches when it does not (subscriptions.py)."""

        async def subscribe() -> Any:
            self.limits.check_id("cluster_id", request.cluster_id)
            return self.store.watch(request.cluster_id)

        snapshot, sub = await self._run("Watch", context, subscribe)
        try:
            first = cluster_pb2.WatchResponse(affiliates=[_affiliate_pb(v) for v in snapshot])
            yield first.SerializeToString()
            while True:
                for wire in encode_batch(await sub.next()):
                    yield wire
        except LostUpdate:
            self._count("Watch.stream", grpc.StatusCode.ABORTED)
            await context.abort(grpc.StatusCode.ABORTED, "lost update")
        except SubscriptionClosed:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "server shutting down")
        finally:
            sub.close()

    def handler(self) -> grpc.GenericRpcHandler:
        def unary(fn: Any, req: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=req.FromString, response_serializer=lambda m: m.SerializeToString()
            )

        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Hello": unary(self.Hello, cluster_pb2.HelloRequest),
                "AffiliateUpdate": unary(self.AffiliateUpdate, cluster_pb2.AffiliateUpdateRequest),
                "AffiliateDelete": unary(self.AffiliateDelete, cluster_pb2.AffiliateDeleteRequest),
                "List": unary(self.List, cluster_pb2.ListRequest),
                "Watch": grpc.unary_stream_rpc_method_handler(
                    self.Watch,
                    request_deserializer=cluster_pb2.WatchRequest.FromString,
                    response_serializer=lambda b: b,  # already serialized, see encode_batch
                ),
            },
        )
