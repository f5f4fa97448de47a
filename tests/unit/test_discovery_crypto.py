"""Discovery payload crypto and codecs against the spec's test vectors (kubespan.md §9.1-9.4)."""

from __future__ import annotations

import base64
import contextlib
import ipaddress

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from google.protobuf.duration_pb2 import Duration
from hypothesis import given, settings
from hypothesis import strategies as st

from discovery_client.api import affiliate_pb2, cluster_pb2
from discovery_client.crypto import ClusterCipher, DecryptError, key_from_secret
from discovery_client.ipcodec import IPDecodeError, marshal_ip, unmarshal_ip, unmarshal_ips
from discovery_client.models import (
    AffiliateInfo,
    ControlPlaneInfo,
    Endpoint,
    KubeSpanInfo,
    parse_machine_type,
)
from discovery_client.payload import (
    PayloadError,
    affiliate_to_proto,
    endpoint_to_proto,
    open_affiliate,
    open_endpoint,
    seal_affiliate,
    seal_endpoint,
)

SECRET1 = "kCQsKr4B28VUl7qw1sVkTDNF9fFH++ViIuKsss+C6kc="
KEY1 = "90242c2abe01dbc55497bab0d6c5644c3345f5f147fbe56222e2acb2cf82ea47"
SECRET2 = "I+1In7fLnpcRIjUmEoeugZnSyFoTF6MztLxICL5Yu0s="
KEY2 = "23ed489fb7cb9e97112235261287ae8199d2c85a1317a333b4bc4808be58bb4b"
NONCE = bytes.fromhex("000102030405060708090a0b")

ip = ipaddress.ip_address


@pytest.fixture
def cipher() -> ClusterCipher:
    return ClusterCipher.from_secret(SECRET1)


# --- §9.1 key derivation ---


def test_key_vectors() -> None:
    assert key_from_secret(SECRET1).hex() == KEY1
    assert key_from_secret(SECRET2).hex() == KEY2
    enc = Cipher(algorithms.AES(bytes.fromhex(KEY1)), modes.ECB()).encryptor()
    assert (enc.update(bytes(16)) + enc.finalize()).hex() == "a5a817c01e6946c104aa790359f6e89f"


@pytest.mark.parametrize("size", [16, 24, 32])
def test_key_sizes_accepted(size: int) -> None:
    secret = base64.b64encode(bytes(range(size))).decode()
    assert len(key_from_secret(secret)) == size
    ClusterCipher.from_secret(secret)


@pytest.mark.parametrize(
    "secret",
    [
        base64.b64encode(bytes(15)).decode(),
        base64.b64encode(bytes(31)).decode(),
        base64.b64encode(bytes(33)).decode(),
        "",
        "not base64!!",
        SECRET1.replace("+", "-"),  # URL-safe alphabet is not the cluster secret's encoding
    ],
)
def test_bad_secrets_rejected(secret: str) -> None:
    with pytest.raises(ValueError):
        key_from_secret(secret)


def test_bad_key_length_rejected() -> None:
    with pytest.raises(ValueError, match="16, 24 or 32"):
        ClusterCipher(bytes(20))


# --- §9.2 endpoint encryption ---

ENDPOINT_VECTORS = [
    (
        "172.20.0.3",
        51820,
        "0a04ac14000310ec9403",
        "0a0a04ac14000310ec94030000000000",
        "12a0664393897f1b15ebbacddde83d6d",
    ),
    (
        "2001:db8::1",
        51820,
        "0a1020010db800000000000000000000000110ec9403",
        "160a1020010db800000000000000000000000110ec9403000000000000000000",
        "86a3bdfb8a1ce17119acd906e42df509800787ecaeae371ce398cc74c3b95fa6",
    ),
    (
        "1.2.3.4",
        5678,
        "0a040102030410ae2c",
        "090a040102030410ae2c000000000000",
        "69a3e7fbf7122b1af16f93f69e2bb6f9",
    ),
]


