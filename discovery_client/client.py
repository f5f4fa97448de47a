"""The discovery client of one node (spec §4.6, reference discovery-client v0.1.5).

It publishes this node's encrypted affiliate and endpoints, keeps them alive
with a refresh every TTL/2, and mirrors the other affiliates of the cluster from
a Watch stream. Nothing a server sends can make it raise: undecryptable or
malformed entries are logged and skipped, and transport errors end in a
reconnect with backoff, keeping the last known members until the next snapshot.

All methods must be called from the event loop that runs ``run()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import cache
from typing import Any

import grpc
import grpc.aio
from google.protobuf.duration_pb2 import Duration

from .api import cluster_pb2, cluster_pb2_grpc
from .backoff import ExponentialBackoff
from .constants import (
    DISCOVERY_BACKOFF_INITIAL,
    DISCOVERY_BACKOFF_MAX_INTERVAL,
    DISCOVERY_BACKOFF_MULTIPLIER,
    DISCOVERY_BACKOFF_RANDOMIZATION,
    DISCOVERY_HELLO_TIMEOUT,
    DISCOVERY_KEEPALIVE_MIN,
    DISCOVERY_LEAVE_TIMEOUT,
    DISCOVERY_MAX_RECEIVE_MESSAGE,
    DISCOVERY_REFRESH_TIMEOUT,
    DISCOVERY_TTL,
    GCM_NONCE_SIZE,
    MAX_AFFILIATE_DATA,
    MAX_ENDPOINTS_PER_AFFILIATE,
)
from .crypto import ClusterCipher
from .ipcodec import Addr, IPDecodeError, unmarshal_ip
from .models import AffiliateInfo, DiscoveredAffiliate, Endpoint
from .payload import PayloadError, open_affiliate, open_endpoint, seal_affiliate, seal_endpoint
from .target import Target, parse_endpoint, resolve_redirect

log = logging.getLogger("discovery_client")


#: How long stop() waits for the run loop to end after cancelling it, before closing the channel.
STOP_TIMEOUT = 1.0


@dataclass(frozen=True)
class ClientTimers:
    """Every timer of the client in seconds; defaults are the spec's (§8).

    Field names lower-case the ``NETD_TUNABLES`` keys (``DISCOVERY_TTL`` ->
    ``ttl``), see ``from_tunables``.
    """

    ttl: float = DISCOVERY_TTL
    hello_timeout: float = DISCOVERY_HELLO_TIMEOUT
    refresh_timeout: float = DISCOVERY_REFRESH_TIMEOUT
    backoff_initial: float = DISCOVERY_BACKOFF_INITIAL
    backoff_multiplier: float = DISCOVERY_BACKOFF_MULTIPLIER
    backoff_randomization: float = DISCOVERY_BACKOFF_RANDOMIZATION
    backoff_max_interval: float = DISCOVERY_BACKOFF_MAX_INTERVAL
    leave_timeout: float = DISCOVERY_LEAVE_TIMEOUT
    # None: TTL/2 (§4.6). Separate so a test can refresh often with a long TTL.
    refresh_interval: float | None = None
    # None: max(10 s, TTL/10) as discovery-client HEAD (§4.1); 0 disables client pings.
    keepalive: float | None = None

    @classmethod
    def from_tunables(cls, tunables: Mapping[str, Any]) -> ClientTimers:
        """Pick the ``DISCOVERY_*`` keys this client knows; the daemon validates the rest."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = "DISCOVERY_" + f.name.upper()
            if key in tunables:
                values[f.name] = float(tunables[key])
        return cls(**values)

    @classmethod
    def tunable_keys(cls) -> tuple[str, ...]:
        """The ``NETD_TUNABLES`` keys ``from_tunables`` reads, for the daemon's unknown-key check."""
        return tuple("DISCOVERY_" + f.name.upper() for f in fields(cls))

    @property
    def effective_refresh_interval(self) -> float:
        return self.refresh_interval if self.refresh_interval is not None else self.ttl / 2

    @property
    def effective_keepalive(self) -> float:
        return self.keepalive if self.keepalive is not None else max(DISCOVERY_KEEPALIVE_MIN, self.ttl / 10)


