"""DiscoveryConfig and KubeSpanConfig derivation (kubespan.md §1.2), including the endpoint examples."""

from __future__ import annotations

import base64

import pytest

from cluster.config import (
    DerivationError,
    discovery_config,
    join_host_port,
    kubespan_config,
    split_endpoint_url,
)
from cluster.resources import DiscoveryConfigSpec
from netd.config import load_config
from netd.config.models import Config

SECRET = "kCQsKr4B28VUl7qw1sVkTDNF9fFH++ViIuKsss+C6kc="
CID = "8XuV9TZHW08DOk3bVxQjH9ih_TBKjnh-j44tsCLSBzo="


def cfg(extra: str = "", discovery: str = "    enabled: true\n", kubespan: str = "") -> Config:
    text = (
        "version: v1alpha1\nmachine:\n  type: worker\n"
        + (f"  network:\n    kubespan:\n{kubespan}" if kubespan else "")
        + f"cluster:\n  id: {CID}\n  secret: {SECRET}\n  discovery:\n{discovery}{extra}"
    )
    loaded = load_config(text)
    assert loaded.config is not None
    return loaded.config


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("https://discovery.talos.dev/", ("discovery.talos.dev", 443, False)),
        ("http://localhost:3000", ("localhost", 3000, True)),
        ("http://10.0.0.254", ("10.0.0.254", 80, True)),
        ("grpc://example.com", ("example.com", 443, False)),  # anything but http is TLS
        (
            "https://[2001:470:6d:30e:565d:e162:e2a0:cf5a]:3456/",
            ("2001:470:6d:30e:565d:e162:e2a0:cf5a", 3456, False),
        ),
        ("HTTP://Host.Example:8080/path?q=1", ("Host.Example", 8080, True)),
        ("https://user:pw@h:1", ("h", 1, False)),
    ],
)
def test_endpoint_parsing(url: str, want: tuple[str, int, bool]) -> None:
    assert split_endpoint_url(url) == want


def test_join_host_port() -> None:
    assert (
        join_host_port("2001:470:6d:30e:565d:e162:e2a0:cf5a", 3456)
        == "[2001:470:6d:30e:565d:e162:e2a0:cf5a]:3456"
    )
    assert join_host_port("localhost", 3000) == "localhost:3000"


@pytest.mark.parametrize(
    "url", ["discovery.talos.dev", "https://", "https://h:99999/", "https://[::1/", "http://h:x"]
)
def test_bad_endpoints_name_the_field(url: str) -> None:
    with pytest.raises(DerivationError, match=r"^cluster\.discovery\.registries\.service\.endpoint: "):
        split_endpoint_url(url)


def test_default_endpoint() -> None:
    dc = discovery_config(cfg())
    assert dc.discovery_enabled and dc.registry_service_enabled and dc.registry_kubernetes_enabled
    assert dc.service_endpoint == "discovery.talos.dev:443" and not dc.service_endpoint_insecure
    assert dc.service_encryption_key == base64.b64decode(SECRET)
    assert (
        dc.service_encryption_key.hex() == "90242c2abe01dbc55497bab0d6c5644c3345f5f147fbe56222e2acb2cf82ea47"
    )
    assert dc.service_cluster_id == CID
    out = dc.model_dump(mode="json", by_alias=True)
    assert out["serviceEncryptionKey"] == SECRET and out["serviceClusterID"] == CID
    assert "serviceEndpointInsecure" not in out  # omitempty


def test_plaintext_endpoint_and_disabled_registries() -> None:
    reg = "    registries:\n      kubernetes:\n        disabled: true\n      service:\n        endpoint: http://localhost:3000\n"
    dc = discovery_config(cfg(discovery="    enabled: true\n" + reg))
    assert dc.service_endpoint == "localhost:3000" and dc.service_endpoint_insecure
    assert not dc.registry_kubernetes_enabled
    off = "    registries:\n      service:\n        disabled: true\n"
    dc = discovery_config(cfg(discovery="    enabled: true\n" + off))
    assert dc == DiscoveryConfigSpec(discovery_enabled=True, registry_kubernetes_enabled=True)
    dc = discovery_config(cfg(discovery="    enabled: false\n"))
    assert dc == DiscoveryConfigSpec()  # both registry flags false, service fields empty
    assert discovery_config(None) == DiscoveryConfigSpec()


def test_bad_secret() -> None:
    c = cfg()
    bad = c.model_copy(update={"cluster": c.cluster.model_copy(update={"secret": "not base64!"})})
    with pytest.raises(DerivationError, match=r"^cluster\.secret: "):
        discovery_config(bad)


def test_kubespan_config() -> None:
    ks = kubespan_config(cfg())
    assert ks is not None and not ks.enabled
    assert ks.force_routing and ks.harvest_extra_endpoints and ks.mtu == 1420 and ks.endpoint_filters == []
    on = (
        "      enabled: true\n      allowDownPeerBypass: true\n      advertiseKubernetesNetworks: true\n"
        "      harvestExtraEndpoints: false\n      mtu: 1380\n      filters:\n"
        "        endpoints: ['0.0.0.0/0', '!10.0.0.0/8']\n"
    )
    ks = kubespan_config(cfg(kubespan=on))
    assert ks is not None
    assert ks.model_dump(mode="json", by_alias=True) == {
        "enabled": True,
        "clusterId": CID,
        "sharedSecret": SECRET,
        "forceRouting": False,
        "advertiseKubernetesNetworks": True,
        "mtu": 1380,
        "endpointFilters": ["0.0.0.0/0", "!10.0.0.0/8"],
        "harvestExtraEndpoints": False,
    }
    assert kubespan_config(None) is None
