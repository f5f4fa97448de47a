"""Affiliates and members as pure functions (kubespan.md §4.7, §5.2-5.5).

Controllers gather inputs and write outputs; everything that decides what an
affiliate or member looks like lives here so it can be tested against the
reference's examples without a runtime.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cluster.resources import (
    SERVICE_PREFIX,
    AffiliateSpec,
    ControlPlaneSpec,
    KubeSpanAffiliateSpec,
    MachineType,
    MemberSpec,
    format_endpoint,
    parse_endpoint,
)
from discovery_client import AffiliateInfo, ControlPlaneInfo, DiscoveredAffiliate, Endpoint, KubeSpanInfo
from kubespan.identity import PURPOSE_SIDEROLINK, is_ula
from netd.netip import Addr, Prefix, parse_addr, parse_prefix

log = logging.getLogger("cluster.affiliates")

#: §8: every advertised endpoint uses the WireGuard listen port.
KUBESPAN_PORT = 51820

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _dedupe(items: Iterable[Addr]) -> list[Addr]:
    return list(dict.fromkeys(items))


def parse_networks(cidrs: Iterable[str]) -> list[Network]:
    """Pod/service subnets (already validated by the config loader); a bad one is skipped."""
    out: list[Network] = []
    for c in cidrs:
        try:
            out.append(parse_prefix(c).network)
        except ValueError:
            log.warning("ignoring unparsable Kubernetes subnet %r", c)
    return out


def _in_any(ip: Addr, nets: Sequence[Network]) -> bool:
    return any(ip.version == n.version and ip in n for n in nets)


def no_k8s(prefixes: Iterable[Prefix], k8s: Sequence[Network]) -> list[Prefix]:
    """§5.2 ``no-k8s``: drop addresses inside a pod or service subnet."""
    return [p for p in prefixes if not _in_any(p.ip, k8s)]


def only_k8s(prefixes: Iterable[Prefix], k8s: Sequence[Network]) -> list[Prefix]:
    return [p for p in prefixes if _in_any(p.ip, k8s)]


# ---- §5.3 endpoints -----------------------------------------------------------------------


def parse_filter(rule: str) -> tuple[bool, Network]:
    """One ``filters.endpoints`` entry: (negated, network); a bare IP is /32 or /128."""
    neg = rule.startswith("!")
    text = rule[1:] if neg else rule
    try:
        net = parse_prefix(text).network if "/" in text else ipaddress.ip_network(parse_addr(text))
    except ValueError:
        raise ValueError(
            f"machine.network.kubespan.filters.endpoints: {rule!r} is not a CIDR or an IP"
        ) from None
    return neg, net


def filter_ips(ips: Sequence[Addr], filters: Sequence[str]) -> list[Addr]:
    """§5.3 step 3: rules in order, each adding (or with ``!`` removing) the IPs it contains;
    so the output follows the filter order. An empty filter list means no filtering."""
    if not filters:
        return list(ips)
    result: list[Addr] = []
    for rule in filters:
        neg, net = parse_filter(rule)
        for ip in ips:
            if ip.version != net.version or ip not in net:
                continue
            if not neg and ip not in result:
                result.append(ip)
            elif neg and ip in result:
                result.remove(ip)
    return result


def local_endpoints(
    current_no_k8s: Sequence[Addr],
    kubespan_address: Addr | None,
    public_ips: Sequence[Addr],
    filters: Sequence[str],
    port: int = KUBESPAN_PORT,
) -> list[str]:
    """§5.3: own IPs (minus the KubeSpan and SideroLink ones), then discovered public IPs, filtered."""
    ips = [
        ip for ip in _dedupe(current_no_k8s) if ip != kubespan_address and not is_ula(ip, PURPOSE_SIDEROLINK)
    ]
    for ip in public_ips:
        if ip not in ips:
            ips.append(ip)
    return [format_endpoint(ip, port) for ip in filter_ips(ips, filters)]


# ---- §5.2 the local affiliate -------------------------------------------------------------


@dataclass(frozen=True)
class LocalKubeSpan:
    """What the local affiliate needs of the KubeSpan identity and config."""

    public_key: str
    address: Addr
    advertise_kubernetes_networks: bool = False
    endpoint_filters: tuple[str, ...] = ()


@dataclass(frozen=True)
class LocalNode:
    node_id: str
    hostname: str  # FQDN
    nodename: str
    machine_type: MachineType
    operating_system: str
    api_server_port: int | None = None  # control-plane nodes only


def nodename_of(hostname: str) -> str:
    """§5.2: Kubernetes node name = the short hostname, lower-cased (no kubelet config here)."""
    return hostname.split(".", 1)[0].lower()


def local_affiliate(
    node: LocalNode,
    routed: Sequence[Prefix],
    current: Sequence[Prefix],
    public_ips: Sequence[Addr],
    k8s_subnets: Sequence[Network],
    kubespan: LocalKubeSpan | None,
) -> AffiliateSpec:
    """§5.2. ``routed``/``current`` are the NodeAddress lists (sorted, deduplicated)."""
    spec = AffiliateSpec(
        node_id=node.node_id,
        addresses=_dedupe(p.ip for p in no_k8s(routed, k8s_subnets)),
        hostname=node.hostname,
        nodename=node.nodename,
        operating_system=node.operating_system,
        machine_type=node.machine_type,
        control_plane=ControlPlaneSpec(port=node.api_server_port) if node.api_server_port else None,
    )
    if kubespan is None:
        return spec
    additional = only_k8s(current, k8s_subnets) if kubespan.advertise_kubernetes_networks else []
    endpoints = local_endpoints(
        [p.ip for p in no_k8s(current, k8s_subnets)],
        kubespan.address,
        public_ips,
        kubespan.endpoint_filters,
    )
    spec.kubespan = KubeSpanAffiliateSpec(
        public_key=kubespan.public_key,
        address=kubespan.address,
        additional_addresses=list(dict.fromkeys(additional)),
        endpoints=endpoints,
    )
    return spec


# ---- §4.7 the wire form -------------------------------------------------------------------


def to_wire(spec: AffiliateSpec) -> tuple[AffiliateInfo, tuple[Endpoint, ...]]:
    """§4.7 step 2: the payload and own endpoints to publish (endpoints only with a KubeSpan key)."""
    ks = spec.kubespan
    kubespan = None
    endpoints: tuple[Endpoint, ...] = ()
    if ks is not None and ks.public_key:
        kubespan = KubeSpanInfo(
            public_key=ks.public_key,
            address=ks.address,
            additional_addresses=tuple(ks.additional_addresses),
        )
        endpoints = tuple(Endpoint(*parse_endpoint(e)) for e in ks.endpoints)
    cp = spec.control_plane
    info = AffiliateInfo(
        node_id=spec.node_id,
        addresses=tuple(spec.addresses),
        hostname=spec.hostname,
        nodename=spec.nodename,
        machine_type=str(spec.machine_type),
        operating_system=spec.operating_system,
        kubespan=kubespan,
        control_plane=ControlPlaneInfo(cp.port) if cp is not None else None,
    )
    return info, endpoints


def raw_affiliate(d: DiscoveredAffiliate) -> tuple[str, AffiliateSpec] | None:
    """§4.7 step 4: ``service/<node_id from the payload>``; None when the payload has no node ID.

    Anything odd inside a decrypted payload (a bad port, a zero address) is
    dropped field by field, never raised: a hostile member must not stop the
    controller from showing the others.
    """
    a = d.affiliate
    if not a.node_id:
        return None
    spec = AffiliateSpec(
        node_id=a.node_id,
        addresses=_dedupe(ip for ip in a.addresses if ip is not None),
        hostname=a.hostname,
        nodename=a.nodename,
        operating_system=a.operating_system,
        machine_type=MachineType.parse(a.machine_type),
        control_plane=ControlPlaneSpec(port=a.control_plane.api_server_port) if a.control_plane else None,
    )
    if a.kubespan is not None:
        endpoints = []
        for ep in d.endpoints:
            if 0 <= ep.port <= 65535 and not getattr(ep.ip, "scope_id", None):
                endpoints.append(format_endpoint(ep.ip, ep.port))
        spec.kubespan = KubeSpanAffiliateSpec(
            public_key=a.kubespan.public_key,
            address=a.kubespan.address,
            additional_addresses=list(dict.fromkeys(a.kubespan.additional_addresses)),
            endpoints=list(dict.fromkeys(endpoints)),
        )
    return SERVICE_PREFIX + a.node_id, spec


# ---- §5.4 merge, §5.5 members -------------------------------------------------------------


def _union(base: list[str] | list[Addr] | list[Prefix], more: Iterable[object]) -> list[object]:
    out: list[object] = list(base)
    for item in more:
        if item not in out:
            out.append(item)
    return out


def merge_into(base: AffiliateSpec, other: AffiliateSpec) -> AffiliateSpec:
    """§5.4 one step: unions keep order; scalars overwrite when the other has a value;
    operatingSystem is not merged (base wins)."""
    out = base.model_copy(deep=True)
    out.addresses = _union(out.addresses, other.addresses)  # type: ignore[assignment]
    if other.hostname:
        out.hostname = other.hostname
    if other.nodename:
        out.nodename = other.nodename
    if other.machine_type != MachineType.UNKNOWN:
        out.machine_type = other.machine_type
    if other.control_plane is not None:
        out.control_plane = other.control_plane.model_copy()
    if other.kubespan is not None:
        ks = out.kubespan.model_copy(deep=True) if out.kubespan is not None else KubeSpanAffiliateSpec()
        o = other.kubespan
        if o.public_key:
            ks.public_key = o.public_key
        if o.address is not None:
            ks.address = o.address
        ks.additional_addresses = _union(ks.additional_addresses, o.additional_addresses)  # type: ignore[assignment]
        ks.endpoints = _union(ks.endpoints, o.endpoints)  # type: ignore[assignment]
        out.kubespan = ks
    return out


def merge_affiliates(
    raw: Iterable[tuple[str, AffiliateSpec]], own_node_id: str = ""
) -> dict[str, AffiliateSpec]:
    """§5.4: raw affiliates (any order) grouped by nodeId in ascending raw-id order → merged by
    node ID. The own node ID is skipped: the local affiliate has no raw source and is not ours."""
    groups: dict[str, AffiliateSpec] = {}
    for _, spec in sorted(raw, key=lambda item: item[0]):
        nid = spec.node_id
        if not nid or nid == own_node_id:
            continue
        cur = groups.get(nid)
        groups[nid] = spec.model_copy(deep=True) if cur is None else merge_into(cur, spec)
    return dict(sorted(groups.items()))


def members(affiliates: Iterable[AffiliateSpec]) -> dict[str, MemberSpec]:
    """§5.5: one Member per affiliate with a nodename (id = nodename), the local one included."""
    out: dict[str, MemberSpec] = {}
    for a in affiliates:
        if not a.nodename:
            continue
        out[a.nodename] = MemberSpec(
            node_id=a.node_id,
            addresses=list(a.addresses),
            hostname=a.hostname,
            machine_type=a.machine_type,
            operating_system=a.operating_system,
            control_plane=a.control_plane.model_copy() if a.control_plane is not None else None,
        )
    return dict(sorted(out.items()))
