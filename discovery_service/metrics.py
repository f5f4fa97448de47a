"""Prometheus metrics (`--metrics ADDR:PORT`), one registry per service instance.

Gauges are read from the store at scrape time (nothing to keep in sync), and the scrape is served
by a tiny asyncio HTTP server on the service's own event loop, so the store is never read from
another thread while it is being mutated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .constants import UNKNOWN_CLIENT_VERSION
from .store import StoreStats

log = logging.getLogger(__name__)

_VERSION_RE = re.compile(r"^v(\d+)\.(\d+)(?:\.\d+)?(?:[-+][0-9A-Za-z.+-]*)?$")


def client_version_label(version: str) -> str:
    """§4.6: the server keeps `vX.Y` of a client version and maps anything else to "unknown"
    (bounded label cardinality whatever clients send)."""
    m = _VERSION_RE.match(version)
    return f"v{m.group(1)}.{m.group(2)}" if m else UNKNOWN_CLIENT_VERSION


class _StoreCollector(Collector):
    def __init__(self, stats: Callable[[], StoreStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self._stats()
        yield GaugeMetricFamily("discovery_clusters", "Clusters currently known.", value=s.clusters)
        yield GaugeMetricFamily("discovery_affiliates", "Affiliates in all clusters.", value=s.affiliates)
        yield GaugeMetricFamily("discovery_endpoints", "Endpoint blobs of all affiliates.", value=s.endpoints)
        yield GaugeMetricFamily("discovery_subscriptions", "Open Watch streams.", value=s.subscriptions)


class Metrics:
    def __init__(self, stats: Callable[[], StoreStats]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_StoreCollector(stats))
        self.rpcs = Counter(
            "discovery_rpc", "RPCs handled, by method and gRPC status code.", ["method", "code"],
            registry=self.registry,
        )  # fmt: skip
        self.hellos = Counter(
            "discovery_hello_client_versions", "Hello calls by client version (vX.Y or unknown).",
            ["version"], registry=self.registry,
        )  # fmt: skip
        self._server: asyncio.Server | None = None

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def serve(self, host: str, port: int) -> int:
        """Serve GET /metrics on host:port; return the bound port (port 0 picks a free one)."""
        self._server = await asyncio.start_server(self._handle, host, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 10.0)
            while (await asyncio.wait_for(reader.readline(), 10.0)) not in (b"\r\n", b"\n", b""):
                pass  # headers are not needed
            parts = request.decode("latin-1").split()
            if len(parts) >= 2 and parts[0] == "GET" and parts[1].split("?")[0] in ("/metrics", "/"):
                body, status, ctype = self.render(), "200 OK", CONTENT_TYPE_LATEST
            else:
                body, status, ctype = b"not found\n", "404 Not Found", "text/plain"
            head = f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError) as e:
            log.debug("metrics request failed: %s", e)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
