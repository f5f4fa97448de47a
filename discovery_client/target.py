"""Where and how to dial the discovery service (spec §4.1).

The machine config carries a URL (``https://discovery.talos.dev/``) while
Hello redirects carry a bare gRPC target (``host:port``); both end up here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from .constants import DEFAULT_PLAINTEXT_PORT, DEFAULT_TLS_PORT


@dataclass(frozen=True)
class Target:
    address: str  # gRPC target "host:port" ("[v6]:port")
    tls: bool

    @property
    def host(self) -> str:
        return self.address.rsplit(":", 1)[0].strip("[]")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_port(netloc: str, default_port: int, original: str) -> tuple[str, int]:
    parts = urlsplit("//" + netloc)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"discovery endpoint {original!r}: bad port") from None
    host = parts.hostname
    if not host:
        raise ValueError(f"discovery endpoint {original!r}: no host")
    return host, default_port if port is None else port


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_endpoint(endpoint: str, insecure: bool = False) -> Target:
    """``https://host[:port][/]`` and bare ``host[:port]`` use TLS (system roots) unless
    ``insecure``; ``http://`` is plaintext, and so is a bare loopback host (local test
    servers). An explicit ``https://`` is honoured even on loopback."""
    text = endpoint.strip()
    if "://" in text:
        scheme, _, rest = text.partition("://")
        scheme = scheme.lower()
        netloc = rest.split("/", 1)[0]
        if scheme == "https":
            host, port = _host_port(netloc, DEFAULT_TLS_PORT, endpoint)
            return Target(_address(host, port), tls=not insecure)
        if scheme == "http":
            host, port = _host_port(netloc, DEFAULT_PLAINTEXT_PORT, endpoint)
            return Target(_address(host, port), tls=False)
        raise ValueError(f"discovery endpoint {endpoint!r}: unsupported scheme {scheme!r}")
    host, port = _host_port(text.rstrip("/"), DEFAULT_TLS_PORT, endpoint)
    return Target(_address(host, port), tls=not insecure and not _is_loopback(host))


def resolve_redirect(current: Target, endpoint: str, insecure: bool = False) -> Target:
    """A Hello redirect is a bare gRPC target: keep the transport security of the
    connection that sent it, unless it spells a scheme itself."""
    if "://" in endpoint:
        return parse_endpoint(endpoint, insecure)
    host, port = _host_port(endpoint.strip(), DEFAULT_TLS_PORT, endpoint)
    return Target(_address(host, port), tls=current.tls)
