"""One running discovery service: gRPC server, store, periodic GC/snapshots, metrics.

Used by the command (cli.py) and directly by tests and the bench (ephemeral port, short
intervals), so both exercise the same assembly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import grpc

from .config import ServiceConfig, split_host_port
from .constants import KEEPALIVE_MIN_TIME, SHUTDOWN_GRACE
from .memory_store import MemoryStore
from .metrics import Metrics
from .ratelimit import RateLimiter
from .servicer import ClusterServicer
from .statefile import load as load_state
from .statefile import save as save_state
from .store import Store

log = logging.getLogger(__name__)


def make_store(cfg: ServiceConfig) -> Store:
    if cfg.store == "memory":
        return MemoryStore(cfg.limits)
    if cfg.store == "etcd":
        from etcd_client import EtcdClient

        from .etcd_store import EtcdStore

        client = EtcdClient(cfg.etcd_endpoints, ca=cfg.etcd_ca, cert=cfg.etcd_cert, key=cfg.etcd_key)
        return EtcdStore(client, cfg.limits, prefix=cfg.etcd_prefix, lease_bucket=cfg.etcd_lease_bucket)
    raise ValueError(f"store: unknown kind {cfg.store!r} (memory or etcd)")


class DiscoveryServer:
    def __init__(self, cfg: ServiceConfig, store: Store | None = None) -> None:
        if cfg.state_file is not None and cfg.store != "memory":
            raise ValueError("state-file: only with --store memory (etcd already persists the state)")
        self.cfg = cfg
        self.store = store if store is not None else make_store(cfg)
        self.metrics = Metrics(self.store.stats)
        self.limiter = RateLimiter(cfg.rate_limit, cfg.rate_burst) if cfg.rate_limit > 0 else None
        self.servicer = ClusterServicer(
            self.store, self.limiter, self.metrics, cfg.trust_proxy_headers, cfg.redirect_endpoint
        )
        self.port = 0
        self.metrics_port = 0
        self._server: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> int:
        """Load state, listen, start the periodic jobs; return the bound gRPC port."""
        cfg = self.cfg
        host, port = split_host_port(cfg.listen, "listen")
        if isinstance(self.store, MemoryStore) and cfg.state_file is not None:
            state = load_state(cfg.state_file, time.time())
            self.store.restore(state)
            log.info("restored %d affiliates from %s", sum(map(len, state.values())), cfg.state_file)
        await self.store.start()
        ka = int(KEEPALIVE_MIN_TIME * 1000)  # §4.1: clients may ping every 10 s, not more often
        options = [
            ("grpc.http2.min_ping_interval_without_data_ms", ka),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", ka),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.so_reuseport", 0),
        ]
        self._server = grpc.aio.server(options=options)
        self._server.add_generic_rpc_handlers((self.servicer.handler(),))
        addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if cfg.tls_cert is not None or cfg.tls_key is not None:
            if cfg.tls_cert is None or cfg.tls_key is None:
                raise ValueError("tls-cert and tls-key: give both or neither")
            creds = grpc.ssl_server_credentials([(cfg.tls_key.read_bytes(), cfg.tls_cert.read_bytes())])
            self.port = self._server.add_secure_port(addr, creds)
        else:
            self.port = self._server.add_insecure_port(addr)
        if self.port == 0:
            raise OSError(f"listen: cannot bind {cfg.listen}")
        await self._server.start()
        if cfg.metrics:
            mhost, mport = split_host_port(cfg.metrics, "metrics")
            self.metrics_port = await self.metrics.serve(mhost, mport)
        self._every(cfg.gc_interval, self.store.gc, "gc")
        if self.limiter is not None:
            limiter = self.limiter

            async def limiter_gc() -> None:
                limiter.collect()

            self._every(cfg.limiter_gc_interval, limiter_gc, "rate limiter gc")
        if cfg.state_file is not None:
            self._every(cfg.snapshot_interval, self.snapshot, "snapshot")
        log.info("discovery service listening on %s:%d (store %s)", host, self.port, cfg.store)
        return self.port

    def _every(self, interval: float, job: Callable[[], Awaitable[None]], name: str) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await job()
                except Exception:
                    log.exception("%s failed", name)

        self._tasks.append(asyncio.create_task(loop(), name=name))

    async def snapshot(self) -> None:
        if isinstance(self.store, MemoryStore) and self.cfg.state_file is not None:
            state = self.store.dump()
            path = self.cfg.state_file
            # fsyncs block: keep them off the event loop (the dump above is already a private copy).
            await asyncio.to_thread(save_state, path, state, time.time())
            log.debug("state saved to %s", path)

    async def stop(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Stop serving (Watch streams end), write the final snapshot, release everything."""
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        if self._server is not None:
            await self.store.close()  # ends Watch subscriptions so the grace period is not wasted
            await self._server.stop(grace)
            self._server = None
        try:
            await self.snapshot()
        except Exception:
            log.exception("final snapshot failed")
        await self.metrics.close()
