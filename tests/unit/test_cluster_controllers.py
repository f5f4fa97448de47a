"""The cluster controllers on a real runtime (no kernel, no service): identity → local affiliate →
merge → members; aliases and sensitivity of the new types; KubeSpan identity on and off."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.controllers import (
    AffiliateMergeController,
    DiscoveryConfigController,
    KubeSpanConfigController,
    KubeSpanIdentityController,
    LocalAffiliateController,
    MemberController,
    NodeIdentityController,
)
from cluster.resources import (
    AFFILIATE_TYPE,
    DISCOVERY_CONFIG_TYPE,
    KUBESPAN_CONFIG_TYPE,
    KUBESPAN_IDENTITY_TYPE,
    MEMBER_TYPE,
    AffiliateSpec,
    KubeSpanIdentitySpec,
    MemberSpec,
)
from cluster.resources import register_all as register_cluster
from cosi import Runtime, State
from machined.node import machine_config_spec
from netd.config import load_config
from netd.resources import register_all
from netd.resources.hostname import HOSTNAME_STATUS_TYPE, HostnameStatus
from netd.resources.ids import HOSTNAME_ID
from netd.resources.link import LINK_STATUS_TYPE, LinkStatus
from netd.resources.machine_config import MACHINE_CONFIG_ID, MACHINE_CONFIG_TYPE
from netd.resources.namespaces import CLUSTER, CLUSTER_RAW, CONFIG, KUBESPAN, NETWORK
from netd.resources.nodeaddress import NODE_ADDRESS_TYPE, NodeAddress

CID = "8XuV9TZHW08DOk3bVxQjH9ih_TBKjnh-j44tsCLSBzo="
SECRET = "kCQsKr4B28VUl7qw1sVkTDNF9fFH++ViIuKsss+C6kc="


def text(kubespan: bool) -> str:
    ks = "  network:\n    kubespan:\n      enabled: true\n" if kubespan else ""
    return (
        f"version: v1alpha1\nmachine:\n  type: worker\n{ks}cluster:\n  id: {CID}\n  secret: {SECRET}\n"
        "  discovery:\n    enabled: true\n"
    )


def state() -> State:
    s = State()
    register_all(s)
    register_cluster(s)
    return s


def test_aliases_and_sensitivity() -> None:
    s = state()
    for word, type_ in [
        ("members", MEMBER_TYPE),
        ("member", MEMBER_TYPE),
        ("affiliates", AFFILIATE_TYPE),
        ("Affiliate", AFFILIATE_TYPE),
        ("discoveryconfigs", DISCOVERY_CONFIG_TYPE),
        ("discoveryconfig", DISCOVERY_CONFIG_TYPE),
        ("kubespanconfigs", KUBESPAN_CONFIG_TYPE),
        ("kubespanconfig", KUBESPAN_CONFIG_TYPE),
        ("kubespanidentities", KUBESPAN_IDENTITY_TYPE),
        ("identities", "Identities.cluster.talos.dev"),
    ]:
        assert s.registry.resolve(word).type == type_, word
    sensitive = {d.type for d in s.registry.all() if d.sensitive}
    assert {DISCOVERY_CONFIG_TYPE, KUBESPAN_CONFIG_TYPE, KUBESPAN_IDENTITY_TYPE} <= sensitive
    assert not {AFFILIATE_TYPE, MEMBER_TYPE} & sensitive
    namespaces = {r.id for r in s.list("meta", "Namespaces.meta.cosi.dev")}
    assert {"cluster", "cluster-raw", "kubespan"} <= namespaces


async def test_local_affiliate_merge_members(tmp_path: Path) -> None:
    s = state()
    rt = Runtime(s)
    for c in (
        NodeIdentityController(str(tmp_path)),
        DiscoveryConfigController(),
        KubeSpanConfigController(),
        KubeSpanIdentityController(str(tmp_path)),
        LocalAffiliateController(),
        AffiliateMergeController(),
        MemberController(),
    ):
        rt.register(c)
    s.put(CONFIG, MACHINE_CONFIG_TYPE, MACHINE_CONFIG_ID, machine_config_spec(load_config(text(False))))
    s.put(NETWORK, HOSTNAME_STATUS_TYPE, HOSTNAME_ID, HostnameStatus(hostname="N1", domainname="example.org"))
    na = NodeAddress.model_validate({"addresses": ["10.0.0.1/24", "10.244.0.1/24"]})
    s.put(NETWORK, NODE_ADDRESS_TYPE, "routed", na)
    s.put(NETWORK, NODE_ADDRESS_TYPE, "current", na)
    s.put(NETWORK, LINK_STATUS_TYPE, "eth0", LinkStatus.model_validate({"hardwareAddr": "02:00:0a:00:00:01"}))
    async with rt:
        assert await rt.settle()
        own = s.must_get(CLUSTER, "Identities.cluster.talos.dev", "local").spec.node_id  # type: ignore[attr-defined]
        local = s.must_get(CLUSTER, AFFILIATE_TYPE, own)
        assert local.md.owner == "cluster.LocalAffiliateController"
        assert isinstance(local.spec, AffiliateSpec)
        assert [str(a) for a in local.spec.addresses] == ["10.0.0.1"]  # pod subnet dropped
        assert local.spec.hostname == "N1.example.org" and local.spec.nodename == "n1"
        assert local.spec.kubespan is None and local.spec.control_plane is None
        assert s.list(KUBESPAN, KUBESPAN_IDENTITY_TYPE) == []

        # another registry's view of a peer, and a hostile one claiming our node ID
        s.put(
            CLUSTER_RAW,
            AFFILIATE_TYPE,
            "service/peer",
            AffiliateSpec(node_id="peer", nodename="n2", hostname="n2"),
        )
        s.put(CLUSTER_RAW, AFFILIATE_TYPE, f"service/{own}", AffiliateSpec(node_id=own, nodename="evil"))
        assert await rt.settle()
        assert [r.id for r in s.list(CLUSTER, AFFILIATE_TYPE)] == sorted([own, "peer"])
        assert s.must_get(CLUSTER, AFFILIATE_TYPE, own).md.owner == "cluster.LocalAffiliateController"
        got = {r.id: r.spec for r in s.list(CLUSTER, MEMBER_TYPE)}
        assert set(got) == {"n1", "n2"}
        assert isinstance(got["n2"], MemberSpec) and got["n2"].node_id == "peer"

        s.destroy(CLUSTER_RAW, AFFILIATE_TYPE, "service/peer")
        assert await rt.settle()
        assert [r.id for r in s.list(CLUSTER, MEMBER_TYPE)] == ["n1"]

        # KubeSpan on: identity (MAC from the node ID: eth0 is no physical NIC) and the affiliate's section
        s.put(CONFIG, MACHINE_CONFIG_TYPE, MACHINE_CONFIG_ID, machine_config_spec(load_config(text(True))))
        assert await rt.settle()
        ident = s.must_get(KUBESPAN, KUBESPAN_IDENTITY_TYPE, "local").spec
        assert isinstance(ident, KubeSpanIdentitySpec)
        assert str(ident.subnet) == "fd7f:175a:b97c:5602::/64"
        assert ident.address is not None and ident.address.ip in ident.subnet.network  # type: ignore[union-attr]
        assert (tmp_path / "kubespan-identity.yaml").exists()
        local2 = s.must_get(CLUSTER, AFFILIATE_TYPE, own).spec
        assert isinstance(local2, AffiliateSpec) and local2.kubespan is not None
        assert local2.kubespan.public_key == ident.public_key
        assert local2.kubespan.endpoints == ["10.0.0.1:51820"]
        assert [str(a) for a in local2.addresses] == ["10.0.0.1"]

        # KubeSpan off again: the identity goes, the file stays, the keys come back unchanged
        s.put(CONFIG, MACHINE_CONFIG_TYPE, MACHINE_CONFIG_ID, machine_config_spec(load_config(text(False))))
        assert await rt.settle()
        assert s.list(KUBESPAN, KUBESPAN_IDENTITY_TYPE) == []
        assert (tmp_path / "kubespan-identity.yaml").exists()
        again = s.must_get(CLUSTER, AFFILIATE_TYPE, own).spec
        assert isinstance(again, AffiliateSpec) and again.kubespan is None


@pytest.mark.parametrize("bad", ["nodeId: ''\n"])
async def test_unusable_identity_file_fails_the_controller(tmp_path: Path, bad: str) -> None:
    (tmp_path / "node-identity.yaml").write_text(bad)
    s = state()
    rt = Runtime(s)
    rt.register(NodeIdentityController(str(tmp_path)))
    async with rt:
        await rt.settle(timeout=0.5)
        assert rt.restarts.get("cluster.NodeIdentityController", 0) >= 1
        assert s.list(CLUSTER, "Identities.cluster.talos.dev") == []
    assert (tmp_path / "node-identity.yaml").read_text() == bad
