"""KubeSpanPeerConfig (issue 13, our extension): loading, every validation rule with a rejected
example naming the field, nothing applied on an error, and KubeSpanConfig.static_peers."""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.config import kubespan_config
from machined.api.configs import ApplyError, ApplyMode, ConfigManager
from netd.config import ConfigError, LoadedConfig, load_config
from netd.config.kubespan_peer import parse_peer_endpoint
from netd.resources.machine_config import MachineConfigSpec

KEY = "YqVeVyqz7DHuO9uN3jSEIcHisLHWQCEN8c2igTt3mkw="
KEY2 = "J0x878r/hH/DeO/8UugYinP4u3buf+Le2qgBJJAQ0lg="
ADDR = "fd9e:5f29:1885:3402:ac46:a29f:5bb5:ac27/128"
V1 = (
    "version: v1alpha1\nmachine:\n  type: worker\n  network:\n    kubespan:\n      enabled: true\n"
    "cluster:\n  id: cid\n  secret: c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=\n"
    "  discovery:\n    enabled: true\n"
)


def peer(name: str = "laptop", key: str = KEY, allowed: str = f"[{ADDR}]", extra: str = "") -> str:
    return (
        f"apiVersion: v1alpha1\nkind: KubeSpanPeerConfig\nname: {name}\npublicKey: {key}\n"
        f"allowedIPs: {allowed}\n{extra}"
    )


def errors_of(*docs: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config("---\n".join(docs))
    return [str(p) for p in info.value.errors]


# ------------------------------------------------------------------------------------ loading


def test_a_full_document_loads() -> None:
    loaded = load_config(
        "---\n".join([V1, peer(extra='endpoint: "[2001:db8::7]:51820"\n'), peer("ci", KEY2, "[10.9.0.0/24]")])
    )
    a, b = loaded.kubespan_peers
    assert (a.name, a.public_key, a.allowed_ips, a.endpoint) == ("laptop", KEY, [ADDR], "[2001:db8::7]:51820")
    assert (b.name, b.allowed_ips, b.endpoint) == ("ci", ["10.9.0.0/24"], "")
    assert not loaded.empty


def test_static_peers_in_the_kubespan_config() -> None:
    loaded = load_config("---\n".join([V1, peer(extra="endpoint: 198.51.100.7:51820\n")]))
    mc = MachineConfigSpec.from_loaded(loaded)
    ks = kubespan_config(mc.config, mc.kubespan_peers)
    assert ks is not None
    (sp,) = ks.static_peers
    assert (sp.name, sp.public_key, sp.endpoint) == ("laptop", KEY, "198.51.100.7:51820")
    assert sp.allowed_ips == [ipaddress.ip_interface(ADDR)]
    # no documents: none (and the field is omitted from the resource)
    ks = kubespan_config(load_config(V1).config)
    assert ks is not None and ks.static_peers == []


def test_endpoint_is_normalised_as_go_prints_it() -> None:
    loaded = load_config("---\n".join([V1, peer(extra='endpoint: "[2001:db8:0::7]:51820"\n')]))
    ks = kubespan_config(loaded.config, loaded.kubespan_peers)
    assert ks is not None and ks.static_peers[0].endpoint == "[2001:db8::7]:51820"


# ------------------------------------------------------------------------------------ rejected


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            peer(key="notakey"),
            'KubeSpanPeerConfig/laptop: publicKey: public key invalid: "notakey" is not valid base64',
        ),
        (
            peer(key=base64.b64encode(b"x" * 16).decode()),
            "KubeSpanPeerConfig/laptop: publicKey: public key invalid: wrong key",
        ),
        (peer(key='""'), "KubeSpanPeerConfig/laptop: publicKey: publicKey is required"),
        (peer(allowed="[]"), "KubeSpanPeerConfig/laptop: allowedIPs: allowedIPs is required"),
        (peer(allowed=ADDR), "KubeSpanPeerConfig/laptop: allowedIPs: must be a list"),
        (peer(allowed="[fd00::1]"), 'KubeSpanPeerConfig/laptop: allowedIPs[0]: invalid prefix "fd00::1"'),
        (
            peer(allowed="[10.0.0.1/24]"),
            'KubeSpanPeerConfig/laptop: allowedIPs[0]: prefix "10.0.0.1/24" has host bits',
        ),
        (
            peer(allowed="[0.0.0.0/0]"),
            'KubeSpanPeerConfig/laptop: allowedIPs[0]: prefix "0.0.0.0/0" would send',
        ),
        (
            peer(allowed="[10.0.0.0/24, 10.0.0.128/25]"),
            'KubeSpanPeerConfig/laptop: allowedIPs[1]: "10.0.0.128/25" overlaps allowedIPs[0]',
        ),
        (
            peer(extra="endpoint: 198.51.100.7\n"),
            'KubeSpanPeerConfig/laptop: endpoint: invalid endpoint "198.51.100.7"',
        ),
        (
            peer(extra="endpoint: laptop.example:51820\n"),
            "KubeSpanPeerConfig/laptop: endpoint: invalid endpoint",
        ),
        (peer(extra="endpoint: 198.51.100.7:0\n"), "KubeSpanPeerConfig/laptop: endpoint: invalid endpoint"),
        (
            peer(extra="endpoint: 2001:db8::7:51820\n"),
            "KubeSpanPeerConfig/laptop: endpoint: invalid endpoint",
        ),
        (peer(extra="endpoint: 0.0.0.0:51820\n"), "KubeSpanPeerConfig/laptop: endpoint: invalid endpoint"),
        (peer(name='""'), "KubeSpanPeerConfig/: name: name is required"),
        (peer(name='"my laptop"'), 'KubeSpanPeerConfig/my laptop: name: invalid name "my laptop"'),
        (
            peer(extra="persistentKeepalive: 25\n"),
            "KubeSpanPeerConfig/laptop: persistentKeepalive: unknown key",
        ),
        (peer().replace("v1alpha1", "v1"), 'KubeSpanPeerConfig/laptop: apiVersion: unknown apiVersion "v1"'),
    ],
)
def test_rejected(doc: str, expected: str) -> None:
    errors = errors_of(V1, doc)
    assert any(e.startswith(expected) for e in errors), errors


