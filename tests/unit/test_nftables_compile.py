"""NfTablesChain → libnftables JSON (netd.md §8.3, §8.4): pure compilation, no kernel."""

from __future__ import annotations

from typing import Any

import pytest

from netd.kernel.nftables import (
    V4_ALL,
    V6_ALL,
    address_intervals,
    build_batch,
    chains_in_listing,
    compile_chain,
    compile_rule,
    compile_ruleset,
    listing_digest,
    merge_intervals,
    port_intervals,
    ruleset_digest,
    subtract_intervals,
)
from netd.resources.enums import (
    ConntrackState,
    MatchOperator,
    NfTablesChainHook,
    NfTablesChainPriority,
    NfTablesVerdict,
    Protocol,
)
from netd.resources.nftables import (
    NfTablesAddressMatch,
    NfTablesChain,
    NfTablesClampMSS,
    NfTablesConntrackStateMatch,
    NfTablesIfNameMatch,
    NfTablesLayer4Match,
    NfTablesLimitMatch,
    NfTablesMark,
    NfTablesPortMatch,
    NfTablesRule,
    PortRange,
)

ACCEPT, DROP = NfTablesVerdict.ACCEPT, NfTablesVerdict.DROP


def m(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def nfproto(fam: str) -> dict[str, Any]:
    return m(meta("nfproto"), fam)


def saddr(proto: str, elems: list[Any], op: str = "==") -> dict[str, Any]:
    return m({"payload": {"protocol": proto, "field": "saddr"}}, {"set": elems}, op)


def daddr(proto: str, elems: list[Any], op: str = "==") -> dict[str, Any]:
    return m({"payload": {"protocol": proto, "field": "daddr"}}, {"set": elems}, op)


def dport(proto: str, elems: list[Any]) -> dict[str, Any]:
    return m({"payload": {"protocol": proto, "field": "dport"}}, {"set": elems})


def l4(proto: str) -> dict[str, Any]:
    return m(meta("l4proto"), proto)


COUNTER: dict[str, Any] = {"counter": None}
ACC: dict[str, Any] = {"accept": None}
DRP: dict[str, Any] = {"drop": None}


def prefix(addr: str, length: int) -> dict[str, Any]:
    return {"prefix": {"addr": addr, "len": length}}


def port_rule(
    include: list[str],
    exclude: list[str] | None = None,
    invert: bool = False,
    ports: list[tuple[int, int]] | None = None,
    protocol: Protocol = Protocol.TCP,
    verdict: NfTablesVerdict = ACCEPT,
) -> NfTablesRule:
    return NfTablesRule(
        match_source_address=NfTablesAddressMatch(
            include_subnets=include, exclude_subnets=exclude or [], invert=invert
        ),
        match_layer4=NfTablesLayer4Match(
            protocol=protocol,
            match_destination_port=NfTablesPortMatch(
                ranges=[PortRange(lo=lo, hi=hi) for lo, hi in ([(10250, 10250)] if ports is None else ports)]
            ),
        ),
        anonymous_counter=True,
        verdict=verdict,
    )


# ---- interval arithmetic ---------------------------------------------------------------------


def test_merge_and_subtract_intervals() -> None:
    assert merge_intervals([(5, 7), (1, 3), (3, 4), (6, 9), (20, 20)]) == [(1, 4), (5, 9)]
    assert subtract_intervals([(0, 10)], [(3, 5)]) == [(0, 3), (5, 10)]
    assert subtract_intervals([(0, 10)], [(0, 10)]) == []
    assert subtract_intervals([(0, 10), (20, 30)], [(5, 25)]) == [(0, 5), (25, 30)]
    assert subtract_intervals([(0, 10)], [(10, 20)]) == [(0, 10)]


def test_port_ranges_are_half_open_lo_to_hi_plus_one() -> None:
    pm = NfTablesPortMatch(ranges=[PortRange(lo=8000, hi=9000), PortRange(lo=53, hi=53)])
    assert port_intervals(pm) == [(53, 54), (8000, 9001)]
    # touching ranges merge into one interval (nft refuses overlapping elements)
    pm = NfTablesPortMatch(ranges=[PortRange(lo=80, hi=80), PortRange(lo=81, hi=90)])
    assert port_intervals(pm) == [(80, 91)]
    # written to nft as a single value or an inclusive range
    rule = port_rule(["10.0.0.0/8"], ports=[(53, 53), (8000, 9000), (65535, 65535)])
    (expr,) = compile_rule(rule)
    assert dport("tcp", [53, {"range": [8000, 9000]}, 65535]) in expr


def test_except_is_subtracted_from_all_subnets_of_the_rule() -> None:
    # the except belongs to the first subnet in the config, yet cuts the second one too
    match = NfTablesAddressMatch(
        include_subnets=["10.0.0.0/24", "10.0.1.0/24"], exclude_subnets=["10.0.1.5/32"]
    )
    v4, v6 = address_intervals(match)
    assert v6 == []
    base = 0x0A000000
    assert v4 == [(base, base + 256 + 5), (base + 256 + 6, base + 512)]
    (expr,) = compile_rule(port_rule(["10.0.0.0/24", "10.0.1.0/24"], ["10.0.1.5/32"]))
    assert saddr("ip", [{"range": ["10.0.0.0", "10.0.1.4"]}, {"range": ["10.0.1.6", "10.0.1.255"]}]) in expr


def test_host_bits_of_subnets_are_ignored() -> None:
    v4, _ = address_intervals(NfTablesAddressMatch(include_subnets=["192.168.1.7/24"]))
    assert v4 == [(0xC0A80100, 0xC0A80200)]


def test_all_addresses_detection() -> None:
    v4, v6 = address_intervals(NfTablesAddressMatch(include_subnets=["0.0.0.0/0", "::/0"]))
    assert v4 == [V4_ALL] and v6 == [V6_ALL]


# ---- §8.3 rule compilation -------------------------------------------------------------------


def test_accept_mode_example_ipv4_only_rule_drops_the_port_for_ipv6() -> None:
    rules = compile_rule(port_rule(["172.20.0.0/24"], invert=True, verdict=DROP))
    assert rules == [
        [l4("tcp"), nfproto("ipv4"), saddr("ip", [prefix("172.20.0.0", 24)], "!="), dport("tcp", [10250]),
         COUNTER, DRP],
        [l4("tcp"), nfproto("ipv6"), dport("tcp", [10250]), COUNTER, DRP],
    ]  # fmt: skip


def test_accept_mode_ipv6_only_rule_drops_the_port_for_ipv4() -> None:
    rules = compile_rule(port_rule(["2001:db8::/32"], invert=True, verdict=DROP))
    assert rules == [
        [l4("tcp"), nfproto("ipv4"), dport("tcp", [10250]), COUNTER, DRP],
        [l4("tcp"), nfproto("ipv6"), saddr("ip6", [prefix("2001:db8::", 32)], "!="), dport("tcp", [10250]),
         COUNTER, DRP],
    ]  # fmt: skip


def test_accept_mode_rule_without_subnets_drops_for_everybody() -> None:
    rules = compile_rule(port_rule([], invert=True, verdict=DROP))
    assert rules == [
        [l4("tcp"), nfproto("ipv4"), dport("tcp", [10250]), COUNTER, DRP],
        [l4("tcp"), nfproto("ipv6"), dport("tcp", [10250]), COUNTER, DRP],
    ]


def test_accept_mode_rule_for_everybody_produces_nothing() -> None:
    assert compile_rule(port_rule(["0.0.0.0/0", "::/0"], invert=True, verdict=DROP)) == []


def test_block_mode_rule_without_subnets_opens_nothing() -> None:
    assert compile_rule(port_rule([], verdict=ACCEPT)) == []
    # excepts that remove everything included leave nothing either
    assert compile_rule(port_rule(["10.0.0.0/24"], ["10.0.0.0/16"], verdict=ACCEPT)) == []


def test_block_mode_example_rules() -> None:
    assert compile_rule(port_rule(["172.20.0.0/24"])) == [
        [
            l4("tcp"),
            nfproto("ipv4"),
            saddr("ip", [prefix("172.20.0.0", 24)]),
            dport("tcp", [10250]),
            COUNTER,
            ACC,
        ]
    ]
    assert compile_rule(port_rule(["0.0.0.0/0", "::/0"], ports=[(50000, 50000)])) == [
        [l4("tcp"), nfproto("ipv4"), dport("tcp", [50000]), COUNTER, ACC],
        [l4("tcp"), nfproto("ipv6"), dport("tcp", [50000]), COUNTER, ACC],
    ]


def test_accept_mode_v4_everything_inverted_leaves_only_ipv6() -> None:
    # "not in 0.0.0.0/0" matches no IPv4 packet: only the IPv6 rule remains
    assert compile_rule(port_rule(["0.0.0.0/0"], invert=True, verdict=DROP)) == [
        [l4("tcp"), nfproto("ipv6"), dport("tcp", [10250]), COUNTER, DRP]
    ]


def test_pod_service_rule_source_and_destination_share_the_family_part() -> None:
    cidrs = ["10.244.0.0/16", "10.96.0.0/12"]
    rule = NfTablesRule(
        match_source_address=NfTablesAddressMatch(include_subnets=cidrs),
        match_destination_address=NfTablesAddressMatch(include_subnets=cidrs),
        anonymous_counter=True,
        verdict=ACCEPT,
    )
    elems = [prefix("10.96.0.0", 12), prefix("10.244.0.0", 16)]
    assert compile_rule(rule) == [[nfproto("ipv4"), saddr("ip", elems), daddr("ip", elems), COUNTER, ACC]]


def test_mixed_family_subnets_give_two_rules_ipv4_first() -> None:
    rules = compile_rule(port_rule(["2001:db8::/64", "192.0.2.0/24"]))
    assert [r[1] for r in rules] == [nfproto("ipv4"), nfproto("ipv6")]
    assert saddr("ip6", [prefix("2001:db8::", 64)]) in rules[1]


def test_address_elements_single_prefix_and_range() -> None:
    rule = port_rule(["192.0.2.1/32", "192.0.2.8/29", "192.0.2.16/32"], ["192.0.2.9/32"])
    (expr,) = compile_rule(rule)
    assert saddr("ip", ["192.0.2.1", "192.0.2.8", {"range": ["192.0.2.10", "192.0.2.16"]}]) in expr


def test_interface_conntrack_and_limit_prefix() -> None:
    rule = NfTablesRule(
        match_i_if_name=NfTablesIfNameMatch(interface_names=["lo", "siderolink", "kubespan"]),
        anonymous_counter=True,
        verdict=ACCEPT,
    )
    assert compile_rule(rule) == [
        [m(meta("iifname"), {"set": ["lo", "siderolink", "kubespan"]}), COUNTER, ACC]
    ]
    one = NfTablesRule(
        match_o_if_name=NfTablesIfNameMatch(interface_names=["eth0"], operator=MatchOperator.NOT_EQUAL)
    )
    assert compile_rule(one) == [[m(meta("oifname"), "eth0", "!=")]]
    ct1 = NfTablesRule(
        match_conntrack_state=NfTablesConntrackStateMatch(states=[ConntrackState.INVALID]), verdict=DROP
    )
    assert compile_rule(ct1) == [[m({"ct": {"key": "state"}}, "invalid", "in"), DRP]]
    ct2 = NfTablesRule(
        match_conntrack_state=NfTablesConntrackStateMatch(
            states=[ConntrackState.ESTABLISHED, ConntrackState.RELATED]
        )
    )
    assert compile_rule(ct2) == [[m({"ct": {"key": "state"}}, {"set": ["established", "related"]})]]
    icmp = NfTablesRule(
        match_layer4=NfTablesLayer4Match(protocol=Protocol.ICMPV6),
        match_limit=NfTablesLimitMatch(packet_rate_per_second=5),
        anonymous_counter=True,
        verdict=ACCEPT,
    )
    assert compile_rule(icmp) == [
        [l4("ipv6-icmp"), {"limit": {"rate": 5, "per": "second", "burst": 5}}, COUNTER, ACC]
    ]


def test_empty_matchers_match_nothing_or_everything() -> None:
    assert compile_rule(NfTablesRule(match_i_if_name=NfTablesIfNameMatch(), verdict=DROP)) == []
    notin = NfTablesIfNameMatch(operator=MatchOperator.NOT_EQUAL)
    assert compile_rule(NfTablesRule(match_i_if_name=notin, verdict=DROP)) == [[DRP]]
    assert compile_rule(NfTablesRule(match_conntrack_state=NfTablesConntrackStateMatch(), verdict=DROP)) == []
    assert compile_rule(port_rule(["10.0.0.0/8"], ports=[])) == []
    assert compile_rule(NfTablesRule()) == []


def test_mark_match_and_set_mark() -> None:
    rule = NfTablesRule(
        match_mark=NfTablesMark(mask=0x60, xor=0, value=0x20),
        set_mark=NfTablesMark(mask=0xFFFFFF9F, xor=0x20),
        verdict=ACCEPT,
    )
    expr = {"^": [{"&": [meta("mark"), 0x60]}, 0]}
    setv = {"^": [{"&": [meta("mark"), 0xFFFFFF9F]}, 0x20]}
    assert compile_rule(rule) == [[m(expr, 0x20), {"mangle": {"key": meta("mark"), "value": setv}}, ACC]]


def test_clamp_mss_makes_one_rule_per_family() -> None:
    rule = NfTablesRule(
        match_o_if_name=NfTablesIfNameMatch(interface_names=["kubespan"]),
        match_layer4=NfTablesLayer4Match(protocol=Protocol.TCP),
        clamp_mss=NfTablesClampMSS(mtu=1420),
    )
    v4, v6 = compile_rule(rule)
    opt = {"tcp option": {"name": "maxseg", "field": "size"}}
    assert v4[:3] == [m(meta("oifname"), "kubespan"), l4("tcp"), nfproto("ipv4")]
    assert m(opt, 1380, ">") in v4 and {"mangle": {"key": opt, "value": 1380}} in v4
    assert nfproto("ipv6") in v6 and {"mangle": {"key": opt, "value": 1360}} in v6


def test_rules_do_not_share_expression_objects() -> None:
    a, b = compile_rule(port_rule([], invert=True, verdict=DROP))
    a[0]["match"]["right"] = "changed"
    assert b[0] == l4("tcp")


# ---- chains, ruleset, batch --------------------------------------------------------------


def ingress(rules: list[NfTablesRule], policy: NfTablesVerdict = DROP) -> NfTablesChain:
    return NfTablesChain(
        type="filter",
        hook=NfTablesChainHook.INPUT,
        priority=NfTablesChainPriority.FILTER,
        policy=policy,
        rules=rules,
    )


def test_compile_chain_base_chain_then_rules() -> None:
    cmds = compile_chain("ingress", ingress([port_rule(["10.0.0.0/8"]), port_rule([])]))
    assert cmds[0] == {
        "add": {
            "chain": {
                "family": "inet",
                "table": "talos",
                "name": "ingress",
                "type": "filter",
                "hook": "input",
                "prio": 0,
                "policy": "drop",
            }
        }
    }
    assert len(cmds) == 2  # the rule without subnets compiles to nothing
    assert cmds[1]["add"]["rule"]["chain"] == "ingress"


def test_ruleset_and_batch() -> None:
    rs = compile_ruleset({"b": ingress([]), "a": ingress([], ACCEPT)})
    assert rs[0] == {"add": {"table": {"family": "inet", "name": "talos"}}}
    assert [c["add"]["chain"]["name"] for c in rs[1:]] == ["a", "b"]
    batch = build_batch(rs, ["old", "a"])["nftables"]
    assert batch[:4] == [
        {"add": {"table": {"family": "inet", "name": "talos"}}},
        {"flush": {"table": {"family": "inet", "name": "talos"}}},
        {"delete": {"chain": {"family": "inet", "table": "talos", "name": "a"}}},
        {"delete": {"chain": {"family": "inet", "table": "talos", "name": "old"}}},
    ]
    assert batch[4:] == rs[1:]
    # nothing else but inet talos is ever named
    for cmd in batch:
        (obj,) = next(iter(cmd.values())).values()
        assert obj["family"] == "inet" and obj.get("table", obj.get("name")) == "talos"
    # an empty ruleset still keeps the table
    assert build_batch(compile_ruleset({}), [])["nftables"][0]["add"] == {
        "table": {"family": "inet", "name": "talos"}
    }


def test_digests() -> None:
    a = compile_ruleset({"ingress": ingress([port_rule(["10.0.0.0/8"])])})
    b = compile_ruleset({"ingress": ingress([port_rule(["10.0.0.0/8"])])})
    c = compile_ruleset({"ingress": ingress([port_rule(["10.0.0.0/9"])])})
    assert ruleset_digest(a) == ruleset_digest(b) != ruleset_digest(c)
    listing = {
        "nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"table": {"family": "inet", "name": "talos", "handle": 3}},
            {"chain": {"family": "inet", "table": "talos", "name": "ingress", "handle": 1}},
            {"rule": {"chain": "ingress", "handle": 4, "expr": [{"counter": {"packets": 1, "bytes": 60}}]}},
        ]
    }
    moved = {
        "nftables": [
            {"metainfo": {"version": "1.0.7"}},
            {"table": {"family": "inet", "name": "talos", "handle": 9}},
            {"chain": {"family": "inet", "table": "talos", "name": "ingress", "handle": 2}},
            {"rule": {"chain": "ingress", "handle": 8, "expr": [{"counter": {"packets": 7, "bytes": 420}}]}},
        ]
    }
    assert listing_digest(listing) == listing_digest(moved)  # handles and counters do not count
    assert listing_digest(listing) != listing_digest(None)
    assert chains_in_listing(listing) == ["ingress"]


