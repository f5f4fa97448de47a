"""kubespan/peer_state.py: the peer state table (kubespan.md §6.3 step 5) row by row, endpoint choice
(step 6) with the endpoint order and check timing of decisions.md "KubeSpan", and rotation invariants."""

from __future__ import annotations

import datetime as dt
import ipaddress as ia

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubespan.peer_state import (
    STATE_TABLE,
    DevicePeer,
    PeerState,
    PeerStatus,
    Timers,
    Window,
    compute_state,
    endpoint_order,
    is_public,
    new_status,
    next_check,
    resume_status,
    update_peer,
)
from kubespan.peers import Endpoint, PeerSpec

NOW = dt.datetime(2024, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
UNKNOWN, UP, DOWN = PeerState.UNKNOWN, PeerState.UP, PeerState.DOWN
T, F = True, False


def ago(seconds: float | None) -> dt.datetime | None:
    return None if seconds is None else NOW - dt.timedelta(seconds=seconds)


def ep(text: str) -> Endpoint:
    return Endpoint.parse(text)


def spec(*eps: str) -> PeerSpec:
    return PeerSpec(
        public_key="K",
        label="n2",
        address=ia.IPv6Address("fd00::2"),
        allowed_ips=(),
        endpoints=tuple(map(ep, eps)),
    )


# ---- step 5: the table, row by row --------------------------------------------------------------------


def test_table_is_complete_and_says_what_the_spec_says() -> None:
    assert STATE_TABLE == {
        (Window.TRYING, T, T): UP, (Window.TRYING, T, F): UP,
        (Window.TRYING, F, T): UNKNOWN, (Window.TRYING, F, F): UNKNOWN,
        (Window.JUDGING, T, T): UP, (Window.JUDGING, T, F): UP,
        (Window.JUDGING, F, T): DOWN, (Window.JUDGING, F, F): DOWN,
        (Window.SETTLED, T, T): UP, (Window.SETTLED, T, F): DOWN,
        (Window.SETTLED, F, T): UP, (Window.SETTLED, F, F): DOWN,
    }  # fmt: skip


# (row, seconds since endpoint change, seconds since handshake, timers, expected state)
# Rows (JUDGING, T, F) and (SETTLED, F, T) cannot happen: a handshake after the change is more
# recent than the change, which is at most PEER_DOWN_INTERVAL old in JUDGING and more in SETTLED.
DEFAULT = Timers()
ODD = Timers(endpoint_connection_timeout=15, peer_down_interval=3)
ROWS = [
    ((Window.TRYING, T, T), 5, 2, Timers(), UP),
    ((Window.TRYING, T, F), 5, 4, ODD, UP),
    ((Window.TRYING, F, T), 5, 10, Timers(), UNKNOWN),
    ((Window.TRYING, F, F), 5, None, Timers(), UNKNOWN),
    ((Window.JUDGING, T, T), 100, 50, Timers(), UP),
    ((Window.JUDGING, F, T), 100, 150, Timers(), DOWN),
    ((Window.JUDGING, F, F), 100, None, Timers(), DOWN),
    ((Window.JUDGING, F, F), 15, None, Timers(), DOWN),  # checked exactly at the timeout
    ((Window.JUDGING, F, F), 275, None, Timers(), DOWN),  # "> 275" is strict
    ((Window.SETTLED, T, T), 300, 10, Timers(), UP),
    ((Window.SETTLED, T, F), 300, 290, Timers(), DOWN),
    ((Window.SETTLED, T, F), 300, 275, Timers(), DOWN),  # "< 275" is strict
    ((Window.SETTLED, F, F), 300, None, Timers(), DOWN),
    ((Window.SETTLED, T, T), None, 10, Timers(), UP),  # never changed: any recent handshake
    ((Window.SETTLED, F, F), None, None, Timers(), DOWN),
]


@pytest.mark.parametrize(("row", "ch", "hs", "timers", "want"), ROWS)
def test_state_rows(
    row: tuple[Window, bool, bool], ch: float | None, hs: float | None, timers: Timers, want: PeerState
) -> None:
    status = PeerStatus(
        last_endpoint_change=ago(ch), last_handshake_time=ago(hs), last_used_endpoint=ep("10.0.0.2:51820")
    )
    assert STATE_TABLE[row] is want
    assert compute_state(NOW, status, timers) is want


def test_down_without_configured_endpoint_is_unknown() -> None:
    status = PeerStatus(last_endpoint_change=ago(100), last_handshake_time=None, last_used_endpoint=None)
    assert compute_state(NOW, status) is UNKNOWN


# ---- next check --------------------------------------------------------------------------------------


def test_next_check_is_exactly_the_timeout_after_an_endpoint_was_tried() -> None:
    status = PeerStatus(last_endpoint_change=NOW)
    assert next_check(NOW, status) == NOW + dt.timedelta(seconds=15)
    assert next_check(NOW, status, Timers(endpoint_connection_timeout=1.5)) == NOW + dt.timedelta(seconds=1.5)


def test_next_check_for_an_up_peer_is_when_its_handshake_expires() -> None:
    status = PeerStatus(last_endpoint_change=ago(1000), last_handshake_time=ago(100))
    assert next_check(NOW, status) == NOW + dt.timedelta(seconds=175)
    assert next_check(NOW, PeerStatus()) is None


# ---- endpoint order (decisions.md) ----------------------------------------------------------------------


def test_endpoint_order_connected_then_public_then_rest() -> None:
    eps = list(
        map(
            ep,
            [
                "10.9.0.2:51820",
                "[fd00:9::2]:51820",
                "192.0.2.2:51820",
                "172.20.0.2:51820",
                "[2001:db8::2]:51820",
                "10.9.0.2:51820",
            ],
        )
    )
    local = [ia.ip_network("172.20.0.0/24")]
    assert [str(e) for e in endpoint_order(eps, local)] == [
        "172.20.0.2:51820",
        "192.0.2.2:51820",
        "[2001:db8::2]:51820",
        "10.9.0.2:51820",
        "[fd00:9::2]:51820",
    ]
    assert endpoint_order(eps[:2]) == eps[:2]  # nothing to reorder: advertised order


@pytest.mark.parametrize(
    ("ip", "public"),
    [
        ("192.0.2.1", T),
        ("8.8.8.8", T),
        ("100.64.0.1", T),
        ("2001:db8::1", T),
        ("10.1.2.3", F),
        ("172.31.0.1", F),
        ("192.168.1.1", F),
        ("fd7f::1", F),
        ("fe80::1", F),
        ("127.0.0.1", F),
        ("::1", F),
        ("169.254.0.1", F),
    ],
)
def test_is_public_uses_go_private_ranges(ip: str, public: bool) -> None:
    assert is_public(ia.ip_address(ip)) is public


# ---- step 6, run by run ----------------------------------------------------------------------------------


def run(
    status: PeerStatus, sp: PeerSpec, at: float, device: DevicePeer | None = None, timers: Timers = DEFAULT
) -> tuple[PeerStatus, Endpoint | None, bool]:
    u = update_peer(NOW + dt.timedelta(seconds=at), status, sp, device, timers=timers)
    return u.status, u.push_endpoint, u.rotated


def test_new_peer_gets_first_endpoint_and_a_check_at_the_timeout() -> None:
    sp = spec("10.9.0.2:51820", "10.0.0.2:51820")
    status = new_status(sp)
    assert status == PeerStatus(label="n2")
    u = update_peer(NOW, status, sp, None)
    assert u.push_endpoint == ep("10.9.0.2:51820") and u.rotated
    assert u.status.state is UNKNOWN and u.status.last_endpoint_change == NOW
    assert u.status.endpoint == u.status.last_used_endpoint == ep("10.9.0.2:51820")
    assert u.next_check == NOW + dt.timedelta(seconds=15)


def test_rotation_exactly_at_the_timeout_not_before() -> None:
    sp = spec("10.9.0.2:51820", "10.0.0.2:51820")
    s0, _, _ = run(new_status(sp), sp, 0)
    dev = DevicePeer(endpoint=ep("10.9.0.2:51820"))
    s1, push, rotated = run(s0, sp, 14.999, dev)
    assert (s1.state, push, rotated) == (UNKNOWN, ep("10.9.0.2:51820"), False)  # re-asserted, not rotated
    s2, push, rotated = run(s1, sp, 15, dev)
    assert (s2.state, push, rotated) == (UNKNOWN, ep("10.0.0.2:51820"), True)
    assert s2.last_endpoint_change == NOW + dt.timedelta(seconds=15)
    # and wraps around after the last one
    s3, push, _ = run(s2, sp, 30, DevicePeer(endpoint=ep("10.0.0.2:51820")))
    assert push == ep("10.9.0.2:51820") and s3.last_used_endpoint == push


def test_handshake_makes_peer_up_and_keeps_endpoint() -> None:
    sp = spec("10.9.0.2:51820", "10.0.0.2:51820")
    s0, _, _ = run(new_status(sp), sp, 0)
    dev = DevicePeer(
        endpoint=ep("10.9.0.2:51820"),
        last_handshake_time=NOW + dt.timedelta(seconds=1),
        receive_bytes=92,
        transmit_bytes=148,
    )
    s1, push, rotated = run(s0, sp, 2, dev)
    assert (s1.state, push, rotated) == (UP, ep("10.9.0.2:51820"), False)
    assert (s1.receive_bytes, s1.transmit_bytes) == (92, 148)
    assert s1.last_handshake_time == NOW + dt.timedelta(seconds=1)
    s2, push, _ = run(s1, sp, 100, dev)
    assert (s2.state, push) == (UP, ep("10.9.0.2:51820"))


def test_roamed_peer_is_not_fought() -> None:
    sp = spec("10.9.0.2:51820")
    s0, _, _ = run(new_status(sp), sp, 0)
    roamed = DevicePeer(endpoint=ep("198.51.100.7:40000"), last_handshake_time=NOW + dt.timedelta(seconds=1))
    s1, push, _ = run(s0, sp, 5, roamed)
    assert (s1.state, push, s1.endpoint) == (UP, None, ep("198.51.100.7:40000"))
    assert s1.last_used_endpoint == ep("10.9.0.2:51820")


def test_single_unreachable_endpoint_is_not_rotated() -> None:
    # kubespan.md §10 S6: down, lastUsedEndpoint and lastEndpointChange never change.
    sp = spec("192.0.2.2:51820")
    s, _, _ = run(new_status(sp), sp, 0)
    dev = DevicePeer(endpoint=ep("192.0.2.2:51820"))
    for at in (15, 45, 300, 1000):
        s, push, rotated = run(s, sp, at, dev)
        assert (s.state, push, rotated) == (DOWN, ep("192.0.2.2:51820"), False)
        assert s.last_endpoint_change == NOW


def test_no_endpoints_nothing_to_push() -> None:
    sp = spec()
    s, push, rotated = run(new_status(sp), sp, 0)
    assert (s.state, push, rotated, s.last_endpoint_change) == (UNKNOWN, None, False, None)


def test_last_used_endpoint_gone_from_spec_restarts_at_first() -> None:
    old = spec("10.9.0.2:51820")
    s, _, _ = run(new_status(old), old, 0)
    new = spec("10.0.0.2:51820", "10.0.0.3:51820")
    s, push, rotated = run(s, new, 15, DevicePeer(endpoint=ep("10.9.0.2:51820")))
    assert (push, rotated) == (ep("10.0.0.2:51820"), True)


def test_public_endpoint_tried_before_private_unreachable_one() -> None:
    # issue 12: a peer whose public address is advertised after an unreachable private one.
    sp = spec("10.9.0.2:51820", "192.0.2.2:51820")
    u = update_peer(NOW, new_status(sp), sp, None, local_subnets=[ia.ip_network("10.0.0.0/24")])
    assert u.push_endpoint == ep("192.0.2.2:51820")


def test_device_without_peer_keeps_counters() -> None:
    sp = spec("10.0.0.2:51820")
    s = PeerStatus(
        label="n2",
        receive_bytes=5,
        transmit_bytes=6,
        last_handshake_time=ago(1),
        last_used_endpoint=ep("10.0.0.2:51820"),
        endpoint=ep("10.0.0.2:51820"),
        last_endpoint_change=ago(400),
    )
    s1, push, _ = run(s, sp, 0, None)
    assert (s1.receive_bytes, s1.transmit_bytes, s1.state, push) == (5, 6, UP, ep("10.0.0.2:51820"))


# ---- rotation invariants ----------------------------------------------------------------------------------

_pool = [
    ep(t)
    for t in (
        "10.0.0.2:51820",
        "10.9.0.2:51820",
        "192.0.2.2:51820",
        "[fd00::2]:51820",
        "[2001:db8::2]:51820",
        "172.16.0.2:1",
        "8.8.8.8:2",
    )
]
_subnets = [ia.ip_network(t) for t in ("10.0.0.0/24", "192.0.2.0/24", "fd00::/64")]


@settings(max_examples=200, deadline=None)
@given(
    eps=st.lists(st.sampled_from(_pool), min_size=0, max_size=7),
    local=st.lists(st.sampled_from(_subnets), max_size=3),
    timeout=st.sampled_from([0.5, 15.0]),
)
def test_rotation_stays_in_list_and_cycles_through_all(
    eps: list[Endpoint], local: list[ia.IPv4Network], timeout: float
) -> None:
    sp = PeerSpec("K", "n", ia.IPv6Address("fd00::2"), (), tuple(eps))
    timers = Timers(endpoint_connection_timeout=timeout)
    distinct = set(eps)
    status, t = new_status(sp), 0.0
    tried: list[Endpoint] = []
    for _ in range(2 * len(distinct) + 2):
        u = update_peer(
            NOW + dt.timedelta(seconds=t),
            status,
            sp,
            DevicePeer(endpoint=status.endpoint),
            local_subnets=local,
            timers=timers,
        )
        assert u.push_endpoint is None or u.push_endpoint in distinct
        if u.rotated:
            tried.append(u.status.last_used_endpoint)  # type: ignore[arg-type]
            assert u.next_check == NOW + dt.timedelta(seconds=t + timeout)
        status = u.status
        t = (u.next_check - NOW).total_seconds() if u.next_check is not None else t + timeout
    if not distinct:
        assert tried == []
    elif len(distinct) == 1:
        assert tried == list(distinct)  # tried once, then nothing to rotate to
    else:
        n = len(distinct)
        assert set(tried[:n]) == distinct  # every endpoint once before any twice
        assert tried[n:] == tried[: len(tried) - n]  # then the same cycle again
        assert tried[:n] == endpoint_order(eps, local)


def test_a_late_public_endpoint_replaces_a_private_one_being_tried() -> None:
    """The peer's public address arrives after its private one was tried (discovery learns it a
    moment later): while the try has no handshake, the better group is taken at once."""
    private = spec("10.1.0.12:51820")
    s0, push, _ = run(new_status(private), private, 0)
    assert push == ep("10.1.0.12:51820")
    both = spec("10.1.0.12:51820", "203.0.113.12:51820")
    s1, push, rotated = run(s0, both, 1, DevicePeer(endpoint=ep("10.1.0.12:51820")))
    assert (push, rotated, s1.last_endpoint_change) == (
        ep("203.0.113.12:51820"),
        True,
        NOW + dt.timedelta(seconds=1),
    )
    # same group or worse: wait for the timeout as before
    other_private = spec("10.1.0.12:51820", "10.7.0.12:51820")
    _, push, rotated = run(s0, other_private, 1, DevicePeer(endpoint=ep("10.1.0.12:51820")))
    assert (push, rotated) == (ep("10.1.0.12:51820"), False)


def test_an_up_peer_is_never_moved_to_a_better_group() -> None:
    sp = spec("10.1.0.12:51820")
    s0, _, _ = run(new_status(sp), sp, 0)
    dev = DevicePeer(endpoint=ep("10.1.0.12:51820"), last_handshake_time=NOW + dt.timedelta(seconds=1))
    s1, _, _ = run(s0, sp, 2, dev)
    assert s1.state is UP
    both = spec("10.1.0.12:51820", "203.0.113.12:51820")
    s2, push, rotated = run(s1, both, 3, dev)
    assert (s2.state, push, rotated) == (UP, ep("10.1.0.12:51820"), False)


def test_resume_keeps_a_live_session_on_its_endpoint() -> None:
    """A restarted daemon finds the peer in the device: a recent handshake continues as up on the
    device's (possibly roamed) endpoint, with nothing pushed over it; a stale one starts afresh."""
    sp = spec("10.9.0.2:51820", "10.0.0.2:51820")
    live = DevicePeer(endpoint=ep("10.0.0.2:51820"), last_handshake_time=NOW - dt.timedelta(seconds=40))
    st = resume_status(NOW, sp, live)
    u = update_peer(NOW, st, sp, live)
    assert (u.status.state, u.push_endpoint, u.rotated) == (UP, ep("10.0.0.2:51820"), False)
    stale = DevicePeer(endpoint=ep("10.0.0.2:51820"), last_handshake_time=NOW - dt.timedelta(seconds=400))
    assert resume_status(NOW, sp, stale) == new_status(sp)
    assert resume_status(NOW, sp, None) == new_status(sp)
