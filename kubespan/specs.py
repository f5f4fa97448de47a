"""The operator-layer specs the KubeSpan manager publishes (decisions.md "KubeSpan"; kubespan.md §7.1-7.3).

Everything KubeSpan puts in the kernel except its nftables table goes through
the generic spec controllers, as specs in namespace ``network-config`` with
``layer: operator`` and ids prefixed ``kubespan/``: the ``kubespan``
WireGuard LinkSpec with its peers, the AddressSpec, the two table-180
RouteSpecs and the two RoutingRuleSpecs. That way adoption on restart,
ownership records, reset and crash consistency are the generic ones, and the
WireGuard link kind applies the peers as a diff.

All functions are pure; :func:`kubespan_specs` is the one a manager calls.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from kubespan import constants as c
from kubespan.peers import Endpoint, PeerSpec
from netd.resources.address import AddressSpec
from netd.resources.enums import (
    ConfigLayer,
    Family,
    LinkType,
    RouteProtocol,
    RouteType,
    RoutingRuleAction,
    RoutingTable,
    Scope,
)
from netd.resources.link import LinkSpec, WireguardPeer, WireguardSpec
from netd.resources.route import RouteSpec
from netd.resources.routing_rule import RoutingRuleSpec

#: Every network-config id KubeSpan publishes starts with this (decisions.md "KubeSpan", netd.md §2.16).
SPEC_ID_PREFIX = "kubespan/"
LAYER = ConfigLayer.OPERATOR


def spec_id(natural_id: str) -> str:
    """``kubespan/<natural id>``: ``kubespan/kubespan``, ``kubespan/inet4/32500``."""
    return SPEC_ID_PREFIX + natural_id


@dataclass(frozen=True)
class LocalIdentity:
    """What the specs need of the KubeSpanIdentity (§3): the node's KubeSpan IP and private key."""

    address: ipaddress.IPv6Address
    private_key: str


class KernelRule(Protocol):
    """A policy routing rule the kernel has (a RoutingRuleStatus fits)."""

    @property
    def family(self) -> int: ...
    @property
    def priority(self) -> int: ...
    @property
    def table(self) -> int: ...
    @property
    def fw_mark(self) -> int: ...
    @property
    def fw_mask(self) -> int: ...


# ---- §7.1 the WireGuard link --------------------------------------------------------------------------


