"""The local-cluster plan (netctl/cluster/topology.py) and its record: names, addresses, configs
and NAT rules, all without root."""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path

import pytest

from cluster.config import discovery_config, kubespan_config
from netctl.cluster import state, topology
from netctl.cluster.state import ClusterRecord, ProcessRecord
from netctl.cluster.topology import PlanError
from netd.config import load_config

CID = "8XuV9TZHW08DOk3bVxQjH9ih_TBKjnh-j44tsCLSBzo="
SECRET = "kCQsKr4B28VUl7qw1sVkTDNF9fFH++ViIuKsss+C6kc="


def plan(name: str = "demo", nodes: int = 4, sites: int = 2, kubespan: bool = False) -> topology.ClusterPlan:
    return topology.plan(name, nodes, sites, kubespan, CID, SECRET)


def test_four_nodes_two_sites() -> None:
    p = plan()
    assert [(n.name, n.site, n.private, n.public, n.gateway) for n in p.nodes] == [
        ("n1", 1, "10.1.0.11/24", "203.0.113.33", "10.1.0.1"),
        ("n2", 1, "10.1.0.12/24", "203.0.113.34", "10.1.0.1"),
        ("n3", 2, "10.2.0.13/24", "203.0.113.35", "10.2.0.1"),
        ("n4", 2, "10.2.0.14/24", "203.0.113.36", "10.2.0.1"),
    ]
    assert [n.machine_type for n in p.nodes] == ["controlplane", "worker", "worker", "worker"]
    assert [(s.lan, s.router_lan, s.router_wan) for s in p.sites] == [
        ("10.1.0.0/24", "10.1.0.1/24", "203.0.113.1/24"),
        ("10.2.0.0/24", "10.2.0.1/24", "203.0.113.2/24"),
    ]
    assert p.discovery_address == "203.0.113.254/24"
    assert p.discovery_endpoint == "http://203.0.113.254:3000"
    assert p.netns_names() == [
        "c-demo-inet", "c-demo-ds", "c-demo-s1", "c-demo-r1", "c-demo-s2", "c-demo-r2",
        "c-demo-n1", "c-demo-n2", "c-demo-n3", "c-demo-n4",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("nodes", "sites", "want"),
    [(1, 1, [1]), (3, 1, [1, 1, 1]), (3, 2, [1, 1, 2]), (5, 2, [1, 1, 1, 2, 2]), (6, 3, [1, 1, 2, 2, 3, 3])],
)
def test_nodes_fill_sites_in_even_blocks(nodes: int, sites: int, want: list[int]) -> None:
    assert [topology.site_of(i, nodes, sites) for i in range(1, nodes + 1)] == want


def test_addresses_unique_and_in_their_networks() -> None:
    p = plan(nodes=topology.MAX_NODES, sites=topology.MAX_SITES)
    publics = [ipaddress.IPv4Address(n.public) for n in p.nodes]
    routers = [ipaddress.IPv4Interface(s.router_wan).ip for s in p.sites]
    everything = [*publics, *routers, ipaddress.IPv4Interface(p.discovery_address).ip]
    assert len(set(everything)) == len(everything)
    assert all(
        a in topology.INTERNET and a not in (topology.INTERNET[0], topology.INTERNET[-1]) for a in everything
    )
    for n in p.nodes:
        lan = ipaddress.IPv4Network(p.site(n.site).lan)
        assert ipaddress.IPv4Interface(n.private).ip in lan
        assert ipaddress.IPv4Address(n.gateway) == lan[1]
    assert len({n.mac for n in p.nodes}) == len(p.nodes)
    assert len({n.private for n in p.nodes}) == len(p.nodes)


def test_macs_locally_administered_and_per_cluster() -> None:
    a, b = plan("a"), plan("b")
    for n in a.nodes:
        first = int(n.mac.split(":")[0], 16)
        assert first & 0x02 and not first & 0x01  # locally administered, unicast
    assert a.nodes[0].mac == plan("a").nodes[0].mac  # deterministic
    assert a.nodes[0].mac != b.nodes[0].mac


