"""Typed, decrypted view of what nodes publish through the discovery service (spec §4.3).

Frozen dataclasses so the node integration can compare what it last sent with
plain ``==`` (§4.7 step 2: only re-publish on change, or every update echoes
back through Watch and loops).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import NamedTuple

from .ipcodec import Addr

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


class Endpoint(NamedTuple):
    """A WireGuard endpoint; a tuple so ``(ip, port)`` unpacking works."""

    ip: Addr
    port: int


@dataclass(frozen=True)
class KubeSpanInfo:
    public_key: str  # base64 WireGuard public key
    address: Addr | None = None  # the node's KubeSpan IPv6 address (no prefix on the wire)
    # Host bits kept (10.244.0.1/24), as the wire carries the unmasked IP (§4.3 IPPrefix).
    additional_addresses: tuple[Interface, ...] = ()


@dataclass(frozen=True)
class ControlPlaneInfo:
    api_server_port: int


@dataclass(frozen=True)
class AffiliateInfo:
    node_id: str
    addresses: tuple[Addr, ...] = ()
    hostname: str = ""
    nodename: str = ""
    machine_type: str = ""  # wire string; see parse_machine_type
    operating_system: str = ""  # "<Name> (<tag>)", e.g. "Talos (v1.6.8)"
    kubespan: KubeSpanInfo | None = None
    control_plane: ControlPlaneInfo | None = None


@dataclass(frozen=True)
class DiscoveredAffiliate:
    """One other member as seen through Watch.

    ``id`` is the server-side affiliate id; §4.7 names raw affiliates after
    ``affiliate.node_id`` from the decrypted payload instead.
    """

    id: str
    affiliate: AffiliateInfo
    endpoints: tuple[Endpoint, ...] = field(default=())


def parse_machine_type(value: str) -> str:
    """§4.3: init/controlplane kept, worker/join/empty -> worker, everything else -> unknown."""
    if value in ("init", "controlplane"):
        return value
    if value in ("worker", "join", ""):
        return "worker"
    return "unknown"