@pytest.mark.parametrize("proto,name", [(Protocol.UDP, "udp"), (Protocol.TCP, "tcp")])
def test_port_payload_protocol(proto: Protocol, name: str) -> None:
    (expr,) = compile_rule(port_rule(["10.0.0.0/8"], protocol=proto))
    assert expr[0] == l4(name) and dport(name, [10250]) in expr


# ---- the libnftables adapter, with a fake binding --------------------------------------------


class _FakeNftables:
    answers: list[tuple[int, Any, str]] = []

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def set_json_output(self, v: bool) -> None:
        pass

    def set_handle_output(self, v: bool) -> None:
        pass

    def json_cmd(self, doc: Any) -> tuple[int, Any, str]:
        self.calls.append(doc)
        return self.answers.pop(0)


def _fake_module(monkeypatch: pytest.MonkeyPatch, cls: Any) -> None:
    import sys
    import types

    mod = types.ModuleType("nftables")
    mod.Nftables = cls  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "nftables", mod)


def test_libnftables_missing_library_is_an_nftables_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from netd.kernel.nftables import LibNftables, NftablesError

    def broken() -> None:
        raise OSError("libnftables.so.1: cannot open shared object file")

    _fake_module(monkeypatch, broken)
    with pytest.raises(NftablesError, match="libnftables unavailable"):
        LibNftables().list_table()


def test_libnftables_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    from netd.kernel.nftables import LibNftables, NftablesError

    _fake_module(monkeypatch, _FakeNftables)
    _FakeNftables.answers = [
        (1, "", "Error: No such file or directory; did you mean table 'x'?"),  # no table yet
        (0, {"nftables": [{"table": {"family": "inet", "name": "talos"}}]}, ""),
        (1, "", "Error: Could not process rule: Operation not supported\n"),  # no nf_tables
        (1, "", "Error: Could not process rule: Operation not supported\n"),
    ]
    nft = LibNftables()
    assert nft.list_table() is None
    assert nft.list_table() == {"nftables": [{"table": {"family": "inet", "name": "talos"}}]}
    with pytest.raises(NftablesError, match="Operation not supported"):
        nft.list_table()
    with pytest.raises(NftablesError, match="Operation not supported"):
        nft.apply(build_batch(compile_ruleset({}), []))