@pytest.mark.parametrize(
    ("name", "nodes", "sites", "what"),
    [
        ("Demo", 2, 1, "bad cluster name"),
        ("-x", 2, 1, "bad cluster name"),
        ("x-", 2, 1, "bad cluster name"),
        ("a_b", 2, 1, "bad cluster name"),
        ("a" * 25, 2, 1, "bad cluster name"),
        ("ok", 0, 1, "--nodes"),
        ("ok", 1, 2, "--nodes"),
        ("ok", topology.MAX_NODES + 1, 1, "--nodes"),
        ("ok", 20, 0, "--sites"),
        ("ok", 20, topology.MAX_SITES + 1, "--sites"),
    ],
)
def test_bad_requests(name: str, nodes: int, sites: int, what: str) -> None:
    with pytest.raises(PlanError, match=what):
        plan(name, nodes, sites)


def test_netns_ownership_is_unambiguous() -> None:
    """A cluster named like another's prefix never claims the other's namespaces."""
    a, a_n1 = plan("a"), plan("a-n1")
    assert all(topology.owns_netns("a", n) for n in a.netns_names())
    assert not any(topology.owns_netns("a", n) for n in a_n1.netns_names())
    assert not any(topology.owns_netns("a-n1", n) for n in a.netns_names())
    assert not set(a.netns_names()) & set(a_n1.netns_names())
    assert not topology.owns_netns("a", "nt123-1-n1")


def test_secrets_as_talos_makes_them() -> None:
    cid, secret = topology.new_cluster_secrets()
    assert len(base64.urlsafe_b64decode(cid)) == topology.SECRET_BYTES
    assert len(base64.b64decode(secret, validate=True)) == topology.SECRET_BYTES
    assert topology.new_cluster_secrets() != (cid, secret)


@pytest.mark.parametrize("kubespan", [False, True])
def test_machine_config_loads_and_derives(kubespan: bool) -> None:
    p = plan(kubespan=kubespan)
    n3 = p.node("n3")
    loaded = load_config(topology.machine_config(p, n3), strict=True)
    cfg = loaded.config
    assert cfg is not None
    assert cfg.machine.type == "worker"
    assert cfg.network.hostname == "n3"
    (dev,) = cfg.network.interfaces
    assert dev.interface == "eth0"
    assert [str(a) for a in dev.addresses] == ["10.2.0.13/24"]
    assert [(str(r.network), str(r.gateway)) for r in dev.routes] == [("0.0.0.0/0", "10.2.0.1")]
    dc = discovery_config(cfg)
    assert dc.discovery_enabled and dc.registry_service_enabled and not dc.registry_kubernetes_enabled
    assert dc.service_endpoint == "203.0.113.254:3000" and dc.service_endpoint_insecure
    assert dc.service_cluster_id == CID
    ks = kubespan_config(cfg)
    assert ks is not None and ks.enabled is kubespan


def test_nat_ruleset_maps_each_site_node_both_ways() -> None:
    p = plan()
    rules = topology.nat_ruleset(p, 2)
    assert "ip daddr 203.0.113.35 dnat to 10.2.0.13" in rules
    assert "ip saddr 10.2.0.14 snat to 203.0.113.36" in rules
    assert "10.1.0.11" not in rules and "203.0.113.33" not in rules  # site 1's nodes
    assert rules.count("dnat to") == rules.count("snat to") == 2
    # hairpin: SNAT must not depend on the output interface
    assert "oif" not in rules


def test_record_round_trip(tmp_path: Path) -> None:
    p = plan(kubespan=True)
    rec = ClusterRecord(plan=p, dir=tmp_path / "demo")
    rec.save()
    assert (rec.path.stat().st_mode & 0o777) == 0o600
    rec.add_process(ProcessRecord(state.ROLE_HOLDER, "n1", 100, 5))
    rec.add_process(ProcessRecord(state.ROLE_MACHINED, "n1", 101, 6))
    rec.add_process(ProcessRecord(state.ROLE_MACHINED, "n1", 202, 9))  # a restart
    back = ClusterRecord.load(rec.dir)
    assert back.plan == p
    assert back.phase == state.PHASE_CREATING
    assert back.processes == rec.processes
    latest = back.process(state.ROLE_MACHINED, "n1")
    assert latest is not None and latest.pid == 202
    assert back.process(state.ROLE_MACHINED, "n2") is None
    assert back.api_socket("n1") == rec.dir / "n1" / "api.sock"


def test_record_rejects_foreign_files(tmp_path: Path) -> None:
    (tmp_path / state.RECORD_FILE).write_text('{"version": 99}')
    with pytest.raises(ValueError, match="not a version"):
        ClusterRecord.load(tmp_path)
