"""Encrypted payloads: typed models <-> ``affiliate_pb2`` <-> cipher blobs (spec §4.3-4.5).

Decoding is strict at the blob level (raise PayloadError, so the caller can skip
and log that affiliate or endpoint) and lenient inside a valid payload (a bad
address or prefix is dropped, the rest is kept), as the reference does.
"""

from __future__ import annotations

import ipaddress

from google.protobuf.message import DecodeError

from .api import affiliate_pb2
from .constants import MAX_ENDPOINT_BLOB
from .crypto import ClusterCipher, DecryptError
from .ipcodec import IPDecodeError, marshal_ip, unmarshal_ip, unmarshal_ips
from .models import AffiliateInfo, ControlPlaneInfo, Endpoint, Interface, KubeSpanInfo

_MAX_PORT = 65535


class PayloadError(ValueError):
    """A blob that does not decrypt or does not parse into a usable value."""


# --- models -> protobuf ---


def affiliate_to_proto(info: AffiliateInfo) -> affiliate_pb2.Affiliate:
    pb = affiliate_pb2.Affiliate(
        node_id=info.node_id,
        addresses=[marshal_ip(a) for a in info.addresses],
        hostname=info.hostname,
        nodename=info.nodename,
        machine_type=info.machine_type,
        operating_system=info.operating_system,
    )
    if info.kubespan is not None:
        ks = info.kubespan
        pb.kubespan.public_key = ks.public_key
        pb.kubespan.address = marshal_ip(ks.address)
        for iface in ks.additional_addresses:
            pb.kubespan.additional_addresses.add(ip=marshal_ip(iface.ip), bits=iface.network.prefixlen)
        pb.kubespan.SetInParent()  # present even when every field is empty
    if info.control_plane is not None:
        pb.control_plane.api_server_port = info.control_plane.api_server_port
        pb.control_plane.SetInParent()
    return pb


def endpoint_to_proto(ep: Endpoint) -> affiliate_pb2.Endpoint:
    return affiliate_pb2.Endpoint(ip=marshal_ip(ep.ip), port=ep.port)


# --- protobuf -> models ---


def _prefix(pb: affiliate_pb2.IPPrefix) -> Interface | None:
    try:
        addr = unmarshal_ip(pb.ip)
    except IPDecodeError:
        return None
    if addr is None or addr.max_prefixlen < pb.bits:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id:
        return None  # netip prefixes cannot carry a zone
    return ipaddress.ip_interface((addr, pb.bits))


def affiliate_from_proto(pb: affiliate_pb2.Affiliate) -> AffiliateInfo:
    kubespan = None
    if pb.HasField("kubespan"):
        try:
            ks_addr = unmarshal_ip(pb.kubespan.address)
        except IPDecodeError:
            ks_addr = None
        prefixes = [_prefix(p) for p in pb.kubespan.additional_addresses]
        kubespan = KubeSpanInfo(
            public_key=pb.kubespan.public_key,
            address=ks_addr,
            additional_addresses=tuple(p for p in prefixes if p is not None),
        )
    control_plane = None
    if pb.HasField("control_plane"):
        control_plane = ControlPlaneInfo(api_server_port=pb.control_plane.api_server_port)
    return AffiliateInfo(
        node_id=pb.node_id,
        addresses=tuple(unmarshal_ips(pb.addresses)),
        hostname=pb.hostname,
        nodename=pb.nodename,
        machine_type=pb.machine_type,
        operating_system=pb.operating_system,
        kubespan=kubespan,
        control_plane=control_plane,
    )


def endpoint_from_proto(pb: affiliate_pb2.Endpoint) -> Endpoint:
    try:
        addr = unmarshal_ip(pb.ip)
    except IPDecodeError as e:
        raise PayloadError(str(e)) from None
    if addr is None:
        raise PayloadError("endpoint without an IP")
    if pb.port > _MAX_PORT:
        raise PayloadError(f"endpoint port {pb.port} out of range")
    return Endpoint(addr, pb.port)


# --- models <-> encrypted blobs ---


def seal_affiliate(cipher: ClusterCipher, info: AffiliateInfo, nonce: bytes | None = None) -> bytes:
    """``nonce`` only for test vectors (§9.3); omit it in real use."""
    return cipher.encrypt_data(affiliate_to_proto(info).SerializeToString(), nonce)


def open_affiliate(cipher: ClusterCipher, blob: bytes) -> AffiliateInfo:
    try:
        plaintext = cipher.decrypt_data(blob)
    except DecryptError as e:
        raise PayloadError(str(e)) from None
    pb = affiliate_pb2.Affiliate()
    try:
        pb.ParseFromString(plaintext)
    except DecodeError as e:
        raise PayloadError(f"affiliate payload does not parse: {e}") from None
    return affiliate_from_proto(pb)


def seal_endpoint(cipher: ClusterCipher, ep: Endpoint) -> bytes:
    """Raises ValueError for an endpoint the server would reject (zoned IPv6: blob > 32 bytes)."""
    blob = cipher.encrypt_endpoint(endpoint_to_proto(ep).SerializeToString())
    if len(blob) > MAX_ENDPOINT_BLOB:
        raise ValueError(f"endpoint {ep.ip}:{ep.port} encrypts to {len(blob)} bytes (> {MAX_ENDPOINT_BLOB})")
    return blob


def open_endpoint(cipher: ClusterCipher, blob: bytes) -> Endpoint:
    try:
        pb_bytes = cipher.decrypt_endpoint(blob)
    except DecryptError as e:
        raise PayloadError(str(e)) from None
    pb = affiliate_pb2.Endpoint()
    try:
        pb.ParseFromString(pb_bytes)
    except DecodeError as e:
        raise PayloadError(f"endpoint payload does not parse: {e}") from None
    return endpoint_from_proto(pb)
