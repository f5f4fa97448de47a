"""netd.kernel.wireguard.genl: our WireGuard genetlink messages (linux/wireguard.h) round-trip,
several peers go in one message, large writes split without repeating device attributes, and
the kernel's split dump (a peer continued in the next message) is merged back."""

from __future__ import annotations

import ipaddress
import socket
import struct

from hypothesis import given
from test_wireguard_uapi import device_configs, devices

from netd.kernel import netlink as nl
from netd.kernel.wireguard import genl
from netd.kernel.wireguard.model import DeviceConfig, PeerConfig, PeerInfo, WireguardDevice


@given(device_configs)
def test_set_device_round_trip(cfg: DeviceConfig) -> None:
    payloads = genl.encode_set_device("wg0", cfg)
    assert len(payloads) == 1
    assert genl.decode_set_device(payloads) == ("wg0", cfg)


@given(devices())
def test_get_device_round_trip(dev: WireguardDevice) -> None:
    assert genl.decode_device([genl.encode_device("wg0", dev)]) == dev


def test_large_write_is_split_device_attributes_once() -> None:
    peers = [
        PeerConfig(
            public_key=bytes([i]) * 32,
            replace_allowed_ips=True,
            allowed_ips=[ipaddress.IPv4Interface((f"10.{i}.{j}.0", 24)) for j in range(20)],
        )
        for i in range(1, 40)
    ]
    cfg = DeviceConfig(private_key=bytes([9]) * 32, listen_port=51820, replace_peers=True, peers=peers)
    payloads = genl.encode_set_device("wg0", cfg, budget=4096)
    assert len(payloads) > 5
    assert all(len(p) < 4096 + 1024 for p in payloads)
    assert genl.decode_set_device(payloads) == ("wg0", cfg)
    first = genl.decode_set_device(payloads[:1])[1]
    rest = genl.decode_set_device(payloads[1:])[1]
    assert first.private_key and first.listen_port == 51820 and first.replace_peers
    assert rest.private_key is None and rest.listen_port is None and not rest.replace_peers


def test_split_dump_merges_continued_peer() -> None:
    k = bytes([7]) * 32
    a = WireguardDevice(peers=[PeerInfo(public_key=k, allowed_ips=[ipaddress.IPv4Interface("10.0.0.0/24")])])
    b = WireguardDevice(peers=[PeerInfo(public_key=k, allowed_ips=[ipaddress.IPv4Interface("10.0.1.0/24")])])
    dev = genl.decode_device([genl.encode_device("wg0", a), genl.encode_device("wg0", b)])
    assert len(dev.peers) == 1
    assert [str(p) for p in dev.peers[0].allowed_ips] == ["10.0.0.0/24", "10.0.1.0/24"]


def test_peer_flags_are_the_kernel_values() -> None:
    """linux/wireguard.h: REMOVE_ME 1<<0, REPLACE_ALLOWEDIPS 1<<1, UPDATE_ONLY 1<<2."""
    k = bytes([1]) * 32
    for peer, flags in (
        (PeerConfig(public_key=k, remove=True), 1),
        (PeerConfig(public_key=k, replace_allowed_ips=True), 2),
        (PeerConfig(public_key=k, update_only=True), 4),
    ):
        attrs = dict(genl.parse_nlas(genl.encode_peer(peer)[4:]))
        assert struct.unpack("=I", attrs[genl.WGPEER_A_FLAGS]) == (flags,)
    # The nested flag is set on the peer array element and on the peers attribute.
    (payload,) = genl.encode_set_device("wg0", DeviceConfig(peers=[PeerConfig(public_key=k)]))
    raw = [t for t in _raw_types(payload[4:])]
    assert genl.WGDEVICE_A_PEERS | genl.NLA_F_NESTED in raw


def _raw_types(data: bytes) -> list[int]:
    out, off = [], 0
    while off < len(data):
        length, atype = struct.unpack_from("=HH", data, off)
        out.append(atype)
        off += (length + 3) & ~3
    return out


def test_sockaddr() -> None:
    v4 = genl.encode_sockaddr("192.0.2.1:51820")
    assert len(v4) == 16 and v4[2:4] == struct.pack("!H", 51820) and v4[4:8] == socket.inet_aton("192.0.2.1")
    v6 = genl.encode_sockaddr("[fd00::1]:51820")
    assert len(v6) == 28
    assert genl.decode_sockaddr(v4) == "192.0.2.1:51820"
    assert genl.decode_sockaddr(v6) == "[fd00::1]:51820"


def test_netlink_framing() -> None:
    msg = genl.nlmsg(genl.GENL_ID_CTRL, nl.NLM_F_REQUEST, 7, genl.getfamily_request("wireguard"))
    ((mtype, flags, seq, body),) = list(genl.parse_nlmsgs(msg + msg[:0]))
    assert (mtype, flags, seq) == (genl.GENL_ID_CTRL, nl.NLM_F_REQUEST, 7)
    answer = genl.genl_header(1, 1) + genl.nla(genl.CTRL_ATTR_FAMILY_ID, genl.u16(0x1234))
    assert genl.parse_family_id(answer) == 0x1234
    assert dict(genl.parse_nlas(body[4:]))[genl.CTRL_ATTR_FAMILY_NAME] == b"wireguard\0"
