"""kubespan/nft.py without a kernel: routed set (kubespan.md §6.3 step 7, §7.5), the rendering of §7.4,
the mark arithmetic vectors of §9.8, the batch shape and the steady-state rule (a fake backend)."""

from __future__ import annotations

import copy
import ipaddress as ia
from typing import Any

import pytest

from kubespan.nft import (
    KubeSpanTable,
    RoutedSet,
    build_batch,
    mss_clamp,
    render_table,
    routed_set,
    set_mark,
    teardown_batch,
)
from kubespan.peer_state import PeerState
from kubespan.peers import PeerSpec


def peer(key: str, *nets: str) -> PeerSpec:
    return PeerSpec(key, key, ia.IPv6Address("fd00::1"), tuple(ia.ip_network(n) for n in nets), ())


N2 = peer("K2", "10.0.0.2/32", "fd00:10::2/128", "fd7f:175a:b97c:5602:0:aff:fe00:2/128")
N3 = peer("K3", "10.0.0.3/32", "fd00:10::3/128", "fd7f:175a:b97c:5602:0:aff:fe00:3/128")


def test_routed_set_force_routing_is_every_peer_collapsed() -> None:
    # kubespan.md §10 S3: n1's sets with peers n2 and n3.
    r = routed_set([N2, N3], {}, force_routing=True)
    assert r.ipv4 == (ia.IPv4Network("10.0.0.2/31"),)
    assert r.ipv6 == (
        ia.IPv6Network("fd00:10::2/127"),
        ia.IPv6Network("fd7f:175a:b97c:5602:0:aff:fe00:2/127"),
    )


def test_routed_set_bypass_only_up_peers() -> None:
    states = {"K2": PeerState.UP, "K3": PeerState.DOWN}
    r = routed_set([N2, N3], states, force_routing=False)
    assert r.ipv4 == (ia.IPv4Network("10.0.0.2/32"),)
    assert routed_set([N2, N3], {"K2": PeerState.UNKNOWN}, force_routing=False) == RoutedSet()


def test_routed_set_never_overlaps() -> None:
    a = peer("A", "10.0.0.0/16", "10.1.0.0/24")
    b = peer("B", "10.0.5.0/24", "10.0.255.255/32", "10.1.1.0/24")
    assert routed_set([a, b], {}, force_routing=True).ipv4 == (
        ia.IPv4Network("10.0.0.0/16"),
        ia.IPv4Network("10.1.0.0/23"),
    )


@pytest.mark.parametrize(
    ("mark", "masked", "after"),
    [(0x00000000, 0x00, 0x00000040), (0x12345678, 0x60, 0x12345658), (0xFFFFFFFF, 0x60, 0xFFFFFFDF)],
)
def test_mark_vectors(mark: int, masked: int, after: int) -> None:
    # kubespan.md §9.8 (the same vectors go through the kernel in tests/netns/test_kubespan_nft.py).
    assert mark & 0x60 == masked
    assert set_mark(mark) == after


def test_wireguard_mark_is_accepted_before_any_set_mark() -> None:
    rules = [cmd["add"]["rule"] for cmd in render_table(RoutedSet(), 1420) if "rule" in cmd["add"]]
    for chain in ("kubespan_prerouting", "kubespan_outgoing"):
        first = next(r for r in rules if r["chain"] == chain)
        assert first["expr"] == [
            {"match": {"op": "==", "left": {"&": [{"meta": {"key": "mark"}}, 0x60]}, "right": 0x20}},
            {"accept": None},
        ]


def test_mss_clamp() -> None:
    assert mss_clamp(1420) == (1380, 1360)
    assert mss_clamp(1380) == (1340, 1320)  # kubespan.md §10 S15


def _rules(cmds: list[dict[str, Any]], chain: str) -> list[list[Any]]:
    return [
        c["add"]["rule"]["expr"] for c in cmds if "rule" in c["add"] and c["add"]["rule"]["chain"] == chain
    ]