def test_duplicate_names_keys_and_prefixes() -> None:
    errors = errors_of(V1, peer(), peer())
    assert "KubeSpanPeerConfig/laptop: duplicate document: KubeSpanPeerConfig/laptop" in errors
    errors = errors_of(V1, peer(), peer("ci", KEY, "[10.9.0.0/24]"))
    assert "KubeSpanPeerConfig/ci: publicKey: public key is also used by KubeSpanPeerConfig/laptop" in errors
    errors = errors_of(V1, peer(allowed="[10.9.0.0/16]"), peer("ci", KEY2, "[10.9.1.0/24]"))
    overlap = '"10.9.1.0/24" overlaps 10.9.0.0/16 of KubeSpanPeerConfig/laptop'
    assert f"KubeSpanPeerConfig/ci: allowedIPs[0]: {overlap}" in errors


def test_every_problem_at_once() -> None:
    errors = errors_of(V1, peer(key="bad", allowed="[]", extra="endpoint: nope\n"))
    assert [e.split(":")[1].strip() for e in errors] == ["publicKey", "allowedIPs", "endpoint"]


def test_an_invalid_document_applies_nothing(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(V1)
    published: list[LoadedConfig] = []
    m = ConfigManager(str(cfg), str(tmp_path / "config.try.yaml"), load_config(V1), published.append)
    with pytest.raises(ApplyError) as err:
        m.apply("---\n".join([V1, peer(key="bad")]), ApplyMode.AUTO)
    assert any(line.startswith("KubeSpanPeerConfig/laptop: publicKey:") for line in err.value.lines)
    assert cfg.read_text() == V1
    assert published == []
    m.apply("---\n".join([V1, peer()]), ApplyMode.AUTO)
    assert [p.name for p in published[0].kubespan_peers] == ["laptop"]


# ------------------------------------------------------------------------------------ endpoint parser


@given(st.ip_addresses(), st.integers(1, 65535))
def test_endpoint_round_trip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> None:
    text = f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"
    if ip.is_unspecified or ip.is_multicast:
        with pytest.raises(ValueError, match="not a unicast address"):
            parse_peer_endpoint(text)
        return
    assert parse_peer_endpoint(text) == (ip, port)


@given(st.text(max_size=40))
def test_endpoint_parser_never_crashes(text: str) -> None:
    try:
        ip, port = parse_peer_endpoint(text)
    except ValueError as e:
        assert "endpoint" in str(e)
    else:
        assert 1 <= port <= 65535 and not ip.is_unspecified