@pytest.mark.parametrize(("addr", "port", "pb", "framed", "wire"), ENDPOINT_VECTORS)
def test_endpoint_vectors(
    cipher: ClusterCipher, addr: str, port: int, pb: str, framed: str, wire: str
) -> None:
    ep = Endpoint(ip(addr), port)
    assert endpoint_to_proto(ep).SerializeToString().hex() == pb
    assert cipher.encrypt_endpoint(bytes.fromhex(pb)).hex() == wire
    assert seal_endpoint(cipher, ep).hex() == wire
    # the framing, checked by decrypting the wire blob with raw AES
    dec = Cipher(algorithms.AES(bytes.fromhex(KEY1)), modes.ECB()).decryptor()
    assert (dec.update(bytes.fromhex(wire)) + dec.finalize()).hex() == framed
    assert open_endpoint(cipher, bytes.fromhex(wire)) == ep


def test_endpoint_vector_second_key() -> None:
    c2 = ClusterCipher.from_secret(SECRET2)
    ep = Endpoint(ip("10.5.0.2"), 51820)
    assert endpoint_to_proto(ep).SerializeToString().hex() == "0a040a05000210ec9403"
    assert seal_endpoint(c2, ep).hex() == "c3702ab6294c65e2c5f50aa873e390e4"
    assert open_endpoint(c2, bytes.fromhex("c3702ab6294c65e2c5f50aa873e390e4")) == ep


def test_endpoint_is_deterministic(cipher: ClusterCipher) -> None:
    ep = Endpoint(ip("172.20.0.3"), 51820)
    assert seal_endpoint(cipher, ep) == seal_endpoint(cipher, ep)


def test_aligned_frame_gets_no_extra_block(cipher: ClusterCipher) -> None:
    assert len(cipher.encrypt_endpoint(bytes(15))) == 16
    assert len(cipher.encrypt_endpoint(bytes(16))) == 32
    assert len(cipher.encrypt_endpoint(bytes(31))) == 32


def test_long_zoned_endpoint_not_publishable(cipher: ClusterCipher) -> None:
    """The service rejects endpoint blobs over 32 bytes; a short zone still fits."""
    assert open_endpoint(cipher, seal_endpoint(cipher, Endpoint(ip("fe80::1%eth0"), 51820))).ip == ip(
        "fe80::1%eth0"
    )
    with pytest.raises(ValueError, match="> 32"):
        seal_endpoint(cipher, Endpoint(ip("fe80::1%enp0s31f6long"), 51820))


@pytest.mark.parametrize("blob", [b"", bytes(15), bytes(17), bytes(33)])
def test_endpoint_bad_lengths_rejected(cipher: ClusterCipher, blob: bytes) -> None:
    with pytest.raises(DecryptError):
        cipher.decrypt_endpoint(blob)
    with pytest.raises(PayloadError):
        open_endpoint(cipher, blob)


def _ecb(plain: bytes) -> bytes:
    enc = Cipher(algorithms.AES(bytes.fromhex(KEY1)), modes.ECB()).encryptor()
    return enc.update(plain) + enc.finalize()


def test_endpoint_frame_length_overflow_rejected(cipher: ClusterCipher) -> None:
    with pytest.raises(DecryptError, match="exceeds"):
        cipher.decrypt_endpoint(_ecb(bytes([16]) + bytes(15)))
    assert cipher.decrypt_endpoint(_ecb(bytes([15]) + bytes(15))) == bytes(15)


@pytest.mark.parametrize(
    "pb",
    [
        b"",  # no IP
        affiliate_pb2.Endpoint(ip=bytes(5), port=1).SerializeToString(),  # bad IP length
        affiliate_pb2.Endpoint(ip=bytes(4), port=70000).SerializeToString(),  # port out of range
        b"\xff\xff\xff",  # not protobuf
    ],
)
def test_malformed_endpoint_payloads_rejected(cipher: ClusterCipher, pb: bytes) -> None:
    with pytest.raises(PayloadError):
        open_endpoint(cipher, cipher.encrypt_endpoint(pb))


# --- §9.3 affiliate payload ---

