"""The memos of the manager's pass give exactly what a cold computation gives (bench/kubespan.py (a)).

Every cached function is checked against a cold run (caches cleared, or the pre-memo
algorithm) over random sequences of changes: a changed input must never return a stale result.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import given, settings
from hypothesis import strategies as st

from kubespan import nft, reconcile, specs
from kubespan.nft import routed_set
from kubespan.peer_state import DevicePeer, PeerState, PeerStatus, Timers, with_counters
from kubespan.peers import Endpoint, PeerCandidate, PeerSpec, build_peer_specs
from kubespan.reconcile import PassInput, manager_pass
from kubespan.specs import LocalIdentity, wireguard_peers
from netd.kernel.nftables import merge_intervals, subtract_intervals
from netd.resources.link import WireguardPeer

PSK = base64.b64encode(bytes(range(32))).decode()
T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def key(i: int) -> str:
    return base64.b64encode(bytes([i]) * 32).decode()


@contextmanager
def cold() -> Iterator[None]:
    """Run with empty memos, then put the warm ones back (the cold run must not disturb them)."""
    saved = reconcile._MEMO, nft._ROUTED, specs._WG_MEMO
    reconcile.clear_caches()
    try:
        yield
    finally:
        reconcile._MEMO, nft._ROUTED, specs._WG_MEMO = saved


# ---- routed_set -------------------------------------------------------------------------------------

v4net = st.builds(
    lambda a, n: ipaddress.IPv4Network((a, n), strict=False),
    st.integers(0xC0A80000, 0xC0A800FF),
    st.integers(24, 32),
)
v6net = st.builds(
    lambda a, n: ipaddress.IPv6Network((a, n), strict=False),
    st.integers(0xFD00 << 112, (0xFD00 << 112) + 0xFF),
    st.integers(120, 128),
)
nets = st.lists(st.one_of(v4net, v6net), max_size=4).map(tuple)


def spec(i: int, allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> PeerSpec:
    return PeerSpec(key(i), f"n{i}", ipaddress.IPv6Address((0xFD << 120) + i), allowed, ())


def reference(peers: list[PeerSpec], states: dict[str, PeerState], force: bool) -> nft.RoutedSet:
    chosen = [n for p in peers if force or states.get(p.public_key) is PeerState.UP for n in p.allowed_ips]
    return nft.RoutedSet(
        tuple(ipaddress.collapse_addresses(n for n in chosen if n.version == 4)),
        tuple(ipaddress.collapse_addresses(n for n in chosen if n.version == 6)),
    )


@settings(max_examples=150, deadline=None)
@given(
    st.lists(nets, min_size=1, max_size=8),
    st.lists(
        st.tuples(st.integers(0, 9), st.one_of(st.none(), nets), st.booleans(), st.booleans()),
        max_size=25,
    ),
)
def test_routed_set_matches_collapse_addresses(first, steps) -> None:
    nft.clear_caches()
    peers = {i: spec(i, n) for i, n in enumerate(first)}
    states = {p.public_key: PeerState.UP for p in peers.values()}
    force = True
    assert routed_set(peers.values(), states, force_routing=force) == reference(
        list(peers.values()), states, force
    )
    for i, allowed, up, force in steps:
        if allowed is None:
            peers.pop(i, None)
        else:
            peers[i] = spec(i, allowed)
        states[key(i)] = PeerState.UP if up else PeerState.DOWN
        got = routed_set(list(peers.values()), states, force_routing=force)
        assert got == reference(list(peers.values()), states, force)
        # The same inputs again (the memoised answer), and equal but new objects.
        again = [dataclasses.replace(p, allowed_ips=tuple(p.allowed_ips)) for p in peers.values()]
        assert routed_set(again, states, force_routing=force) == got


def test_routed_set_one_key_twice() -> None:
    nft.clear_caches()
    a = spec(1, (ipaddress.IPv4Network("10.0.0.0/24"),))
    b = spec(1, (ipaddress.IPv4Network("10.0.2.0/24"),))
    assert routed_set([a, b], {}, force_routing=True) == reference([a, b], {}, True)
    assert routed_set([a], {}, force_routing=True) == reference([a], {}, True)
    assert routed_set([b, a], {}, force_routing=True) == reference([b, a], {}, True)


# ---- wireguard_peers ----------------------------------------------------------------------------------


def uncached(p: PeerSpec, ep: Endpoint | None, psk: str, keepalive: float) -> WireguardPeer:
    return WireguardPeer(
        public_key=p.public_key,
        preshared_key=psk,
        endpoint="" if ep is None else str(ep),
        persistent_keepalive_interval=dt.timedelta(seconds=keepalive),
        allowed_ips=[ipaddress.ip_interface(n) for n in p.allowed_ips],
    )


def test_wireguard_peers_reuses_only_unchanged_models() -> None:
    specs.clear_caches()
    ep = Endpoint(ipaddress.IPv4Address("192.0.2.1"), 51820)
    a = spec(1, (ipaddress.IPv4Network("10.0.0.1/32"), ipaddress.IPv6Network("fd00::1/128")))
    b = spec(2, (ipaddress.IPv4Network("10.0.1.0/24"),))
    first = wireguard_peers([b, a], {a.public_key: ep}, PSK, 25)
    assert first == [uncached(a, ep, PSK, 25), uncached(b, None, PSK, 25)]
    assert [m.model_dump(mode="json") for m in first] == [
        uncached(a, ep, PSK, 25).model_dump(mode="json"),
        uncached(b, None, PSK, 25).model_dump(mode="json"),
    ]
    # Equal inputs (new objects): the very same models.
    same = wireguard_peers([dataclasses.replace(a), b], {a.public_key: Endpoint(*ep)}, PSK, 25)
    assert same[0] is first[0] and same[1] is first[1]
    # Each input that changes gives a new, correct model for that peer only.
    a2 = dataclasses.replace(a, allowed_ips=(ipaddress.IPv4Network("10.0.0.2/32"),))
    ep2 = Endpoint(ipaddress.IPv4Address("192.0.2.2"), 51820)
    psk2 = base64.b64encode(bytes(32 * [7])).decode()
    for peers, eps, psk, ka in (
        ([a2, b], {a.public_key: ep}, PSK, 25),
        ([a, b], {a.public_key: ep2}, PSK, 25),
        ([a, b], {}, PSK, 25),
        ([a, b], {a.public_key: ep}, psk2, 25),
        ([a, b], {a.public_key: ep}, PSK, 30),
    ):
        got = wireguard_peers(peers, eps, psk, ka)
        assert got == [uncached(p, eps.get(p.public_key), psk, ka) for p in peers]


# ---- manager_pass ----------------------------------------------------------------------------------------

ENDPOINTS = [Endpoint(ipaddress.IPv4Address(f"192.0.2.{i}"), 51820) for i in range(1, 4)]
TIMERS = Timers(endpoint_connection_timeout=15, peer_down_interval=155)
SUBNETS = [ipaddress.IPv4Network("192.0.2.0/30")]


def pass_input(
    now: dt.datetime,
    peers: dict[str, PeerSpec],
    statuses: dict[str, PeerStatus],
    device: dict[str, DevicePeer],
    *,
    subnets: list[ipaddress.IPv4Network],
    timers: Timers,
    force: bool,
) -> PassInput:
    return PassInput(
        now=now,
        identity=LocalIdentity(ipaddress.IPv6Address("fd00::1"), PSK),
        mtu=1420,
        shared_secret=PSK,
        force_routing=force,
        specs=peers,
        statuses=statuses,
        device=device,
        local_subnets=subnets,
        timers=timers,
    )


step = st.tuples(
    st.sampled_from([0.0, 0.0005, 0.5, 1.0, 5.0, 14.9995, 15.0, 16.0, 60.0, 154.999, 155.0, 200.0]),
    st.integers(0, 3),  # peer
    st.sampled_from(
        ["none", "handshake", "counters", "roam", "drop", "endpoints", "allowed", "remove", "ctx"]
    ),
    st.booleans(),  # force routing
)


@settings(max_examples=120, deadline=None)
@given(st.lists(step, min_size=1, max_size=30))
def test_manager_pass_memo_matches_cold_pass(steps) -> None:
    reconcile.clear_caches()
    peers = {
        key(i): PeerSpec(
            key(i),
            f"n{i}",
            ipaddress.IPv6Address((0xFD << 120) + i),
            (ipaddress.IPv4Network(f"10.0.{i}.0/24"),),
            tuple(ENDPOINTS[: 1 + i % 3]),
        )
        for i in range(4)
    }
    base = dict(peers)
    statuses: dict[str, PeerStatus] = {}
    device: dict[str, DevicePeer] = {}
    now = T0
    subnets, timers = SUBNETS, TIMERS
    for dt_s, i, what, force in steps:
        now += dt.timedelta(seconds=dt_s)
        k = key(i)
        st_k = statuses.get(k)
        if what == "handshake" and st_k is not None:
            device[k] = DevicePeer(st_k.endpoint, now, 100, 100)
        elif what == "counters" and k in device:
            d = device[k]
            device[k] = dataclasses.replace(d, receive_bytes=d.receive_bytes + 1)
        elif what == "roam" and k in device:
            device[k] = dataclasses.replace(device[k], endpoint=ENDPOINTS[2])
        elif what == "drop":
            device.pop(k, None)
        elif what == "endpoints":
            p = peers.get(k, base[k])  # a removed peer comes back
            peers[k] = dataclasses.replace(p, endpoints=tuple(reversed(p.endpoints)))
        elif what == "allowed":
            p = peers.get(k, base[k])
            peers[k] = dataclasses.replace(p, allowed_ips=(ipaddress.IPv4Network(f"10.1.{i}.0/24"),))
        elif what == "remove" and len(peers) > 1:
            peers.pop(k, None)
        elif what == "ctx":
            subnets = [] if subnets else SUBNETS
            timers = Timers(15, 155) if timers is not TIMERS else TIMERS
        # Equal but new objects, as the manager converts resources every pass.
        given_peers = {kk: dataclasses.replace(p) for kk, p in peers.items()}
        inp = pass_input(
            now, given_peers, statuses, dict(device), subnets=subnets, timers=timers, force=force
        )
        with cold():
            want = manager_pass(inp)
        got = manager_pass(inp)
        assert got.statuses == want.statuses
        assert got.push == want.push
        assert got.routed == want.routed
        assert got.next_check == want.next_check
        assert got.trying == want.trying
        assert got.events == want.events
        assert got.error == want.error
        assert got.specs == want.specs
        statuses = got.statuses


# ---- build_peer_specs ------------------------------------------------------------------------------------


def build_reference(candidates: list[PeerCandidate]) -> tuple[dict[str, tuple], list[str]]:
    """§6.1 with the all-pairs overlap check the index replaced."""
    from kubespan.peers import _candidate_set, _overlaps, cidr_cover

    out: dict[str, tuple] = {}
    warnings: list[str] = []
    accepted = []
    for c in sorted(candidates, key=lambda c: c.node_id):
        if c.kubespan_address is None:
            continue
        v4, v6 = _candidate_set(c, c.kubespan_address)
        if c.public_key in out:
            continue
        for p4, p6 in accepted:
            if _overlaps(v4, p4) or _overlaps(v6, p6):
                warnings.append(f"{c.node_id} overlaps")
                v4, v6 = subtract_intervals(v4, p4), subtract_intervals(v6, p6)
        accepted.append((v4, v6))
        out[c.public_key] = cidr_cover(v4, v6)
    return out, warnings


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 20),  # key
            st.lists(st.integers(0, 63), max_size=3),  # addresses 10.0.0.x
            st.lists(st.tuples(st.integers(0, 63), st.integers(26, 32)), max_size=3),
        ),
        max_size=12,
    )
)
def test_build_peer_specs_matches_all_pairs(raw) -> None:
    cands = [
        PeerCandidate(
            node_id=f"node-{n:02d}",
            label=f"n{n}",
            public_key=key(k),
            kubespan_address=ipaddress.IPv6Address((0xFD << 120) + n),
            addresses=tuple(ipaddress.IPv4Address(f"10.0.0.{a}") for a in addrs),
            additional_addresses=tuple(ipaddress.IPv4Interface(f"10.0.0.{a}/{p}") for a, p in prefixes),
        )
        for n, (k, addrs, prefixes) in enumerate(raw)
    ]
    built = build_peer_specs(cands)
    want, warnings = build_reference(cands)
    assert {k: s.allowed_ips for k, s in built.specs.items()} == want
    assert len([w for w in built.warnings if "overlap an earlier" in w]) == len(warnings)
    assert merge_intervals([]) == []


def test_with_counters_is_replace() -> None:
    s = PeerStatus(label="x", state=PeerState.UP, endpoint=ENDPOINTS[0], last_handshake_time=T0)
    got = with_counters(s, 5, 6)
    assert got == dataclasses.replace(s, receive_bytes=5, transmit_bytes=6)
    assert hash(got) == hash(dataclasses.replace(s, receive_bytes=5, transmit_bytes=6))
    assert s.receive_bytes == 0


# ---- KubeSpanTable's rendering memo --------------------------------------------------------------------


def test_table_rendering_memo_never_stale() -> None:
    from test_kubespan_nft import FakeBackend

    fake = FakeBackend()
    t = nft.KubeSpanTable(backend=fake)  # type: ignore[arg-type]
    a = nft.RoutedSet((ipaddress.IPv4Network("10.0.0.0/24"),), ())
    b = nft.RoutedSet((ipaddress.IPv4Network("10.0.1.0/24"),), ())
    for routed, mtu, wrote in (
        (a, 1420, True),
        (a, 1420, False),  # the same object
        (nft.RoutedSet(tuple(a.ipv4), ()), 1420, False),  # an equal one
        (b, 1420, True),  # other prefixes
        (b, 1380, True),  # other MTU
        (a, 1380, True),
    ):
        assert t.apply(routed, mtu) is wrote
        assert fake.batches[-1] == nft.build_batch(nft.render_table(routed, mtu), None) or not wrote
