"""Everything one service instance is configured with; cli.py maps flags onto it one to one."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import constants as c
from .limits import Limits


@dataclass(slots=True)
class ServiceConfig:
    listen: str = c.DEFAULT_LISTEN
    tls_cert: Path | None = None
    tls_key: Path | None = None
    limits: Limits = field(default_factory=Limits)
    gc_interval: float = c.GC_INTERVAL
    rate_limit: float = c.RATE_LIMIT_PER_SECOND  # 0 disables the limiter
    rate_burst: int = c.RATE_LIMIT_BURST
    limiter_gc_interval: float = c.LIMITER_GC_INTERVAL
    trust_proxy_headers: bool = True  # §4.8: X-Real-IP / X-Forwarded-For, on by default in HEAD
    redirect_endpoint: str = ""
    state_file: Path | None = None
    snapshot_interval: float = c.SNAPSHOT_INTERVAL
    metrics: str = ""  # ADDR:PORT, empty = off
    store: str = "memory"  # memory | etcd
    etcd_endpoints: list[str] = field(default_factory=list)
    etcd_prefix: str = c.ETCD_PREFIX
    etcd_ca: Path | None = None
    etcd_cert: Path | None = None
    etcd_key: Path | None = None
    etcd_lease_bucket: float = c.ETCD_LEASE_BUCKET


def split_host_port(text: str, what: str) -> tuple[str, int]:
    """`host:port` / `[v6]:port`; ValueError naming `what` otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{what}: {text!r} is not HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)