AFFILIATE_PB_HEX = (
    "0a2b736f753779793334796b58336e3337335a773144584b62387a4437556e794b54364854335144734748364c"
    "1204ac140002"
    "1210fd7f175ab97c5602e8711bfffeb2ccee"
    "1a0a74616c6f732d63702d31"
    "220a74616c6f732d63702d31"
    "2a0c636f6e74726f6c706c616e65"
    "320e54616c6f73202876312e362e3829"
    "3a4a0a2c4f616b32664245576e67426877736c42784456676e524e48587338384f4170346b6a726f535830757155453d"
    "1210fd7f175ab97c5602e8711bfffeb2ccee1a080a040af400011018"
    "420308ab32"
)
AFFILIATE_BLOB_HEX = (
    "000102030405060708090a0bc818cc4d6a563a05f4631b0fdf56a283dbeeb2dc00f982e209a5b0976ef4e9740afe5e46"
    "c5769ad1b3598289372f8e1ae724ff457f57c554c337893c8f1db746f3050e382caceccd1ceb68ea602cac48cc777c3f"
    "1a415f06db1d591f2fa9ded56adc03165536a1059ed170ce0c9c12e85db375cf9461e1841c47dcf5414dd28d48c82dc1"
    "023983bb4f4a4d31aee822055f0488557e68496dea14cd66bf2b848032415431f5db4ab13e7a634ddafcc5c358a86934"
    "c05cfd30ba1a1fcbde2c9e0b558a30d8a5dba7d5f517783c2618e7d04ecbb8a43f289445ce6bde4e"
)
KS_ADDR = ip("fd7f:175a:b97c:5602:e871:1bff:feb2:ccee")
VECTOR_AFFILIATE = AffiliateInfo(
    node_id="sou7yy34ykX3n373Zw1DXKb8zD7UnyKT6HT3QDsGH6L",
    addresses=(ip("172.20.0.2"), KS_ADDR),
    hostname="talos-cp-1",
    nodename="talos-cp-1",
    machine_type="controlplane",
    operating_system="Talos (v1.6.8)",
    kubespan=KubeSpanInfo(
        public_key="Oak2fBEWngBhwslBxDVgnRNHXs88OAp4kjroSX0uqUE=",
        address=KS_ADDR,
        additional_addresses=(ipaddress.ip_interface("10.244.0.1/24"),),
    ),
    control_plane=ControlPlaneInfo(api_server_port=6443),
)


def test_affiliate_vector(cipher: ClusterCipher) -> None:
    pb = affiliate_to_proto(VECTOR_AFFILIATE).SerializeToString()
    assert len(pb) == 204
    assert pb.hex() == AFFILIATE_PB_HEX
    blob = seal_affiliate(cipher, VECTOR_AFFILIATE, NONCE)
    assert len(blob) == 232
    assert blob.hex() == AFFILIATE_BLOB_HEX
    assert blob[-16:].hex() == "2618e7d04ecbb8a43f289445ce6bde4e"
    decoded = open_affiliate(cipher, bytes.fromhex(AFFILIATE_BLOB_HEX))
    assert decoded == VECTOR_AFFILIATE
    assert decoded.kubespan is not None
    assert str(decoded.kubespan.additional_addresses[0].ip) == "10.244.0.1"  # host bits kept


def test_minimal_affiliate_vector(cipher: ClusterCipher) -> None:
    info = AffiliateInfo(node_id="node1", hostname="host1")
    assert affiliate_to_proto(info).SerializeToString().hex() == "0a056e6f6465311a05686f737431"
    blob = seal_affiliate(cipher, info, NONCE)
    assert blob.hex() == (
        "000102030405060708090a0bc836d14d7b047266c23f0d17f354c528c24434083ec27762ba3526d959b9"
    )
    assert open_affiliate(cipher, blob) == info


def test_affiliate_nonce_is_fresh(cipher: ClusterCipher) -> None:
    a, b = seal_affiliate(cipher, VECTOR_AFFILIATE), seal_affiliate(cipher, VECTOR_AFFILIATE)
    assert a[:12] != b[:12]
    assert len(a) == 204 + 28
    assert open_affiliate(cipher, a) == open_affiliate(cipher, b) == VECTOR_AFFILIATE


def test_empty_kubespan_and_control_plane_are_present() -> None:
    info = AffiliateInfo(node_id="n", kubespan=KubeSpanInfo(public_key=""), control_plane=ControlPlaneInfo(0))
    pb = affiliate_to_proto(info)
    assert pb.HasField("kubespan")
    assert pb.HasField("control_plane")
    assert pb.SerializeToString().hex() == "0a016e" + "3a00" + "4200"


