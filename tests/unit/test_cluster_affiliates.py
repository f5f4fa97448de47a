"""Affiliates and members as pure functions (kubespan.md §4.7, §5.2-5.5)."""

from __future__ import annotations

import ipaddress

import pytest

from cluster.affiliates import (
    LocalKubeSpan,
    LocalNode,
    filter_ips,
    local_affiliate,
    local_endpoints,
    members,
    merge_affiliates,
    nodename_of,
    parse_networks,
    raw_affiliate,
    to_wire,
)
from cluster.resources import AffiliateSpec, KubeSpanAffiliateSpec, MachineType, MemberSpec, parse_endpoint
from discovery_client import (
    AffiliateInfo,
    ClusterCipher,
    DiscoveredAffiliate,
    Endpoint,
    KubeSpanInfo,
    open_affiliate,
    seal_affiliate,
)
from netd.netip import parse_addr, parse_prefix

KS = parse_addr("fd7f:175a:b97c:5602:e871:1bff:feb2:ccee")
SIDERO = parse_addr("fdae:41e4:649b:9303::1")


def ips(*texts: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    return [parse_addr(t) for t in texts]


def test_reference_endpoint_example() -> None:
    """§5.3's example, verbatim."""
    current = [*ips("172.20.0.2", "10.5.0.1", "192.168.192.168", "2001:123:4567::1"), KS, SIDERO]
    public = ips("1.1.1.1", "2001:123:4567::1")
    filters = ["0.0.0.0/0", "!192.168.0.0/16", "2001::/16"]
    assert local_endpoints(current, KS, public, filters) == [
        "172.20.0.2:51820",
        "10.5.0.1:51820",
        "1.1.1.1:51820",
        "[2001:123:4567::1]:51820",
    ]


def test_endpoints_without_filters_keep_the_order_and_append_public_ips() -> None:
    current = [*ips("10.0.0.1", "fd00:10::1"), KS]
    assert local_endpoints(current, KS, ips("203.0.113.9", "10.0.0.1"), []) == [
        "10.0.0.1:51820",
        "[fd00:10::1]:51820",
        "203.0.113.9:51820",
    ]


def test_filter_order_decides_the_output_order() -> None:
    all_ = ips("10.0.0.1", "fd00::1", "192.0.2.2")
    assert filter_ips(all_, ["::/0", "0.0.0.0/0"]) == ips("fd00::1", "10.0.0.1", "192.0.2.2")
    assert filter_ips(all_, ["192.0.2.0/24", "0.0.0.0/0"]) == ips("192.0.2.2", "10.0.0.1")
    assert filter_ips(all_, ["0.0.0.0/0", "!10.0.0.0/24", "::/0"]) == ips("192.0.2.2", "fd00::1")
    assert filter_ips(all_, ["10.0.0.1"]) == ips("10.0.0.1")  # a bare IP is a /32
    assert filter_ips(all_, []) == all_  # empty = no filtering (documented choice)
    with pytest.raises(ValueError, match=r"filters\.endpoints: 'nope' is not a CIDR or an IP"):
        filter_ips(all_, ["nope"])


NODE = LocalNode("nodeid", "n1.example.org", "n1", MachineType.CONTROLPLANE, "talos-netd (v0.1.0)", 6443)
K8S = parse_networks(["10.244.0.0/16", "10.96.0.0/12"])


def prefixes(*texts: str) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    return [parse_prefix(t) for t in texts]


def test_local_affiliate_without_kubespan() -> None:
    routed = prefixes("10.0.0.1/24", "10.244.1.1/24", "fd00:10::1/64")
    spec = local_affiliate(NODE, routed, routed, [], K8S, None)
    assert spec.model_dump(mode="json", by_alias=True) == {
        "nodeId": "nodeid",
        "addresses": ["10.0.0.1", "fd00:10::1"],  # routed, no-k8s
        "hostname": "n1.example.org",
        "nodename": "n1",
        "operatingSystem": "talos-netd (v0.1.0)",
        "machineType": "controlplane",
        "controlPlane": {"port": 6443},
    }


def test_local_affiliate_with_kubespan() -> None:
    routed = prefixes("10.0.0.1/24", "fd00:10::1/64")
    current = prefixes(
        "10.0.0.1/24", "10.244.1.1/24", "fd00:10::1/64", f"{KS}/64", "fdae:41e4:649b:9303::1/64"
    )
    ks = LocalKubeSpan("pub=", KS, advertise_kubernetes_networks=True, endpoint_filters=("0.0.0.0/0", "::/0"))
    spec = local_affiliate(NODE, routed, current, ips("198.51.100.7"), K8S, ks)
    assert spec.kubespan is not None
    out = spec.kubespan.model_dump(mode="json", by_alias=True)
    assert out == {
        "publicKey": "pub=",
        "address": str(KS),
        "additionalAddresses": ["10.244.1.1/24"],  # current, only-k8s, with the link's prefix length
        "endpoints": ["10.0.0.1:51820", "198.51.100.7:51820", "[fd00:10::1]:51820"],
    }
    quiet = LocalKubeSpan("pub=", KS)
    spec = local_affiliate(NODE, routed, current, [], K8S, quiet)
    assert spec.kubespan is not None and spec.kubespan.additional_addresses == []


def test_nodename() -> None:
    assert nodename_of("Worker-1.Example.org") == "worker-1"


def test_wire_round_trip() -> None:
    routed = prefixes("10.0.0.1/24")
    ks = LocalKubeSpan("Oak2fBEWngBhwslBxDVgnRNHXs88OAp4kjroSX0uqUE=", KS)
    spec = local_affiliate(NODE, routed, routed + prefixes("10.244.0.1/24"), [], K8S, ks)
    info, endpoints = to_wire(spec)
    assert endpoints == (Endpoint(parse_addr("10.0.0.1"), 51820),)
    assert info.machine_type == "controlplane" and info.control_plane is not None
    cipher = ClusterCipher.from_secret("kCQsKr4B28VUl7qw1sVkTDNF9fFH++ViIuKsss+C6kc=")
    back = open_affiliate(cipher, seal_affiliate(cipher, info))
    item = raw_affiliate(DiscoveredAffiliate("server-id", back, endpoints))
    assert item is not None
    rid, raw = item
    assert rid == "service/nodeid"  # named after the payload's node ID, not the server-side id
    assert raw == spec
    no_ks = AffiliateSpec(node_id="x", kubespan=KubeSpanAffiliateSpec())  # no public key: no kubespan
    info, endpoints = to_wire(no_ks)
    assert info.kubespan is None and endpoints == ()


def test_raw_affiliate_is_lenient_inside_a_payload() -> None:
    info = AffiliateInfo(
        node_id="other",
        addresses=(parse_addr("10.0.0.2"), parse_addr("10.0.0.2")),
        machine_type="something",
        kubespan=KubeSpanInfo(public_key="k", address=None),
    )
    d = DiscoveredAffiliate(
        "x", info, (Endpoint(parse_addr("10.0.0.2"), 70000), Endpoint(parse_addr("10.0.0.2"), 1))
    )
    item = raw_affiliate(d)
    assert item is not None
    _, spec = item
    assert spec.machine_type == MachineType.UNKNOWN
    assert [str(a) for a in spec.addresses] == ["10.0.0.2"]
    assert spec.kubespan is not None and spec.kubespan.endpoints == ["10.0.0.2:1"]
    assert raw_affiliate(DiscoveredAffiliate("x", AffiliateInfo(node_id=""))) is None


@pytest.mark.parametrize(
    ("value", "want"),
    [("init", "init"), ("controlplane", "controlplane"), ("worker", "worker"), ("join", "worker"),
     ("", "worker"), ("unknown", "unknown"), ("CONTROLPLANE", "unknown")],
)  # fmt: skip
def test_machine_type_parse(value: str, want: str) -> None:
    assert MachineType.parse(value) == want


def aff(node_id: str, **kw: object) -> AffiliateSpec:
    return AffiliateSpec.model_validate({"nodeId": node_id, **kw})


def test_merge_rules() -> None:
    k8s = aff(
        "A",
        addresses=["10.0.0.1"],
        hostname="k8s-host",
        nodename="a",
        operatingSystem="from-k8s",
        machineType="controlplane",
        kubespan={"publicKey": "", "additionalAddresses": ["10.244.0.1/24"], "endpoints": ["10.0.0.1:51820"]},
    )
    svc = aff(
        "A",
        addresses=["fd00::1", "10.0.0.1"],
        hostname="svc-host",
        nodename="",
        operatingSystem="from-service",
        machineType="unknown",
        kubespan={"publicKey": "key", "address": str(KS), "endpoints": ["10.0.0.1:51820", "[fd00::1]:51820"]},
        controlPlane={"port": 6443},
    )
    other = aff("B", hostname="b", nodename="b")
    merged = merge_affiliates([("service/A", svc), ("service/B", other), ("k8s/A", k8s)], own_node_id="ME")
    assert list(merged) == ["A", "B"]
    a = merged["A"].model_dump(mode="json", by_alias=True)
    assert a == {
        "nodeId": "A",
        "addresses": ["10.0.0.1", "fd00::1"],  # k8s/ first (id order), then the union
        "hostname": "svc-host",  # overwritten when non-empty
        "nodename": "a",  # kept: the other's is empty
        "operatingSystem": "from-k8s",  # never merged: the base wins
        "machineType": "controlplane",  # unknown does not overwrite
        "kubespan": {
            "publicKey": "key",
            "address": str(KS),
            "additionalAddresses": ["10.244.0.1/24"],
            "endpoints": ["10.0.0.1:51820", "[fd00::1]:51820"],
        },
        "controlPlane": {"port": 6443},
    }
    assert merged["B"] == other
    # the own node ID never comes out of the merge; raw entries without a node ID neither
    assert merge_affiliates([("service/ME", aff("ME", nodename="me")), ("x", aff(""))], "ME") == {}


def test_merge_is_order_independent() -> None:
    a1, a2 = aff("A", addresses=["10.0.0.1"]), aff("A", addresses=["10.0.0.2"])
    assert merge_affiliates([("k8s/A", a1), ("service/A", a2)]) == merge_affiliates(
        [("service/A", a2), ("k8s/A", a1)]
    )


def test_members() -> None:
    affs = [
        aff(
            "A",
            nodename="a",
            hostname="a.example",
            machineType="worker",
            operatingSystem="os",
            addresses=["10.0.0.1"],
        ),
        aff("B", hostname="no-nodename"),
        aff("C", nodename="c", machineType="controlplane", controlPlane={"port": 6443}),
    ]
    got = members(affs)
    assert list(got) == ["a", "c"]
    assert got["a"] == MemberSpec.model_validate(
        {
            "nodeId": "A",
            "addresses": ["10.0.0.1"],
            "hostname": "a.example",
            "machineType": "worker",
            "operatingSystem": "os",
        }
    )
    assert got["c"].model_dump(mode="json", by_alias=True)["controlPlane"] == {"port": 6443}
    assert "controlPlane" not in got["a"].model_dump(mode="json", by_alias=True)


def test_endpoint_text() -> None:
    assert parse_endpoint("[2001:db8::1]:51820") == (parse_addr("2001:db8::1"), 51820)
    for bad in ("2001:db8::1:51820", "[10.0.0.1]:1", "10.0.0.1", "10.0.0.1:99999", "h:1"):
        with pytest.raises(ValueError):
            parse_endpoint(bad)
    with pytest.raises(ValueError, match="endpoints"):
        KubeSpanAffiliateSpec.model_validate({"endpoints": ["nope"]})