def test_rendering_follows_reference_rule_order() -> None:
    cmds = render_table(routed_set([N2, N3], {}, force_routing=True), 1420)
    chains = {c["add"]["chain"]["name"]: c["add"]["chain"] for c in cmds if "chain" in c["add"]}
    assert chains["kubespan_prerouting"] | {} == {
        "family": "inet", "table": "talos_kubespan", "name": "kubespan_prerouting",
        "type": "filter", "hook": "prerouting", "prio": 0, "policy": "accept",
    }  # fmt: skip
    assert (chains["kubespan_outgoing"]["type"], chains["kubespan_outgoing"]["hook"]) == ("route", "output")
    pre, out = _rules(cmds, "kubespan_prerouting"), _rules(cmds, "kubespan_outgoing")
    assert len(pre) == 3 and len(out) == 6
    setmark = {
        "mangle": {
            "key": {"meta": {"key": "mark"}},
            "value": {"|": [{"&": [{"meta": {"key": "mark"}}, 0xFFFFFF9F]}, 0x40]},
        }
    }
    for rule, proto, set_name in (
        (pre[1], "ip", "@kubespan_targets_ipv4"),
        (pre[2], "ip6", "@kubespan_targets_ipv6"),
        (out[4], "ip", "@kubespan_targets_ipv4"),
        (out[5], "ip6", "@kubespan_targets_ipv6"),
    ):
        assert rule == [
            {
                "match": {
                    "op": "==",
                    "left": {"payload": {"protocol": proto, "field": "daddr"}},
                    "right": set_name,
                }
            },
            setmark,
            {"accept": None},
        ]
    assert out[1] == [
        {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "lo"}},
        {"accept": None},
    ]
    for rule, mss in ((out[2], 1380), (out[3], 1360)):
        assert rule[1:] == [
            {
                "match": {
                    "op": "==",
                    "left": {"&": [{"payload": {"protocol": "tcp", "field": "flags"}}, ["syn", "rst"]]},
                    "right": "syn",
                }
            },
            {"match": {"op": ">", "left": {"tcp option": {"name": "maxseg", "field": "size"}}, "right": mss}},
            {"mangle": {"key": {"tcp option": {"name": "maxseg", "field": "size"}}, "value": mss}},
        ]
    elems = {c["add"]["element"]["name"]: c["add"]["element"]["elem"] for c in cmds if "element" in c["add"]}
    assert elems == {
        "kubespan_targets_ipv4": [{"prefix": {"addr": "10.0.0.2", "len": 31}}],
        "kubespan_targets_ipv6": [
            {"prefix": {"addr": "fd00:10::2", "len": 127}},
            {"prefix": {"addr": "fd7f:175a:b97c:5602:0:aff:fe00:2", "len": 127}},
        ],
    }


def test_empty_sets_have_no_element_command() -> None:
    cmds = render_table(RoutedSet(), 1420)
    assert not any("element" in c["add"] for c in cmds)
    assert sum("set" in c["add"] for c in cmds) == 2


def test_batch_replaces_table_and_flushes_sets_before_elements() -> None:
    cmds = build_batch(render_table(routed_set([N2], {}, force_routing=True), 1420))["nftables"]
    table = {"family": "inet", "name": "talos_kubespan"}
    assert cmds[:2] == [{"add": {"table": table}}, {"flush": {"table": table}}]
    for name in ("kubespan_targets_ipv4", "kubespan_targets_ipv6"):
        flush = cmds.index({"flush": {"set": {"family": "inet", "table": "talos_kubespan", "name": name}}})
        add_elem = next(
            i for i, c in enumerate(cmds) if c.get("add", {}).get("element", {}).get("name") == name
        )
        assert flush < add_elem
    # only our table is ever named
    assert all(
        next(iter(c.values())).get(k, {}).get("table", "talos_kubespan") == "talos_kubespan"
        for c in cmds
        for k in next(iter(c.values()))
    )