@cache
def _system_roots() -> bytes | None:
    """The OS trust store (§4.1 "system roots"); gRPC would otherwise use its own bundle."""
    paths = ssl.get_default_verify_paths()
    for path in (paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if not path:
            continue
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError:
            continue
    return None


def _duration(seconds: float) -> Duration:
    whole = int(seconds)
    return Duration(seconds=whole, nanos=round((seconds - whole) * 1e9))


class DiscoveryClient:
    """One node's session with the discovery service.

    ``on_update`` and the ``changed`` event fire after every applied Watch
    message; the callback must not block (it runs on the loop), exceptions are
    logged. The owner reads ``get_affiliates()`` afterwards.
    """

    def __init__(
        self,
        cipher: ClusterCipher,
        *,
        endpoint: str,
        cluster_id: str,
        affiliate_id: str,
        client_version: str = "",
        insecure: bool = False,
        timers: ClientTimers | None = None,
        on_update: Callable[[], None] | None = None,
        root_certificates: bytes | None = None,
        max_receive_message_length: int = DISCOVERY_MAX_RECEIVE_MESSAGE,
        rng: random.Random | None = None,
    ) -> None:
        self._cipher = cipher
        self._insecure = insecure
        self._target = parse_endpoint(endpoint, insecure)
        self.cluster_id = cluster_id
        self.affiliate_id = affiliate_id
        self.client_version = client_version
        self.timers = timers or ClientTimers()
        self._on_update = on_update
        self._root_certificates = root_certificates
        self._max_receive = max_receive_message_length
        self._rng = rng

        # Local state (§4.6).
        self._delete_flag = False
        self._local_blob: bytes | None = None
        self._local_endpoints: list[bytes] = []
        self._other_endpoints: list[tuple[str, list[bytes]]] = []
        self._local_update = asyncio.Event()
        # Discovered state.
        self._discovered: dict[str, DiscoveredAffiliate] = {}
        self._public_ip = b""
        self._synced = False
        self.changed = asyncio.Event()

        self._channel: grpc.aio.Channel | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._watch_done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ API

    @property
    def target(self) -> Target:
        """Where the client dials now (changes on redirect)."""
        return self._target

    def set_local_data(
        self,
        affiliate: AffiliateInfo,
        endpoints: Sequence[Endpoint],
        other_endpoints: Iterable[tuple[str, Sequence[Endpoint]]] = (),
    ) -> None:
        """Publish ``affiliate`` with a fresh nonce, plus endpoints harvested for other
        affiliates (§6.4); takes effect at the next refresh, which this triggers."""
        blob = seal_affiliate(self._cipher, affiliate)
        if len(blob) > MAX_AFFILIATE_DATA:
            log.warning("affiliate data is %d bytes, the service accepts %d", len(blob), MAX_AFFILIATE_DATA)
        self._delete_flag = False
        self._local_blob = blob
        self._local_endpoints = self._seal_endpoints(self.affiliate_id, endpoints)
        self._other_endpoints = [(aid, self._seal_endpoints(aid, eps)) for aid, eps in other_endpoints]
        self._local_update.set()

    def delete_local_affiliate(self) -> None:
        """Remove this node from the cluster at the next refresh (reset / leave only, §4.6)."""
        self._delete_flag = True
        self._local_blob = None
        self._local_endpoints = []
        self._other_endpoints = []
        self._local_update.set()

    def get_affiliates(self) -> list[DiscoveredAffiliate]:
        return [self._discovered[k] for k in sorted(self._discovered)]

    @property
    def synced(self) -> bool:
        """True once a Watch snapshot was applied: the affiliates are the cluster's, not just
        what this process happened to learn so far (stays true across reconnects, which keep
        the last known members until the next snapshot)."""
        return self._synced

    def get_public_ip(self) -> Addr | None:
        """This node's address as the service saw it in the last Hello (None if unknown)."""
        try:
            return unmarshal_ip(self._public_ip)
        except IPDecodeError:
            return None

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name="discovery-client")
        return self._task

    async def stop(self) -> None:
        """Stop without deleting the affiliate: it expires after the TTL (§4.6 decision)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # Bounded: a grpc.aio call in flight can take seconds to notice the cancellation
            # (seen after service restarts), and `netctl reset` waits for this.
            done, _ = await asyncio.wait({task}, timeout=STOP_TIMEOUT)
            if not done:
                log.warning("discovery client did not stop within %.0fs; closing its channel", STOP_TIMEOUT)
        await self._close_channel()  # cancels every call still on it
        await self._stop_watch()
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=STOP_TIMEOUT)

    async def leave(self, timeout: float | None = None) -> bool:
        """Send AffiliateDelete now, best effort, for ``netctl reset`` / ``machined --leave``
        (§4.6 product decision). Returns whether the service confirmed; never raises."""
        self.delete_local_affiliate()
        channel = self._make_channel(self._target)  # fresh: the run loop's one may be broken
        try:
            stub = cluster_pb2_grpc.ClusterStub(channel)  # type: ignore[no-untyped-call]
            await stub.AffiliateDelete(
                cluster_pb2.AffiliateDeleteRequest(
                    cluster_id=self.cluster_id, affiliate_id=self.affiliate_id
                ),
                timeout=timeout if timeout is not None else self.timers.leave_timeout,
                wait_for_ready=True,
            )
            return True
        except Exception as e:  # best effort by design
            log.warning("leave: AffiliateDelete to %s failed: %s", self._target.address, _describe(e))
            return False
        finally:
            await channel.close()

    # ------------------------------------------------------------- run loop

    async def run(self) -> None:
        """The loop of §4.6 until cancelled; never returns otherwise."""
        t = self.timers
        backoff = ExponentialBackoff(
            t.backoff_initial,
            t.backoff_multiplier,
            t.backoff_randomization,
            t.backoff_max_interval,
            rng=self._rng,
        )
        loop = asyncio.get_running_loop()
        interval = t.effective_refresh_interval
        next_tick = loop.time() + interval
        refresh_needed = True
        try:
            while True:
                if self._channel is None:
                    self._channel = self._make_channel(self._target)  # lazy: connects on first RPC
                if self._watch_task is None:
                    await asyncio.sleep(backoff.next())  # also before the very first Hello
                    if not await self._hello():
                        continue
                    self._start_watch()
                if refresh_needed:
                    # The refresh sends the state as of now, which covers any pending local update.
                    self._local_update.clear()
                    if await self._refresh():
                        refresh_needed = False
                        backoff.reset()
                    else:
                        # Q2: reconnect through the backoff path at once instead of waiting for a tick.
                        await self._stop_watch()
                        continue

                local = asyncio.ensure_future(self._local_update.wait())
                watch = asyncio.ensure_future(self._watch_done.wait())
                try:
                    timeout = max(0.0, next_tick - loop.time())
                    await asyncio.wait((local, watch), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    local.cancel()
                    watch.cancel()
                if loop.time() >= next_tick:
                    refresh_needed = True
                    next_tick = loop.time() + interval
                if self._local_update.is_set():
                    self._local_update.clear()
                    refresh_needed = True
                if self._watch_done.is_set():
                    await self._stop_watch()
                    refresh_needed = True
        finally:
            await self._stop_watch()
            await self._close_channel()

    def _make_channel(self, target: Target) -> grpc.aio.Channel:
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", self._max_receive),
            ("grpc.enable_retries", 0),  # the run loop retries; gRPC must not replay behind our back
        ]
        keepalive = self.timers.effective_keepalive
        if keepalive > 0:
            options.append(("grpc.keepalive_time_ms", int(keepalive * 1000)))
            # gRPC stops pinging after 2 pings without data by default; an idle Watch is exactly
            # the connection whose silent death keepalive must detect.
            options.append(("grpc.http2.max_pings_without_data", 0))
        if target.tls:
            roots = self._root_certificates if self._root_certificates is not None else _system_roots()
            creds = grpc.ssl_channel_credentials(root_certificates=roots)
            return grpc.aio.secure_channel(target.address, creds, options=options)
        return grpc.aio.insecure_channel(target.address, options=options)

    async def _close_channel(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(Exception):
                await channel.close()

    def _stub(self) -> cluster_pb2_grpc.ClusterStub:
        assert self._channel is not None
        return cluster_pb2_grpc.ClusterStub(self._channel)  # type: ignore[no-untyped-call]

    async def _hello(self) -> bool:
        """True when the watch may start on this connection; False to go round again."""
        try:
            resp = await self._stub().Hello(
                cluster_pb2.HelloRequest(cluster_id=self.cluster_id, client_version=self.client_version),
                timeout=self.timers.hello_timeout,
            )
        except Exception as e:  # any transport failure means "try again later"
            log.warning("hello to %s failed: %s", self._target.address, _describe(e))
            await self._close_channel()  # HEAD behaviour: a fresh dial next time skips gRPC's own backoff
            return False
        self._public_ip = resp.client_ip
        if resp.HasField("redirect") and resp.redirect.endpoint:
            try:
                new = resolve_redirect(self._target, resp.redirect.endpoint, self._insecure)
            except ValueError as e:
                log.warning("ignoring unusable redirect from %s: %s", self._target.address, e)
                return True
            log.info("redirected from %s to %s", self._target.address, new.address)
            self._target = new
            await self._close_channel()
            return False
        return True

    async def _refresh(self) -> bool:
        try:
            await asyncio.wait_for(self._send_local_state(), self.timers.refresh_timeout)
            return True
        except Exception as e:  # any transport failure means "reconnect"
            log.warning("refresh to %s failed: %s", self._target.address, _describe(e))
            return False

    async def _send_local_state(self) -> None:
        stub = self._stub()
        if self._delete_flag:
            await stub.AffiliateDelete(
                cluster_pb2.AffiliateDeleteRequest(cluster_id=self.cluster_id, affiliate_id=self.affiliate_id)
            )
            return
        if self._local_blob is None:
            return
        # Snapshot before awaiting: set_local_data may replace the lists meanwhile.
        blob, own, others = self._local_blob, list(self._local_endpoints), list(self._other_endpoints)
        ttl = _duration(self.timers.ttl)
        await stub.AffiliateUpdate(
            cluster_pb2.AffiliateUpdateRequest(
                cluster_id=self.cluster_id,
                affiliate_id=self.affiliate_id,
                affiliate_data=blob,
                affiliate_endpoints=own,
                ttl=ttl,
            )
        )
        for other_id, eps in others:
            # affiliate_data absent: endpoints are merged into the other node's record (§4.2).
            await stub.AffiliateUpdate(
                cluster_pb2.AffiliateUpdateRequest(
                    cluster_id=self.cluster_id, affiliate_id=other_id, affiliate_endpoints=eps, ttl=ttl
                )
            )

    # ---------------------------------------------------------------- watch

    def _start_watch(self) -> None:
        self._watch_done.clear()
        self._watch_task = asyncio.create_task(self._watch(self._stub()), name="discovery-watch")

    async def _stop_watch(self) -> None:
        task, self._watch_task = self._watch_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._watch_done.clear()

    async def _watch(self, stub: cluster_pb2_grpc.ClusterStub) -> None:
        call = stub.Watch(cluster_pb2.WatchRequest(cluster_id=self.cluster_id))
        snapshot = True
        try:
            async for reply in call:
                self._apply(reply, snapshot)
                snapshot = False
                self._notify()
            log.warning("watch stream from %s ended", self._target.address)
        except grpc.aio.AioRpcError as e:
            log.warning("watch stream from %s failed: %s", self._target.address, _describe(e))
        except Exception:  # a broken reply must not kill the client; reconnect instead
            log.exception("watch stream from %s: unexpected error", self._target.address)
        finally:
            call.cancel()
            self._watch_done.set()

    def _apply(self, reply: cluster_pb2.WatchResponse, snapshot: bool) -> None:
        """§4.6 apply(): errors in one affiliate never affect the others."""
        if snapshot:
            self._discovered = {}
            self._synced = True
        for aff in reply.affiliates:
            if aff.id == self.affiliate_id:
                continue
            if reply.deleted:
                if self._discovered.pop(aff.id, None) is not None:
                    log.debug("affiliate %s deleted", aff.id)
                continue
            if not aff.data:
                continue  # only endpoints reported by others so far
            if len(aff.data) < GCM_NONCE_SIZE:
                log.warning("affiliate %r: data too short (%d bytes), skipped", aff.id, len(aff.data))
                continue
            try:
                self._discovered[aff.id] = self._decode(aff)
            except PayloadError as e:
                log.warning("affiliate %r skipped: %s", aff.id, e)
            except Exception:  # anything a hostile payload might still trigger
                log.exception("affiliate %r skipped: unexpected decode error", aff.id)

    def _decode(self, aff: cluster_pb2.Affiliate) -> DiscoveredAffiliate:
        info = open_affiliate(self._cipher, aff.data)
        endpoints: list[Endpoint] = []
        for blob in aff.endpoints:
            try:
                endpoints.append(open_endpoint(self._cipher, blob))
            except PayloadError as e:
                log.warning("affiliate %r: endpoint skipped: %s", aff.id, e)
        return DiscoveredAffiliate(aff.id, info, tuple(endpoints))

    def _notify(self) -> None:
        self.changed.set()
        if self._on_update is not None:
            try:
                self._on_update()
            except Exception:
                log.exception("discovery update callback failed")

    def _seal_endpoints(self, affiliate_id: str, endpoints: Iterable[Endpoint]) -> list[bytes]:
        out: list[bytes] = []
        for ep in endpoints:
            try:
                out.append(seal_endpoint(self._cipher, ep))
            except ValueError as e:
                log.warning("endpoint for %r not published: %s", affiliate_id, e)
        if len(out) > MAX_ENDPOINTS_PER_AFFILIATE:
            log.warning(
                "%d endpoints for %r, the service keeps %d",
                len(out),
                affiliate_id,
                MAX_ENDPOINTS_PER_AFFILIATE,
            )
        return out


def _describe(e: BaseException) -> str:
    if isinstance(e, grpc.aio.AioRpcError):
        return f"{e.code().name}: {e.details()}"
    if isinstance(e, asyncio.TimeoutError):
        return "timed out"
    return str(e) or type(e).__name__