@pytest.mark.parametrize("length", [0, 1, 11, 12, 27])
def test_short_affiliate_blobs_rejected(cipher: ClusterCipher, length: int) -> None:
    with pytest.raises(DecryptError):
        cipher.decrypt_data(bytes(length))
    with pytest.raises(PayloadError):
        open_affiliate(cipher, bytes(length))


def test_affiliate_wrong_key_or_tamper_rejected(cipher: ClusterCipher) -> None:
    blob = bytes.fromhex(AFFILIATE_BLOB_HEX)
    with pytest.raises(PayloadError):
        open_affiliate(ClusterCipher.from_secret(SECRET2), blob)
    tampered = bytearray(blob)
    tampered[20] ^= 1
    with pytest.raises(PayloadError):
        open_affiliate(cipher, bytes(tampered))


def test_affiliate_that_is_not_protobuf_rejected(cipher: ClusterCipher) -> None:
    with pytest.raises(PayloadError, match="parse"):
        open_affiliate(cipher, cipher.encrypt_data(b"\xff\xff\xff\xff"))


def test_bad_nested_values_are_dropped_not_fatal(cipher: ClusterCipher) -> None:
    pb = affiliate_pb2.Affiliate(node_id="n", addresses=[b"", bytes(5), bytes([10, 0, 0, 1])])
    pb.kubespan.public_key = "k"
    pb.kubespan.address = bytes(3)
    pb.kubespan.additional_addresses.add(ip=bytes([10, 0, 0, 1]), bits=33)  # bits too large
    pb.kubespan.additional_addresses.add(ip=bytes(7), bits=8)  # bad IP
    pb.kubespan.additional_addresses.add(ip=b"", bits=0)  # zero IP
    pb.kubespan.additional_addresses.add(ip=bytes([10, 0, 0, 2]), bits=8)
    info = open_affiliate(cipher, cipher.encrypt_data(pb.SerializeToString()))
    assert info.addresses == (ip("10.0.0.1"),)
    assert info.kubespan == KubeSpanInfo("k", None, (ipaddress.ip_interface("10.0.0.2/8"),))


def test_unknown_fields_ignored(cipher: ClusterCipher) -> None:
    extra = bytes.fromhex("0a056e6f64653178c803")  # node_id "node1", then unknown field 15 varint
    assert open_affiliate(cipher, cipher.encrypt_data(extra)) == AffiliateInfo(node_id="node1")


# --- §9.4 other protobuf snippets ---


def test_hello_and_ttl_snippets() -> None:
    hello = cluster_pb2.HelloRequest(cluster_id="cluster1", client_version="v1.6.8")
    assert hello.SerializeToString().hex() == "0a08636c757374657231120676312e362e38"
    assert Duration(seconds=1800).SerializeToString().hex() == "08880e"
    assert (
        cluster_pb2.AffiliateUpdateRequest(ttl=Duration(seconds=1800)).SerializeToString().hex()
        == "2a0308880e"
    )


def test_affiliate_data_presence() -> None:
    """affiliate_data is proto3 optional: absent means "data unchanged" (§4.2)."""
    absent = cluster_pb2.AffiliateUpdateRequest(affiliate_id="x")
    assert not absent.HasField("affiliate_data")
    empty = cluster_pb2.AffiliateUpdateRequest(affiliate_id="x", affiliate_data=b"")
    assert empty.HasField("affiliate_data")


# --- §4.4 binary IP codec ---


@pytest.mark.parametrize(
    ("addr", "hexed"),
    [
        ("172.20.0.2", "ac140002"),
        ("2001:db8::1", "20010db8000000000000000000000001"),
        ("::ffff:1.2.3.4", "00000000000000000000ffff01020304"),  # mapped stays 16 bytes
        ("fe80::1%eth0", "fe800000000000000000000000000001" + b"eth0".hex()),
    ],
)
def test_ip_codec(addr: str, hexed: str) -> None:
    a = ip(addr)
    assert marshal_ip(a).hex() == hexed
    assert unmarshal_ip(bytes.fromhex(hexed)) == a
    back = unmarshal_ip(bytes.fromhex(hexed))
    assert isinstance(back, type(a))
    assert str(back) == str(a)


