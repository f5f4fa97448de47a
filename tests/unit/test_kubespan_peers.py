"""kubespan/peers.py: peer selection (kubespan.md §5.6), peer specs and the two examples of §6.1."""

from __future__ import annotations

import ipaddress as ia

import pytest

from kubespan.peers import Endpoint, PeerCandidate, build_peer_specs, cidr_cover, select_candidates

A_KS = ia.IPv6Address("fd50:8d60:4238:6302:f857:23ff:fe21:d1e0")
B_KS = ia.IPv6Address("fd50:8d60:4238:6302:f857:23ff:fe21:d1e1")


def cand(
    node_id: str,
    key: str,
    ks: ia.IPv6Address | None = A_KS,
    *,
    addrs: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
    eps: tuple[str, ...] = (),
) -> PeerCandidate:
    return PeerCandidate(
        node_id=node_id,
        label=f"n-{node_id}",
        public_key=key,
        kubespan_address=ks,
        addresses=[ia.ip_address(a) for a in addrs],
        additional_addresses=[ia.ip_interface(p) for p in extra],
        endpoints=[Endpoint.parse(e) for e in eps],
    )


def nets(*texts: str) -> tuple[ia.IPv4Network | ia.IPv6Network, ...]:
    return tuple(ia.ip_network(t) for t in texts)


def test_reference_example_single_peer() -> None:
    c = cand(
        "a",
        "KA",
        addrs=("192.168.3.4",),
        extra=("10.244.3.1/24", "10.244.3.0/32"),
        eps=("192.168.3.4:51820",),
    )
    built = build_peer_specs([c])
    spec = built.specs["KA"]
    assert spec.allowed_ips == nets("10.244.3.0/24", "192.168.3.4/32", f"{A_KS}/128")
    assert (spec.label, spec.address, spec.public_key) == ("n-a", A_KS, "KA")
    assert spec.endpoints == (Endpoint(ia.ip_address("192.168.3.4"), 51820),)
    assert built.warnings == []


def test_reference_example_overlap_lower_node_id_wins() -> None:
    a = cand("a", "KA", A_KS, extra=("10.244.3.1/24", "10.244.3.0/32"))
    b = cand("b", "KB", B_KS, extra=("10.244.2.0/23", "192.168.3.0/24"))
    for order in ([a, b], [b, a]):  # discovery order does not matter: node-ID order does
        built = build_peer_specs(order)
        assert built.specs["KA"].allowed_ips == nets("10.244.3.0/24", f"{A_KS}/128")
        assert built.specs["KB"].allowed_ips == nets("10.244.2.0/24", "192.168.3.0/24", f"{B_KS}/128")
        assert len(built.warnings) == 1 and "overlap" in built.warnings[0]


def test_fully_overlapped_peer_is_kept_empty_with_warning() -> None:
    a = cand("a", "KA", A_KS, addrs=("10.0.0.1",))
    b = cand("b", "KB", A_KS, addrs=("10.0.0.1",))  # same KubeSpan address too
    built = build_peer_specs([a, b])
    assert built.specs["KB"].allowed_ips == ()
    assert any("no addresses left" in w for w in built.warnings)


def test_missing_kubespan_address_skips_peer() -> None:
    built = build_peer_specs([cand("a", "KA", None, addrs=("10.0.0.1",)), cand("b", "KB", B_KS)])
    assert list(built.specs) == ["KB"]
    assert "skipped" in built.warnings[0]


def test_duplicate_public_key_keeps_lower_node_id() -> None:
    built = build_peer_specs([cand("b", "K", B_KS), cand("a", "K", A_KS)])
    assert built.specs["K"].address == A_KS
    assert any("already used" in w for w in built.warnings)


def test_allowed_ips_sorted_v4_first_and_collapsed() -> None:
    c = cand("a", "KA", A_KS, addrs=("10.0.0.3", "fd00::1", "10.0.0.2", "1.1.1.1"), extra=("fd00::/127",))
    assert build_peer_specs([c]).specs["KA"].allowed_ips == nets(
        "1.1.1.1/32", "10.0.0.2/31", "fd00::/127", f"{A_KS}/128"
    )


def test_cidr_cover_is_minimal() -> None:
    # [10.0.0.1, 10.0.0.6] needs 4 prefixes: .1/32 .2/31 .4/31 .6/32
    assert cidr_cover([(0x0A000001, 0x0A000007)], []) == nets(
        "10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"
    )


def test_select_candidates_excludes_local_and_keyless() -> None:
    cs = [cand("me", "K0"), cand("a", "KA"), cand("b", "")]
    assert [c.node_id for c in select_candidates(cs, "me")] == ["a"]


@pytest.mark.parametrize(
    ("text", "ip", "port"),
    [
        ("1.2.3.4:51820", "1.2.3.4", 51820),
        ("[2001:db8::1]:51820", "2001:db8::1", 51820),
        ("[::ffff:1.2.3.4]:1", "::ffff:1.2.3.4", 1),
    ],
)
def test_endpoint_text_round_trip(text: str, ip: str, port: int) -> None:
    ep = Endpoint.parse(text)
    assert ep == (ia.ip_address(ip), port)
    assert str(ep) == text


@pytest.mark.parametrize("bad", ["1.2.3.4", "2001:db8::1:5", "[1.2.3.4]:5", "1.2.3.4:65536", "x:1"])
def test_endpoint_parse_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        Endpoint.parse(bad)