def preshared_key(shared_secret: str) -> str:
    """The peers' PSK: the cluster secret is WireGuard's base64 key text already (§1.1), but it
    must decode to exactly 32 bytes or the link config fails (§7.1): ValueError here instead."""
    try:
        raw = base64.b64decode(shared_secret, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("cluster secret is not base64") from None
    if len(raw) != c.PRESHARED_KEY_LEN:
        raise ValueError(f"cluster secret is {len(raw)} bytes, WireGuard needs {c.PRESHARED_KEY_LEN}")
    return base64.b64encode(raw).decode()


def wireguard_peers(
    peers: Iterable[PeerSpec],
    endpoints: Mapping[str, Endpoint | None],
    psk: str,
    keepalive: float = c.KEEPALIVE,
) -> list[WireguardPeer]:
    """One WireGuard peer per PeerSpec, sorted by public key (§7.1).

    ``endpoints`` is each peer's ``PeerUpdate.push_endpoint`` by public key;
    a missing or None endpoint is published as "" which the link controller
    reads as "any": WireGuard keeps the endpoint it has (a roamed peer is not
    fought, §6.3 step 6).

    Memoised per peer: a peer whose (PeerSpec, endpoint, PSK, keepalive) equal the last
    call's gets the same WireguardPeer object back, so the manager's pass rebuilds only
    the changed peers and comparing the LinkSpec with the stored one (``State.put``) skips
    the unchanged ones by identity. The models are shared: never modify one in place
    (``model_copy`` it).
    """
    global _WG_MEMO
    memo: dict[str, _WgMemo] = {}
    last = _WG_MEMO
    out = []
    for p in sorted(peers, key=_PUBLIC_KEY):
        ep = endpoints.get(p.public_key)
        m = last.get(p.public_key)
        if (
            m is None
            or (m.spec is not p and m.spec != p)
            or m.endpoint != ep
            or m.psk != psk
            or m.keepalive != keepalive
        ):
            m = _WgMemo(p, ep, psk, keepalive, _wireguard_peer(p, ep, psk, keepalive))
        memo[p.public_key] = m
        out.append(m.model)
    _WG_MEMO = memo
    return out


_PUBLIC_KEY = operator.attrgetter("public_key")


@dataclass(frozen=True)
class _WgMemo:
    spec: PeerSpec
    endpoint: Endpoint | None
    psk: str
    keepalive: float
    model: WireguardPeer


_WG_MEMO: dict[str, _WgMemo] = {}


def clear_caches() -> None:
    """Forget the WireguardPeer models :func:`wireguard_peers` memoised (tests, benches)."""
    global _WG_MEMO
    _WG_MEMO = {}


def _wireguard_peer(p: PeerSpec, ep: Endpoint | None, psk: str, keepalive: float) -> WireguardPeer:
    """The model without a validation pass: every value is already of the field's type (a
    str, a timedelta, ``ipaddress`` interfaces), which is what validation would produce."""
    return WireguardPeer.model_construct(
        public_key=p.public_key,
        preshared_key=psk,
        endpoint="" if ep is None else str(ep),
        persistent_keepalive_interval=dt.timedelta(seconds=keepalive),
        allowed_ips=[_interface(n) for n in p.allowed_ips],
    )


def _interface(
    net: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """``ipaddress.ip_interface(net)`` without its round trip through text."""
    if net.version == 4:
        return ipaddress.IPv4Interface((net.network_address, net.prefixlen))
    return ipaddress.IPv6Interface((net.network_address, net.prefixlen))


def link_spec(identity: LocalIdentity, mtu: int, peers: list[WireguardPeer]) -> LinkSpec:
    """The ``kubespan`` link (§7.1): up, fixed listen port, WireGuard's own packets marked 0x20."""
    return LinkSpec(
        name=c.LINK_NAME,
        logical=True,
        up=True,
        mtu=mtu,
        kind=c.LINK_KIND,
        type=LinkType.NOHDR,
        wireguard=WireguardSpec(
            private_key=identity.private_key,
            listen_port=c.LISTEN_PORT,
            firewall_mark=c.FWMARK,
            peers=peers,
        ),
        layer=LAYER,
    )


# ---- §7.2 address and routes ------------------------------------------------------------------------


def address_spec(identity: LocalIdentity) -> AddressSpec:
    """The KubeSpan IP with the cluster's /64 (not the identity's /128), so the kernel adds the
    connected route of the whole KubeSpan subnet to ``kubespan`` (§7.2)."""
    prefix = ipaddress.IPv6Interface((identity.address, c.ADDRESS_PREFIX_LEN))
    return AddressSpec.configured(prefix, c.LINK_NAME, LAYER)


def route_specs(mtu: int) -> list[RouteSpec]:
    """The two default routes of table 180, nothing else in it (§7.2)."""
    return [
        RouteSpec(
            family=family,
            dst=None,
            gateway=None,
            out_link_name=c.LINK_NAME,
            table=RoutingTable(c.ROUTING_TABLE),
            priority=c.ROUTE_METRIC,
            scope=Scope.GLOBAL,
            type=RouteType.UNICAST,
            protocol=RouteProtocol.STATIC,
            mtu=mtu,
            layer=LAYER,
        )
        for family in (Family.INET4, Family.INET6)
    ]


# ---- §7.3 policy routing rules ---------------------------------------------------------------------


def _is_ours(rule: KernelRule) -> bool:
    return (
        rule.table == c.ROUTING_TABLE
        and rule.fw_mark == c.MARK
        and rule.fw_mask == c.MASK
        and rule.priority <= c.RULE_PRIORITY
    )


def rule_priority(existing: Iterable[KernelRule], family: Family) -> int:
    """The priority of KubeSpan's rule for ``family`` (§7.3).

    The first priority at or below 32500 no kernel rule of that family uses;
    but when the kernel already has our rule (published earlier, or left by a
    previous run of the daemon) its priority is kept, so the spec does not
    move to the next free slot because of itself.
    """
    rules = [r for r in existing if r.family == family]
    ours = [r.priority for r in rules if _is_ours(r)]
    if ours:
        return max(ours)
    used = {r.priority for r in rules}
    for prio in range(c.RULE_PRIORITY, 0, -1):  # 0 is the kernel's local-table rule
        if prio not in used:
            return prio
    raise ValueError(f"no free {family} rule priority at or below {c.RULE_PRIORITY}")


def rule_specs(existing: Iterable[KernelRule]) -> list[RoutingRuleSpec]:
    """``fwmark 0x40/0x60 lookup 180`` for IPv4 and IPv6 (§7.3)."""
    rules = list(existing)
    return [
        RoutingRuleSpec(
            family=family,
            table=RoutingTable(c.ROUTING_TABLE),
            priority=rule_priority(rules, family),
            action=RoutingRuleAction.UNICAST,
            fw_mark=c.MARK,
            fw_mask=c.MASK,
            layer=LAYER,
        )
        for family in (Family.INET4, Family.INET6)
    ]


# ---- all of them ----------------------------------------------------------------------------------------


@dataclass
class KubeSpanSpecs:
    """The specs to publish in ``network-config``, each by its ``kubespan/…`` id."""

    links: dict[str, LinkSpec] = field(default_factory=dict)
    addresses: dict[str, AddressSpec] = field(default_factory=dict)
    routes: dict[str, RouteSpec] = field(default_factory=dict)
    rules: dict[str, RoutingRuleSpec] = field(default_factory=dict)


def kubespan_specs(
    identity: LocalIdentity,
    *,
    mtu: int,
    shared_secret: str,
    peers: Iterable[PeerSpec],
    endpoints: Mapping[str, Endpoint | None],
    existing_rules: Iterable[KernelRule],
    keepalive: float = c.KEEPALIVE,
) -> KubeSpanSpecs:
    """Every operator-layer spec of an enabled KubeSpan (ValueError: unusable cluster secret).

    Disabled KubeSpan publishes nothing: the generic controllers then remove
    what the previous specs created (§7.6).
    """
    wg_peers = wireguard_peers(peers, endpoints, preshared_key(shared_secret), keepalive)
    link = link_spec(identity, mtu, wg_peers)
    addr = address_spec(identity)
    return KubeSpanSpecs(
        links={spec_id(link.id()): link},
        addresses={spec_id(addr.id()): addr},
        routes={spec_id(r.id()): r for r in route_specs(mtu)},
        rules={spec_id(r.id()): r for r in rule_specs(existing_rules)},
    )
