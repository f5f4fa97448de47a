"""kubespan/specs.py: the operator-layer specs of decisions.md "KubeSpan" (kubespan.md §7.1-7.3)."""

from __future__ import annotations

import datetime as dt
import ipaddress as ia

import pytest

from kubespan.peers import Endpoint, PeerSpec
from kubespan.specs import (
    LocalIdentity,
    kubespan_specs,
    preshared_key,
    rule_priority,
    rule_specs,
    wireguard_peers,
)
from netd.resources.enums import ConfigLayer, Family, LinkType, RouteProtocol, RouteType, RoutingTable, Scope
from netd.resources.routing_rule import RoutingRuleStatus

SECRET = "kCQsKr4B28VUl7qw1sVkTDNF9fFH++ViIuKsss+C6kc="  # kubespan.md §10 lab secret
PRIV = "sF45u5ePau58WeeCUY3T8D9foEKaQ8Opx4cGC8g4XE4="  # §9.7
ME = LocalIdentity(ia.IPv6Address("fd7f:175a:b97c:5602:0:aff:fe00:1"), PRIV)


def peer(key: str, *nets: str, eps: tuple[str, ...] = ()) -> PeerSpec:
    return PeerSpec(
        key,
        f"n-{key}",
        ia.IPv6Address("fd00::9"),
        tuple(ia.ip_network(n) for n in nets),
        tuple(Endpoint.parse(e) for e in eps),
    )


def kernel_rule(family: Family, prio: int, table: int = 0, mark: int = 0, mask: int = 0) -> RoutingRuleStatus:
    return RoutingRuleStatus(
        family=family, priority=prio, table=RoutingTable(table), fw_mark=mark, fw_mask=mask
    )


DEFAULT_RULES = [
    kernel_rule(f, p, t)
    for f in (Family.INET4, Family.INET6)
    for p, t in ((0, 255), (32766, 254), (32767, 253))
]


def test_all_ids_are_prefixed_and_operator_layer() -> None:
    s = kubespan_specs(
        ME, mtu=1420, shared_secret=SECRET, peers=[], endpoints={}, existing_rules=DEFAULT_RULES
    )
    assert list(s.links) == ["kubespan/kubespan"]
    assert list(s.addresses) == ["kubespan/kubespan/fd7f:175a:b97c:5602:0:aff:fe00:1/64"]
    assert sorted(s.routes) == [
        "kubespan/RoutingTable(180)/inet4///1",
        "kubespan/RoutingTable(180)/kubespan/inet6///1",
    ]
    assert sorted(s.rules) == ["kubespan/inet4/32500", "kubespan/inet6/32500"]
    for d in (s.links, s.addresses, s.routes, s.rules):
        for spec in d.values():
            assert spec.layer == ConfigLayer.OPERATOR


def test_link_spec() -> None:
    s = kubespan_specs(ME, mtu=1380, shared_secret=SECRET, peers=[], endpoints={}, existing_rules=[])
    link = s.links["kubespan/kubespan"]
    assert (link.name, link.kind, link.type, link.logical, link.up, link.mtu) == (
        "kubespan",
        "wireguard",
        LinkType.NOHDR,
        True,
        True,
        1380,
    )
    wg = link.wireguard
    assert (wg.private_key, wg.listen_port, wg.firewall_mark, wg.peers) == (PRIV, 51820, 0x20, [])


def test_address_spec_is_the_64() -> None:
    s = kubespan_specs(ME, mtu=1420, shared_secret=SECRET, peers=[], endpoints={}, existing_rules=[])
    (a,) = s.addresses.values()
    assert a.address == ia.IPv6Interface("fd7f:175a:b97c:5602:0:aff:fe00:1/64")
    assert (a.link_name, a.family, a.scope, str(a.flags)) == (
        "kubespan",
        Family.INET6,
        Scope.GLOBAL,
        "permanent",
    )


