"""`netctl kubespan showconf` (kubespan/showconf.py): the outside machine's address, the mesh
from a node's resources, the wg-quick file (read back with wgconfig) and the document."""

from __future__ import annotations

import io
import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wgconfig import WGConfig

from kubespan import showconf as sc
from kubespan.identity import eui64, generate_private_key, node_address, public_key, ula_prefix
from netd.config import load_config

SUBNET = ula_prefix("cluster-id")
N1, N2, N3 = (public_key(generate_private_key()) for _ in range(3))


def _addr(mac: str) -> str:
    return str(node_address(SUBNET, bytes.fromhex(mac.replace(":", ""))).ip)


A1, A2, A3 = _addr("02:00:00:00:00:01"), _addr("02:00:00:00:00:02"), _addr("02:00:00:00:00:03")

IDENTITY = {"address": f"{A1}/128", "subnet": str(SUBNET), "publicKey": N1, "privateKey": "secret"}
SPECS: list[tuple[str, dict[str, Any]]] = [
    (N3, {"label": "n3", "address": A3, "allowedIPs": ["10.1.0.13/32", f"{A3}/128"],
          "endpoints": ["10.1.0.13:51820", "203.0.113.35:51820"]}),
    (N2, {"label": "n2", "address": A2, "allowedIPs": ["10.1.0.12/32", f"{A2}/128"],
          "endpoints": ["10.1.0.12:51820", "203.0.113.34:51820"]}),
]  # fmt: skip
LOCAL = {
    "nodeId": "x",
    "nodename": "n1",
    "hostname": "n1",
    "addresses": ["10.1.0.11", A1],
    "kubespan": {
        "publicKey": N1,
        "address": A1,
        "additionalAddresses": ["10.244.1.0/24"],
        "endpoints": ["10.1.0.11:51820", "203.0.113.33:51820"],
    },
}


# ---- the address ----------------------------------------------------------------------------


@given(st.binary(min_size=32, max_size=32))
def test_outside_address_is_in_the_subnet_and_never_eui64(raw: bytes) -> None:
    import base64

    key = base64.b64encode(raw).decode()
    a = sc.outside_address(SUBNET, key)
    assert a.network.prefixlen == 128 and a.ip in SUBNET
    assert a.ip.packed[11:13] != b"\xff\xfe"  # nodes' modified EUI-64 addresses all have it
    assert a == sc.outside_address(SUBNET, key)  # a function of the key: --key-file keeps it


def test_outside_address_differs_per_key_and_skips_taken() -> None:
    a, b = sc.outside_address(SUBNET, N2), sc.outside_address(SUBNET, N3)
    assert a != b
    again = sc.outside_address(SUBNET, N2, [a.ip])
    assert again != a and again.ip in SUBNET


def test_outside_address_cannot_be_a_mac_address() -> None:
    for mac in ("02:00:00:00:00:01", "aa:bb:cc:dd:ee:ff"):
        assert eui64(bytes.fromhex(mac.replace(":", "")))[3:5] == b"\xff\xfe"


def test_outside_address_wants_a_64() -> None:
    with pytest.raises(sc.ShowconfError):
        sc.outside_address(ipaddress.IPv6Network("fd00::/48"), N1)


# ---- the mesh --------------------------------------------------------------------------------


def test_mesh_from_resources() -> None:
    mesh = sc.mesh_from_resources(IDENTITY, SPECS, LOCAL)
    assert mesh.subnet == SUBNET
    assert [n.label for n in mesh.nodes] == ["n1", "n2", "n3"]
    me, n2, n3 = mesh.nodes
    assert me.public_key == N1
    assert [str(p) for p in me.allowed_ips] == ["10.1.0.11/32", "10.244.1.0/24", f"{A1}/128"]
    assert [str(p) for p in n2.allowed_ips] == ["10.1.0.12/32", f"{A2}/128"]
    assert str(me.endpoint) == "203.0.113.33:51820"  # the public one, not the first
    assert str(n3.endpoint) == "203.0.113.35:51820"
    assert set(mesh.addresses()) == {ipaddress.IPv6Address(a) for a in (A1, A2, A3)}


def test_an_endpoint_never_inside_allowed_ips() -> None:
    specs = [(N2, {**SPECS[1][1], "endpoints": ["10.1.0.12:51820"]})]
    mesh = sc.mesh_from_resources(IDENTITY, specs, LOCAL)
    n2 = mesh.nodes[1]
    assert str(n2.endpoint) == "10.1.0.12:51820"  # no public one: the first
    assert [str(p) for p in n2.allowed_ips] == [f"{A2}/128"]


def test_no_kubespan_on_the_node() -> None:
    with pytest.raises(sc.ShowconfError, match="is KubeSpan enabled"):
        sc.mesh_from_resources({"publicKey": N1}, [], None)


def test_pick_endpoint() -> None:
    from kubespan.peers import Endpoint

    e = [Endpoint.parse(t) for t in ("192.168.1.5:51820", "[fd00::5]:51820", "[2001:db8::5]:51820")]
    assert str(sc.pick_endpoint(e)) == "[2001:db8::5]:51820"
    assert str(sc.pick_endpoint(e[:2])) == "192.168.1.5:51820"
    assert sc.pick_endpoint([]) is None


# ---- the two documents -------------------------------------------------------------------------


def test_wg_quick_reads_back() -> None:
    mesh = sc.mesh_from_resources(IDENTITY, SPECS, LOCAL)
    priv = generate_private_key()
    addr = sc.outside_address(SUBNET, sc.public_key_of(priv))
    text = sc.wg_quick(mesh, name="laptop", private_key=priv, address=addr, listen_port=51820, node="n1")
    assert "secret" not in text  # the node's private key never reaches the file
    wc = WGConfig()
    wc.read_from_fileobj(io.StringIO(text))
    iface = wc.get_interface()
    assert (iface["PrivateKey"], iface["Address"], iface["ListenPort"]) == (priv, str(addr), 51820)
    peers = wc.get_peers(keys_only=False)
    assert list(peers) == [N1, N2, N3]
    assert peers[N1]["AllowedIPs"] == ["10.1.0.11/32", "10.244.1.0/24", f"{A1}/128"]
    assert peers[N2]["Endpoint"] == "203.0.113.34:51820"
    assert all(p["PersistentKeepalive"] == 25 for p in peers.values())
    assert "# n2\n[Peer]" in text


def test_peer_document_loads_strictly() -> None:
    addr = sc.outside_address(SUBNET, N2)
    for endpoint in ("", "198.51.100.7:51820", "[2001:db8::7]:51820"):
        doc = sc.peer_document(name="laptop", public_key=N2, allowed_ips=[addr], endpoint=endpoint)
        (p,) = load_config(doc, strict=True).kubespan_peers
        assert (p.name, p.public_key, p.allowed_ips, p.endpoint) == ("laptop", N2, [str(addr)], endpoint)
    doc = sc.peer_document(name="123", public_key=N2, allowed_ips=[addr])
    assert load_config(doc).kubespan_peers[0].name == "123"  # quoted: stays a string


def test_public_key_of() -> None:
    priv = generate_private_key()
    assert sc.public_key_of(priv + "\n") == public_key(priv)
    with pytest.raises(sc.ShowconfError, match="not base64"):
        sc.public_key_of("nope!")
    with pytest.raises(sc.ShowconfError, match="want 32"):
        sc.public_key_of("AAAA")
