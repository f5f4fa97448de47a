"""`discovery-service`: the command (interface.md), logs to stderr, clean exit on SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from pathlib import Path

from . import constants as c
from .config import ServiceConfig, split_host_port
from .errors import ServiceError
from .limits import Limits
from .server import DiscoveryServer
from .statefile import StateFileError

log = logging.getLogger("discovery_service")


def _positive(text: str) -> float:
    v = float(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return v


def _count(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {text}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="discovery-service",
        description="Discovery service for KubeSpan clusters (sidero.discovery.server.Cluster gRPC API).",
    )
    p.add_argument("--listen", default=c.DEFAULT_LISTEN, help="gRPC ADDR:PORT (default %(default)s)")
    p.add_argument("--tls-cert", type=Path, help="server certificate (PEM); with --tls-key enables TLS")
    p.add_argument("--tls-key", type=Path, help="server private key (PEM)")
    p.add_argument(
        "--state-file", type=Path, help="snapshot file: loaded at start, saved periodically and on exit"
    )
    p.add_argument(
        "--snapshot-interval", type=_positive, default=c.SNAPSHOT_INTERVAL, help="seconds (%(default)s)"
    )
    p.add_argument("--metrics", default="", help="serve Prometheus metrics on ADDR:PORT")
    p.add_argument("--store", choices=("memory", "etcd"), default="memory")
    p.add_argument("--etcd-endpoints", default="", help="comma-separated etcd client URLs (--store etcd)")
    p.add_argument("--etcd-prefix", default=c.ETCD_PREFIX, help="key prefix in etcd (%(default)s)")
    p.add_argument("--etcd-ca", type=Path)
    p.add_argument("--etcd-cert", type=Path)
    p.add_argument("--etcd-key", type=Path)
    p.add_argument(
        "--etcd-lease-bucket", type=_positive, default=c.ETCD_LEASE_BUCKET, help="seconds (%(default)s)"
    )
    p.add_argument("--gc-interval", type=_positive, default=c.GC_INTERVAL, help="seconds (%(default)s)")
    p.add_argument(
        "--rate-limit", type=float, default=c.RATE_LIMIT_PER_SECOND, help="req/s per client IP, 0 = off"
    )
    p.add_argument("--rate-burst", type=_count, default=c.RATE_LIMIT_BURST)
    p.add_argument("--limiter-gc-interval", type=_positive, default=c.LIMITER_GC_INTERVAL)
    p.add_argument(
        "--trust-proxy-headers", action=argparse.BooleanOptionalAction, default=True,
        help="take the client IP from X-Real-IP / X-Forwarded-For (default on)",
    )  # fmt: skip
    p.add_argument(
        "--redirect-endpoint", default="", help="tell clients in Hello to use this HOST:PORT instead"
    )
    p.add_argument("--max-id-length", type=_count, default=c.MAX_ID_LENGTH)
    p.add_argument("--max-affiliate-data", type=_count, default=c.MAX_AFFILIATE_DATA)
    p.add_argument("--max-endpoint-size", type=_count, default=c.MAX_ENDPOINT_BLOB)
    p.add_argument("--max-ttl", type=_positive, default=c.MAX_TTL, help="seconds (%(default)s)")
    p.add_argument("--max-affiliates", type=_count, default=c.MAX_AFFILIATES_PER_CLUSTER)
    p.add_argument("--max-endpoints", type=_count, default=c.MAX_ENDPOINTS_PER_AFFILIATE)
    p.add_argument("--watch-buffer", type=_count, default=c.WATCH_BUFFER)
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return p


def config_from_args(a: argparse.Namespace) -> ServiceConfig:
    limits = Limits(
        max_id_length=a.max_id_length, max_data=a.max_affiliate_data, max_endpoint_blob=a.max_endpoint_size,
        max_ttl=a.max_ttl, max_affiliates=a.max_affiliates, max_endpoints=a.max_endpoints,
        watch_buffer=a.watch_buffer,
    )  # fmt: skip
    split_host_port(a.listen, "--listen")
    if a.metrics:
        split_host_port(a.metrics, "--metrics")
    if a.redirect_endpoint:
        split_host_port(a.redirect_endpoint, "--redirect-endpoint")
    if (a.tls_cert is None) != (a.tls_key is None):
        raise ValueError("--tls-cert and --tls-key: give both or neither")
    endpoints = [e.strip() for e in a.etcd_endpoints.split(",") if e.strip()]
    if a.store == "etcd" and not endpoints:
        raise ValueError("--etcd-endpoints: required with --store etcd")
    if a.store == "etcd" and a.state_file is not None:
        raise ValueError("--state-file: only with --store memory (etcd already keeps the state)")
    if a.rate_limit < 0:
        raise ValueError("--rate-limit: must be ≥ 0")
    return ServiceConfig(
        listen=a.listen, tls_cert=a.tls_cert, tls_key=a.tls_key, limits=limits, gc_interval=a.gc_interval,
        rate_limit=a.rate_limit, rate_burst=a.rate_burst, limiter_gc_interval=a.limiter_gc_interval,
        trust_proxy_headers=a.trust_proxy_headers, redirect_endpoint=a.redirect_endpoint,
        state_file=a.state_file, snapshot_interval=a.snapshot_interval, metrics=a.metrics, store=a.store,
        etcd_endpoints=endpoints, etcd_prefix=a.etcd_prefix, etcd_ca=a.etcd_ca, etcd_cert=a.etcd_cert,
        etcd_key=a.etcd_key, etcd_lease_bucket=a.etcd_lease_bucket,
    )  # fmt: skip


async def run(cfg: ServiceConfig) -> None:
    server = DiscoveryServer(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
        # Everything allocated so far (modules, descriptors, the server) lives as long as the
        # process: keep it out of the cyclic GC, whose full collections would otherwise walk it
        # again and again (pauses of tens of ms under Watch fan-out load).
        gc.freeze()
        await stop.wait()
        log.info("stopping")
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        cfg = config_from_args(args)
    except ValueError as e:
        print(f"discovery-service: {e}", file=sys.stderr)
        return 2
    try:
        asyncio.run(run(cfg))
    except (StateFileError, ServiceError, OSError, ValueError) as e:  # e.g. etcd unreachable at start
        print(f"discovery-service: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