def test_ip_codec_zero_and_bad_lengths() -> None:
    assert marshal_ip(None) == b""
    assert unmarshal_ip(b"") is None
    for n in (1, 3, 5, 15):
        with pytest.raises(IPDecodeError):
            unmarshal_ip(bytes(n))
    with pytest.raises(IPDecodeError):
        unmarshal_ip(bytes(16) + b"\xff\xfe")  # zone that is not UTF-8
    assert unmarshal_ips([b"", bytes(3), bytes([1, 2, 3, 4]), bytes(16)]) == [ip("1.2.3.4"), ip("::")]


def test_machine_type_parsing() -> None:
    assert [
        parse_machine_type(s) for s in ("init", "controlplane", "worker", "join", "", "unknown", "x")
    ] == [
        "init",
        "controlplane",
        "worker",
        "worker",
        "worker",
        "unknown",
        "unknown",
    ]


# --- property-based round trips ---

ipv4 = st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1))
ipv6 = st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1))
zone = st.text(st.characters(codec="utf-8", exclude_characters="%/"), min_size=1, max_size=12)
ipv6_zoned = st.builds(lambda a, z: ipaddress.IPv6Address(f"{a}%{z}"), ipv6, zone)
any_ip = st.one_of(ipv4, ipv6)
ports = st.integers(0, 65535)
secrets = st.sampled_from([16, 24, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n))


@given(st.one_of(ipv4, ipv6, ipv6_zoned))
def test_ip_roundtrip(a: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    back = unmarshal_ip(marshal_ip(a))
    assert back == a
    assert str(back) == str(a)


@given(st.binary(max_size=40))
def test_ip_decode_never_crashes(data: bytes) -> None:
    try:
        unmarshal_ip(data)
    except IPDecodeError:
        assert len(data) not in (0, 4, 16)


@given(secrets, any_ip, ports)
def test_endpoint_roundtrip(key: bytes, a: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> None:
    c = ClusterCipher(key)
    blob = seal_endpoint(c, Endpoint(a, port))
    assert len(blob) == (16 if a.version == 4 else 32)
    assert open_endpoint(c, blob) == Endpoint(a, port)


@given(st.binary(max_size=80))
def test_endpoint_decrypt_of_garbage_only_raises_payload_error(blob: bytes) -> None:
    c = ClusterCipher(bytes.fromhex(KEY1))
    with contextlib.suppress(PayloadError):
        open_endpoint(c, blob)


text = st.text(max_size=30)
interfaces = st.one_of(
    st.builds(lambda a, b: ipaddress.ip_interface((a, b)), ipv4, st.integers(0, 32)),
    st.builds(lambda a, b: ipaddress.ip_interface((a, b)), ipv6, st.integers(0, 128)),
)
affiliates = st.builds(
    AffiliateInfo,
    node_id=text,
    addresses=st.lists(any_ip, max_size=4).map(tuple),
    hostname=text,
    nodename=text,
    machine_type=st.sampled_from(["", "init", "controlplane", "worker", "unknown"]),
    operating_system=text,
    kubespan=st.none()
    | st.builds(
        KubeSpanInfo,
        public_key=text,
        address=st.none() | ipv6,
        additional_addresses=st.lists(interfaces, max_size=3).map(tuple),
    ),
    control_plane=st.none() | st.builds(ControlPlaneInfo, st.integers(0, 2**32 - 1)),
)


@settings(max_examples=200)
@given(secrets, affiliates)
def test_affiliate_roundtrip(key: bytes, info: AffiliateInfo) -> None:
    c = ClusterCipher(key)
    blob = seal_affiliate(c, info)
    assert open_affiliate(c, blob) == info


@given(st.binary(max_size=300))
def test_affiliate_decrypt_of_garbage_only_raises_payload_error(blob: bytes) -> None:
    c = ClusterCipher(bytes.fromhex(KEY1))
    with contextlib.suppress(PayloadError):
        open_affiliate(c, blob)


@given(st.binary(max_size=300))
def test_affiliate_parse_of_arbitrary_plaintext_never_crashes(plaintext: bytes) -> None:
    c = ClusterCipher(bytes.fromhex(KEY1))
    with contextlib.suppress(PayloadError):
        open_affiliate(c, c.encrypt_data(plaintext))
