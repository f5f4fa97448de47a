"""DiscoveryConfig and KubeSpanConfig from the machine config (kubespan.md §1.2), as pure functions.

Controllers read these derived objects instead of the machine config so a
change that does not touch discovery (a new route, say) does not restart the
discovery client, and so ``netctl get discoveryconfigs`` shows exactly what
the client was started with.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from cluster.resources import DiscoveryConfigSpec, KubeSpanConfigSpec, KubeSpanStaticPeerSpec
from netd.config.kubespan_peer import parse_allowed_ip, parse_peer_endpoint
from netd.config.models import Config, KubeSpanPeerConfig
from netd.netip import format_addr


class DerivationError(ValueError):
    """The config cannot give a usable object; the message starts with the YAML path."""


def split_endpoint_url(url: str) -> tuple[str, int, bool]:
    """(host, port, insecure) of a discovery endpoint URL (§1.2).

    Port: the URL's, else 80 for ``http`` and 443 for anything else;
    ``insecure`` iff the scheme is ``http``. The host keeps its case, as Go's
    ``url.Hostname()`` does.
    """
    field = "cluster.discovery.registries.service.endpoint"
    scheme, sep, rest = url.strip().partition("://")
    if not sep or not scheme:
        raise DerivationError(f"{field}: {url!r} is not a URL (want e.g. https://discovery.talos.dev/)")
    scheme = scheme.lower()
    netloc = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    netloc = netloc.rpartition("@")[2]
    port_text = ""
    if netloc.startswith("["):
        host, bracket, after = netloc[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise DerivationError(f"{field}: {url!r}: bad IPv6 host")
        port_text = after[1:]
    else:
        host, _, port_text = netloc.partition(":")
    if not host:
        raise DerivationError(f"{field}: {url!r}: no host")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
            raise DerivationError(f"{field}: {url!r}: bad port {port_text!r}")
        port = int(port_text)
    else:
        port = 80 if scheme == "http" else 443
    return host, port, scheme == "http"


def join_host_port(host: str, port: int) -> str:
    """Go's ``net.JoinHostPort``: brackets around a host containing ':'."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def discovery_config(cfg: Config | None) -> DiscoveryConfigSpec:
    """§1.2 DiscoveryConfig; no config at all means discovery off."""
    if cfg is None:
        return DiscoveryConfigSpec()
    d = cfg.cluster.discovery
    out = DiscoveryConfigSpec(
        discovery_enabled=d.enabled,
        registry_kubernetes_enabled=d.kubernetes_registry_enabled,
        registry_service_enabled=d.service_registry_enabled,
    )
    if not out.registry_service_enabled:
        return out
    host, port, insecure = split_endpoint_url(d.registries.service.endpoint)
    try:
        key = base64.b64decode(cfg.cluster.secret, validate=True)
    except (binascii.Error, ValueError):
        raise DerivationError("cluster.secret: not valid standard base64") from None
    return out.model_copy(
        update={
            "service_endpoint": join_host_port(host, port),
            "service_endpoint_insecure": insecure,
            "service_encryption_key": key,
            "service_cluster_id": cfg.cluster.id,
        }
    )


def static_peer(peer: KubeSpanPeerConfig) -> KubeSpanStaticPeerSpec:
    """A loaded (so valid) ``KubeSpanPeerConfig`` document as the KubeSpan manager's static
    peer: prefixes parsed, the endpoint normalised (``[v6]:port``, as Go prints it)."""
    endpoint = ""
    if peer.endpoint:
        ip, port = parse_peer_endpoint(peer.endpoint)
        endpoint = f"[{format_addr(ip)}]:{port}" if ip.version == 6 else f"{format_addr(ip)}:{port}"
    return KubeSpanStaticPeerSpec(
        name=peer.name,
        public_key=peer.public_key,
        allowed_ips=[parse_allowed_ip(text) for text in peer.allowed_ips],
        endpoint=endpoint,
    )


def kubespan_config(
    cfg: Config | None, peers: Sequence[KubeSpanPeerConfig] = ()
) -> KubeSpanConfigSpec | None:
    """§1.2 KubeSpanConfig; None when there is no machine config (the object does not exist).

    ``peers``: the ``KubeSpanPeerConfig`` documents (issue 13), in document order, as
    ``static_peers``: the manager adds them to the ``kubespan`` link when KubeSpan is on.
    """
    if cfg is None:
        return None
    ks = cfg.machine.network.kubespan
    return KubeSpanConfigSpec(
        enabled=ks.enabled,
        cluster_id=cfg.cluster.id,
        shared_secret=cfg.cluster.secret,
        force_routing=ks.force_routing,
        advertise_kubernetes_networks=ks.advertise_kubernetes_networks,
        mtu=ks.mtu,
        endpoint_filters=list(ks.filters.endpoints),
        harvest_extra_endpoints=ks.harvest_extra_endpoints,
        static_peers=[static_peer(p) for p in peers],
    )