def test_route_specs() -> None:
    s = kubespan_specs(ME, mtu=1380, shared_secret=SECRET, peers=[], endpoints={}, existing_rules=[])
    assert len(s.routes) == 2
    for r in s.routes.values():
        assert (r.dst, r.gateway, r.out_link_name, int(r.table), r.priority) == (
            None,
            None,
            "kubespan",
            180,
            1,
        )
        assert (r.scope, r.type, r.protocol, r.mtu) == (
            Scope.GLOBAL,
            RouteType.UNICAST,
            RouteProtocol.STATIC,
            1380,
        )
    assert {r.family for r in s.routes.values()} == {Family.INET4, Family.INET6}


def test_rule_specs() -> None:
    rules = rule_specs(DEFAULT_RULES)
    assert [(r.family, r.priority, int(r.table), r.fw_mark, r.fw_mask) for r in rules] == [
        (Family.INET4, 32500, 180, 0x40, 0x60),
        (Family.INET6, 32500, 180, 0x40, 0x60),
    ]


def test_rule_priority_first_free_at_or_below_32500_per_family() -> None:
    # kubespan.md §10 S2: a pre-existing rule at 32500 ⇒ 32499; the other family is not affected.
    existing = [
        *DEFAULT_RULES,
        kernel_rule(Family.INET4, 32500, 100),
        kernel_rule(Family.INET4, 32499, 101),
        kernel_rule(Family.INET4, 32501, 102),
    ]
    assert rule_priority(existing, Family.INET4) == 32498
    assert rule_priority(existing, Family.INET6) == 32500


def test_rule_priority_keeps_our_own_rule() -> None:
    # once our rule is in the kernel at 32499 the spec stays there (no walk to 32498 because of itself),
    # even after the foreign rule that pushed it down is gone
    ours = kernel_rule(Family.INET4, 32499, 180, 0x40, 0x60)
    assert rule_priority([ours, kernel_rule(Family.INET4, 32500, 100)], Family.INET4) == 32499
    assert rule_priority([ours], Family.INET4) == 32499
    # a rule with our mark but another table is not ours
    assert rule_priority([kernel_rule(Family.INET4, 32500, 181, 0x40, 0x60)], Family.INET4) == 32499


def test_preshared_key() -> None:
    assert preshared_key(SECRET) == SECRET
    with pytest.raises(ValueError, match="16 bytes"):
        preshared_key("AAAAAAAAAAAAAAAAAAAAAA==")
    with pytest.raises(ValueError, match="base64"):
        preshared_key("not base64!")


def test_wireguard_peers_sorted_with_endpoint_choice() -> None:
    p2 = peer("K2", "10.0.0.2/32", "fd7f::2/128", eps=("10.0.0.2:51820",))
    p1 = peer("K1", "10.0.0.3/32")
    out = wireguard_peers([p2, p1], {"K2": Endpoint.parse("10.0.0.2:51820"), "K1": None}, SECRET)
    assert [p.public_key for p in out] == ["K1", "K2"]
    assert out[0].endpoint == ""  # "leave WireGuard's endpoint as it is"
    assert out[1].endpoint == "10.0.0.2:51820"
    assert out[1].allowed_ips == [ia.IPv4Interface("10.0.0.2/32"), ia.IPv6Interface("fd7f::2/128")]
    assert out[1].preshared_key == SECRET
    assert out[1].persistent_keepalive_interval == dt.timedelta(seconds=25)


def test_kubespan_specs_rejects_bad_secret() -> None:
    with pytest.raises(ValueError):
        kubespan_specs(ME, mtu=1420, shared_secret="", peers=[], endpoints={}, existing_rules=[])


def test_specs_serialise_like_other_network_config_specs() -> None:
    s = kubespan_specs(
        ME,
        mtu=1420,
        shared_secret=SECRET,
        peers=[peer("K2", "10.0.0.2/32", eps=("10.0.0.2:51820",))],
        endpoints={"K2": Endpoint.parse("10.0.0.2:51820")},
        existing_rules=[],
    )
    wg = s.links["kubespan/kubespan"].model_dump(mode="json", by_alias=True)["wireguard"]
    assert wg["peers"][0]["allowedIPs"] == ["10.0.0.2/32"]
    assert wg["peers"][0]["persistentKeepaliveInterval"] == "25s"
    assert wg["firewallMark"] == 32 and wg["listenPort"] == 51820