def test_batch_deletes_stray_chains_and_sets_of_our_table_only() -> None:
    listing = {"nftables": [
        {"chain": {"family": "inet", "table": "talos_kubespan", "name": "stray"}},
        {"chain": {"family": "inet", "table": "talos_kubespan", "name": "kubespan_outgoing"}},
        {"set": {"family": "inet", "table": "talos_kubespan", "name": "old"}},
        {"chain": {"family": "inet", "table": "talos", "name": "ingress"}},
    ]}  # fmt: skip
    cmds = build_batch(render_table(RoutedSet(), 1420), listing)["nftables"]
    deletes = [c["delete"] for c in cmds if "delete" in c]
    assert deletes == [
        {"chain": {"family": "inet", "table": "talos_kubespan", "name": "stray"}},
        {"set": {"family": "inet", "table": "talos_kubespan", "name": "old"}},
    ]


def test_teardown_deletes_only_our_table() -> None:
    assert teardown_batch() == {
        "nftables": [{"delete": {"table": {"family": "inet", "name": "talos_kubespan"}}}]
    }


class FakeBackend:
    """The table as a dict: lists return what was last applied (normalised away from the batch)."""

    def __init__(self) -> None:
        self.table: list[dict[str, Any]] | None = None
        self.batches: list[dict[str, Any]] = []

    def list_table(self) -> dict[str, Any] | None:
        return None if self.table is None else {"nftables": copy.deepcopy(self.table)}

    def apply(self, batch: dict[str, Any]) -> None:
        self.batches.append(batch)
        self.table = [next(iter(c.values())) for c in batch["nftables"] if "add" in c]

    def delete(self) -> bool:
        existed, self.table = self.table is not None, None
        return existed


def test_steady_state_writes_nothing_and_restores_a_vanished_table() -> None:
    fake = FakeBackend()
    t = KubeSpanTable(backend=fake)  # type: ignore[arg-type]
    r = routed_set([N2], {}, force_routing=True)
    assert t.apply(r, 1420) is True
    assert t.apply(r, 1420) is False and len(fake.batches) == 1
    assert t.apply(r, 1380) is True  # MTU changes the clamp rules
    assert t.apply(routed_set([N2, N3], {}, force_routing=True), 1380) is True
    fake.table = None  # nft flush ruleset behind our back
    assert t.apply(routed_set([N2, N3], {}, force_routing=True), 1380) is True
    fake.table[-1] = {"tampered": True}  # type: ignore[index]
    assert t.apply(routed_set([N2, N3], {}, force_routing=True), 1380) is True
    assert t.applies == 5
    assert t.teardown() is True and t.teardown() is False and t.deletes == 1
    assert t.apply(r, 1420) is True  # after a teardown the table comes back


def test_record_lets_a_new_process_skip_an_unchanged_table() -> None:
    fake = FakeBackend()
    first = KubeSpanTable(backend=fake)  # type: ignore[arg-type]
    r = routed_set([N2], {}, force_routing=True)
    first.apply(r, 1420)
    second = KubeSpanTable(backend=fake)  # type: ignore[arg-type]
    second.adopt(first.record)
    assert second.apply(r, 1420) is False and len(fake.batches) == 1
    third = KubeSpanTable(backend=fake)  # type: ignore[arg-type]
    third.adopt(None)
    assert third.apply(r, 1420) is True  # no record: one rewrite


def test_no_nfnetlink_is_an_error_not_an_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    # libnftables exit()s when it cannot open its netlink socket: the probe must run first.
    from netd.kernel import nftables
    from netd.kernel.nftables import NftablesError

    assert nftables.netfilter_unavailable() is None  # this host has nf_tables
    monkeypatch.setattr(
        nftables, "netfilter_unavailable", lambda: "the kernel has no nfnetlink (nf_tables)"
    )
    t = KubeSpanTable()
    with pytest.raises(NftablesError, match="no nfnetlink"):
        t.apply(RoutedSet(), 1420)
    assert t.backend._nft is None  # no libnftables context was created
