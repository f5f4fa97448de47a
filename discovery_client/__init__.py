"""Client of the KubeSpan discovery service, wire-compatible with Sidero's (spec kubespan.md §4).

Shared building blocks (``discovery_service`` imports these too):

``discovery_client.api``
    Generated from ``cluster.proto`` (``sidero.discovery.server.Cluster``: Hello,
    AffiliateUpdate, AffiliateDelete, List, Watch) and ``affiliate.proto``
    (``sidero.discovery.client.Affiliate/KubeSpan/IPPrefix/Endpoint/ControlPlane``).

``discovery_client.constants``
    Timers (``DISCOVERY_TTL``, ``DISCOVERY_HELLO_TIMEOUT``, ``DISCOVERY_REFRESH_TIMEOUT``,
    ``DISCOVERY_BACKOFF_*``, ``DISCOVERY_LEAVE_TIMEOUT``), server limits (``MAX_ID_LENGTH``,
    ``MAX_AFFILIATE_DATA``, ``MAX_ENDPOINT_BLOB``, ``MAX_ENDPOINTS_PER_AFFILIATE``,
    ``MAX_AFFILIATES_PER_CLUSTER``, ``MAX_TTL``), crypto sizes.

``discovery_client.ipcodec`` (§4.4)
    ``marshal_ip(addr | None) -> bytes``; ``unmarshal_ip(bytes) -> addr | None`` (None = zero
    address, ``IPDecodeError`` for impossible lengths); ``unmarshal_ips(items) -> list`` skips both.

``discovery_client.crypto`` (§4.5)
    ``key_from_secret(b64) -> bytes`` (ValueError unless 16/24/32 bytes);
    ``ClusterCipher(key)`` / ``ClusterCipher.from_secret(b64)`` with ``encrypt_data(pt, nonce=None)``,
    ``decrypt_data(blob)``, ``encrypt_endpoint(pb)``, ``decrypt_endpoint(blob)``; ``DecryptError``.

``discovery_client.models``
    Frozen dataclasses ``AffiliateInfo``, ``KubeSpanInfo``, ``ControlPlaneInfo``,
    ``DiscoveredAffiliate``, the NamedTuple ``Endpoint(ip, port)``, ``parse_machine_type``.

``discovery_client.payload``
    ``seal_affiliate(cipher, info, nonce=None) -> bytes``, ``open_affiliate(cipher, blob) -> AffiliateInfo``,
    ``seal_endpoint(cipher, ep) -> bytes``, ``open_endpoint(cipher, blob) -> Endpoint`` (``PayloadError``),
    and the protobuf conversions ``affiliate_to_proto/affiliate_from_proto/endpoint_to_proto/
    endpoint_from_proto``.

``discovery_client.client`` (§4.6)
    ``DiscoveryClient(cipher, *, endpoint, cluster_id, affiliate_id, client_version="", insecure=False,
    timers=ClientTimers(), on_update=None, root_certificates=None, max_receive_message_length=...)``
    with ``set_local_data``, ``delete_local_affiliate``, ``get_affiliates``, ``get_public_ip``,
    ``run``/``start``/``stop``, ``leave``, the ``changed`` event; ``ClientTimers.from_tunables``.

``discovery_client.target`` / ``discovery_client.backoff``
    Endpoint URL -> gRPC target + TLS decision; the reconnect backoff.
"""

from .client import ClientTimers, DiscoveryClient
from .crypto import ClusterCipher, DecryptError, key_from_secret
from .ipcodec import IPDecodeError, marshal_ip, unmarshal_ip, unmarshal_ips
from .models import (
    AffiliateInfo,
    ControlPlaneInfo,
    DiscoveredAffiliate,
    Endpoint,
    KubeSpanInfo,
    parse_machine_type,
)
from .payload import PayloadError, open_affiliate, open_endpoint, seal_affiliate, seal_endpoint

__all__ = [
    "AffiliateInfo",
    "ClientTimers",
    "ClusterCipher",
    "ControlPlaneInfo",
    "DecryptError",
    "DiscoveredAffiliate",
    "DiscoveryClient",
    "Endpoint",
    "IPDecodeError",
    "KubeSpanInfo",
    "PayloadError",
    "key_from_secret",
    "marshal_ip",
    "open_affiliate",
    "open_endpoint",
    "parse_machine_type",
    "seal_affiliate",
    "seal_endpoint",
    "unmarshal_ip",
    "unmarshal_ips",
]
