"""KubeSpan identity (kubespan.md §3): keys (§9.7), ULA and EUI-64 (§9.5), the MAC choice, the file."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from kubespan.identity import (
    KUBESPAN_IDENTITY_FILE,
    PURPOSE_KUBESPAN,
    PURPOSE_SIDEROLINK,
    KubeSpanIdentityError,
    LinkHW,
    choose_mac,
    eui64,
    generate_private_key,
    is_ula,
    load_or_create_keys,
    mac_from_node_id,
    node_address,
    parse_identity_file,
    parse_mac,
    public_key,
    ula_prefix,
)
from netd.netip import parse_addr

CID = "8XuV9TZHW08DOk3bVxQjH9ih_TBKjnh-j44tsCLSBzo="


@pytest.mark.parametrize(
    ("cluster_id", "mac", "subnet", "address"),
    [
        (CID, "ea:71:1b:b2:cc:ee", "fd7f:175a:b97c:5602::/64", "fd7f:175a:b97c:5602:e871:1bff:feb2:ccee"),
        (CID, "2e:1a:b6:53:81:69", "fd7f:175a:b97c:5602::/64", "fd7f:175a:b97c:5602:2c1a:b6ff:fe53:8169"),
        (CID, "52:54:00:12:34:56", "fd7f:175a:b97c:5602::/64", "fd7f:175a:b97c:5602:5054:ff:fe12:3456"),
        (CID, "02:00:0a:00:00:01", "fd7f:175a:b97c:5602::/64", "fd7f:175a:b97c:5602:0:aff:fe00:1"),
        (
            "v16UCWpO2iOm82n6F8dGCJ41ZXXBvDrjRDs2su7C_zs=",
            "ea:71:1b:b2:cc:ee",
            "fd8a:4396:731e:e702::/64",
            "fd8a:4396:731e:e702:e871:1bff:feb2:ccee",
        ),
        ("cluster1", "02:00:0a:00:00:01", "fd36:91d8:71e8:302::/64", "fd36:91d8:71e8:302:0:aff:fe00:1"),
    ],
)
def test_ula_and_address_vectors(cluster_id: str, mac: str, subnet: str, address: str) -> None:
    net = ula_prefix(cluster_id)
    assert str(net) == subnet
    addr = node_address(net, parse_mac(mac))
    assert str(addr) == f"{address}/128"
    assert is_ula(addr.ip, PURPOSE_KUBESPAN) and not is_ula(addr.ip, PURPOSE_SIDEROLINK)


def test_eui64_lengths() -> None:
    assert eui64(bytes.fromhex("0200000000aa")).hex() == "000000fffe0000aa"
    assert eui64(bytes.fromhex("0011223344556677")).hex() == "0211223344556677"
    with pytest.raises(KubeSpanIdentityError, match="4 bytes"):
        eui64(b"\x01\x02\x03\x04")
    with pytest.raises(KubeSpanIdentityError, match="hardware address"):
        parse_mac("zz:00")


def test_is_ula_other_purposes() -> None:
    assert is_ula(parse_addr("fd00:1:2:100::1"), 0x00)
    assert is_ula(parse_addr("fd00:1:2:3:4:5:6:7"), PURPOSE_SIDEROLINK)
    assert is_ula(parse_addr("fdae:41e4:649b:9303::1"), PURPOSE_SIDEROLINK)
    assert not is_ula(parse_addr("10.0.0.1"), PURPOSE_KUBESPAN)


def test_key_vector_and_generation() -> None:
    assert (
        public_key("sF45u5ePau58WeeCUY3T8D9foEKaQ8Opx4cGC8g4XE4=")
        == "Oak2fBEWngBhwslBxDVgnRNHXs88OAp4kjroSX0uqUE="
    )
    priv = generate_private_key()
    raw = base64.b64decode(priv)
    assert len(priv) == 44 and len(raw) == 32
    assert raw[0] & 7 == 0 and raw[31] & 0x80 == 0 and raw[31] & 0x40  # clamped
    assert len(public_key(priv)) == 44
    with pytest.raises(KubeSpanIdentityError, match="want 32 bytes"):
        public_key(base64.b64encode(b"x" * 31).decode())


def test_mac_choice() -> None:
    links = [
        LinkHW("eth0", "02:00:0a:00:00:01", physical=False),  # a veth
        LinkHW("lo", "00:00:00:00:00:00", physical=False),
        LinkHW("enp2s0", "52:54:00:12:34:57", physical=True),
        LinkHW("enp1s0", "52:54:00:12:34:56", physical=True),
    ]
    assert choose_mac(links, "", "id") == (parse_mac("52:54:00:12:34:56"), "link enp1s0")  # first by name
    assert choose_mac(links, "eth0", "id") == (parse_mac("02:00:0a:00:00:01"), "link eth0")
    assert choose_mac(links, "eth9", "id") is None  # the asked-for link is not there (yet)
    veth_only = [links[0], links[1]]
    mac, source = choose_mac(veth_only, "", "nodeid") or (b"", "")
    assert source == "node ID" and mac == mac_from_node_id("nodeid")
    assert mac[0] & 0x02 and not mac[0] & 0x01  # locally administered, unicast
    assert mac_from_node_id("nodeid") == mac_from_node_id("nodeid") != mac_from_node_id("other")
    assert choose_mac(veth_only, "", "") is None


def test_keys_file_created_once_0600(tmp_path: Path) -> None:
    keys, created = load_or_create_keys(str(tmp_path))
    assert created
    path = tmp_path / KUBESPAN_IDENTITY_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    assert text.startswith('address: ""\nsubnet: ""\nprivateKey: ')
    assert keys.public_key == public_key(keys.private_key)
    again, created = load_or_create_keys(str(tmp_path))
    assert again == keys and not created
    assert path.read_text() == text


def test_keys_file_reference_content_and_checks(tmp_path: Path) -> None:
    ref = (
        'address: ""\nsubnet: ""\nprivateKey: sF45u5ePau58WeeCUY3T8D9foEKaQ8Opx4cGC8g4XE4=\n'
        "publicKey: Oak2fBEWngBhwslBxDVgnRNHXs88OAp4kjroSX0uqUE=\n"
    )
    keys = parse_identity_file(ref, "f")
    assert keys.public_key == "Oak2fBEWngBhwslBxDVgnRNHXs88OAp4kjroSX0uqUE="
    # address/subnet are ignored whatever they hold
    assert parse_identity_file(ref.replace('address: ""', "address: fd00::1/128"), "f") == keys
    with pytest.raises(KubeSpanIdentityError, match="f: privateKey: empty"):
        parse_identity_file('privateKey: ""\n', "f")
    with pytest.raises(KubeSpanIdentityError, match="publicKey: does not match"):
        parse_identity_file(ref.replace("Oak2", "Xak2"), "f")
    (tmp_path / KUBESPAN_IDENTITY_FILE).write_text("privateKey:\n")
    with pytest.raises(KubeSpanIdentityError, match="privateKey: empty"):
        load_or_create_keys(str(tmp_path))
