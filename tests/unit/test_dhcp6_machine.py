"""The DHCPv6 client state machine (operators/dhcp6/machine.py), row by row, on a fake clock."""

from __future__ import annotations

import itertools
import math
import random
from ipaddress import IPv6Address as A

import pytest

from operators.dhcp6 import machine as m
from operators.dhcp6 import packet as p
from operators.dhcp6.machine import Bound, Client6, Event, Expired, Send, State

DUID = bytes.fromhex("00030001020000000601")
SID = bytes.fromhex("000100012c4a5b6c0a0b0c0d0e0f")
SID2 = bytes.fromhex("000100012c4a5b6c0a0b0c0d0e10")
IAID = 0x601
ADDR = A("fd00::100")
SERVER = A("fe80::1")


def client(seed: int = 1) -> Client6:
    return Client6(DUID, IAID, rng=random.Random(seed))


def sent(actions: list[m.Action]) -> p.Message:
    (s,) = [a for a in actions if isinstance(a, Send)]
    return s.message


def answer(
    c: Client6, msg_type: int = p.REPLY, *, sid: bytes = SID, addr: A = ADDR, t1: int = 5, t2: int = 10,
    preferred: int = 15, valid: int = 20, rapid: bool = True, **kw: object,
) -> p.Message:  # fmt: skip
    assert c.exchange is not None
    ia = p.IANA(IAID, t1, t2, (p.IAAddress(addr, preferred, valid),))
    return p.Message(
        msg_type, c.exchange.xid, client_id=DUID, server_id=sid, ia_na=(ia,), rapid_commit=rapid,
        dns_servers=(A("fd00::53"),), **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def bound(now: float = 0.0) -> Client6:
    c = client()
    c.start(now)
    acts = c.receive(now + 0.1, answer(c), SERVER)
    assert isinstance(acts[0], Bound) and c.state == State.BOUND
    return c


def test_table_rows() -> None:
    """Every (state, event) the module docstring lists has a handler, and nothing else does."""
    rows = {(s.value, e.value) for s, e in m.TRANSITIONS}
    assert ("init", "start") in rows and ("bound", "timer") in rows and ("rebinding", "lease end") in rows
    assert ("bound", "reply") not in rows and ("init", "timer") not in rows


def test_solicit_contents_and_retransmission() -> None:
    c = client()
    msg = sent(c.start(0.0))
    assert c.state == State.SOLICITING
    assert msg.msg_type == p.SOLICIT and msg.rapid_commit and msg.elapsed == 0 and msg.client_id == DUID
    assert msg.ia_na == (p.IANA(IAID),) and msg.oro == m.ORO and msg.server_id is None
    # RFC 8415 §15/§18.2.1: first RT in (IRT, 1.1·IRT], then 2·RT ± 10 %, up to SOL_MAX_RT ± 10 %
    times, now = [0.0], 0.0
    for _ in range(16):
        now = c.deadline  # type: ignore[assignment]
        again = sent(c.timer(now))
        assert again.xid == msg.xid and again.elapsed == min(0xFFFF, round(now * 100))
        times.append(now)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 1.0 < gaps[0] <= 1.1
    for prev, gap in itertools.pairwise(gaps):
        assert gap == pytest.approx(min(2 * prev, m.SOL_MAX_RT), rel=0.11) or 3240 <= gap <= 3960
    assert 3240 <= gaps[-1] <= 3960
    assert c.timer(now + 1) == []  # early wake-up: nothing


def test_rapid_commit_reply_binds() -> None:
    c = client()
    c.start(100.0)
    (b,) = c.receive(100.5, answer(c), SERVER)
    assert isinstance(b, Bound)
    lease = b.lease
    assert (lease.address, lease.valid, lease.preferred, lease.t1, lease.t2) == (ADDR, 20, 15, 5, 10)
    assert lease.server == SERVER and lease.server_id == SID and lease.dns_servers == (A("fd00::53"),)
    assert c.deadline == 105.5 and c.exchange is None


def test_reply_without_rapid_commit_to_solicit_is_dropped() -> None:
    c = client()
    c.start(0.0)
    assert c.receive(0.1, answer(c, rapid=False)) == []
    assert c.state == State.SOLICITING and c.dropped["reply without rapid commit"] == 1


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"xid": 1}, "transaction id"),
        ({"client_id": SID}, "client id"),
        ({"server_id": None}, "no server id"),
        ({"msg_type": p.RENEW}, "message type"),
    ],
)
def test_foreign_messages_dropped(change: dict[str, object], reason: str) -> None:
    c = client()
    c.start(0.0)
    msg = p.replace(answer(c), **change)
    if msg.xid == c.exchange.xid and "xid" in change:  # type: ignore[union-attr]
        msg = p.replace(msg, xid=2)
    assert c.receive(0.1, msg) == [] and c.dropped[reason] == 1 and c.state == State.SOLICITING


def test_advertises_of_the_first_rt_best_preference_wins() -> None:
    c = client()
    c.start(0.0)
    assert c.receive(0.1, answer(c, p.ADVERTISE, sid=SID, preference=5)) == []
    assert c.receive(0.2, answer(c, p.ADVERTISE, sid=SID2, addr=A("fd00::200"), preference=9)) == []
    req = sent(c.timer(c.deadline))  # type: ignore[arg-type]
    assert c.state == State.REQUESTING and req.msg_type == p.REQUEST and req.server_id == SID2
    assert req.ia_na[0].addresses[0].address == A("fd00::200") and not req.rapid_commit
    # the REPLY must come from that server
    assert c.receive(1.5, answer(c, sid=SID)) == [] and c.dropped["server id"] == 1
    assert isinstance(c.receive(1.6, answer(c, sid=SID2, addr=A("fd00::200")))[0], Bound)


def test_advertise_preference_255_or_after_first_rt_is_taken_at_once() -> None:
    c = client()
    c.start(0.0)
    assert sent(c.receive(0.1, answer(c, p.ADVERTISE, preference=255))).msg_type == p.REQUEST
    c = client()
    c.start(0.0)
    c.timer(c.deadline)  # type: ignore[arg-type]  # first RT over: SOLICIT again
    assert sent(c.receive(1.5, answer(c, p.ADVERTISE))).msg_type == p.REQUEST


def test_advertise_without_address_ignored() -> None:
    c = client()
    c.start(0.0)
    ia = p.IANA(IAID, status=p.StatusCode(p.STATUS_NO_ADDRS_AVAIL))
    adv = p.Message(p.ADVERTISE, c.exchange.xid, client_id=DUID, server_id=SID, ia_na=(ia,))  # type: ignore[union-attr]
    assert c.receive(0.1, adv) == [] and not c.advertises


def test_request_gives_up_after_req_max_rc() -> None:
    c = client()
    c.start(0.0)
    c.receive(0.1, answer(c, p.ADVERTISE, preference=255))
    sends = 1
    while c.state == State.REQUESTING:
        acts = c.timer(c.deadline)  # type: ignore[arg-type]
        if c.state == State.REQUESTING:
            assert sent(acts).msg_type == p.REQUEST
            sends += 1
    assert sends == m.REQ_MAX_RC and c.state == State.SOLICITING and sent(acts).msg_type == p.SOLICIT


def test_renew_at_t1_rebind_at_t2_expire_at_lease_end() -> None:
    c = bound(0.0)
    old_xid = None
    renew = sent(c.timer(5.1))
    assert c.state == State.RENEWING and renew.msg_type == p.RENEW and renew.server_id == SID
    assert renew.ia_na[0].addresses[0].address == ADDR
    assert c.exchange is not None and c.exchange.destination == m.ALL_SERVERS
    # REN_TIMEOUT 10 s ± 10 % is past T2 (10.1): the next timer is T2 itself → REBIND
    assert c.deadline == pytest.approx(10.1)
    old_xid = renew.xid
    rebind = sent(c.timer(10.1))
    assert c.state == State.REBINDING and rebind.msg_type == p.REBIND and rebind.server_id is None
    assert rebind.xid != old_xid
    d = c.deadline
    assert d is not None and 10.1 + 9 <= d <= 20.1  # REB_TIMEOUT ± 10 %, at most the lease end
    if d < 20.1:
        assert sent(c.timer(d)).msg_type == p.REBIND and c.deadline == pytest.approx(20.1)
    acts = c.timer(20.1)
    assert isinstance(acts[0], Expired) and acts[0].lease.address == ADDR
    assert c.state == State.SOLICITING and c.lease is None and sent(acts).msg_type == p.SOLICIT
    assert sent(acts).ia_na[0].addresses[0].address == ADDR  # the old address asked for again


def test_renew_retransmission_and_reply() -> None:
    c = client()
    c.start(0.0)
    c.receive(0.0, answer(c, t1=100, t2=400, preferred=500, valid=600))
    c.timer(100.0)
    first = c.deadline
    assert first is not None and 109.0 <= first <= 111.0  # REN_TIMEOUT ± 10 %
    c.timer(first)
    assert c.deadline is not None and 1.8 * (first - 100) <= c.deadline - first <= 2.2 * (first - 100)
    (b,) = c.receive(first + 1, answer(c, t1=100, t2=400, preferred=500, valid=600))
    assert isinstance(b, Bound) and c.state == State.BOUND and c.deadline == pytest.approx(first + 101)


def test_server_unicast_option_used_for_renew() -> None:
    c = client()
    c.start(0.0)
    c.receive(0.1, answer(c, unicast=A("fd00::1")))
    c.timer(5.1)
    assert c.exchange is not None and c.exchange.destination == A("fd00::1")
    # UseMulticast: send again, multicast
    use_mc = p.replace(answer(c), status=p.StatusCode(p.STATUS_USE_MULTICAST), ia_na=())
    (s,) = c.receive(5.2, use_mc)
    assert isinstance(s, Send) and s.destination == m.ALL_SERVERS and c.state == State.RENEWING


def test_no_binding_on_renew_solicits_and_old_lease_runs_out() -> None:
    c = bound(0.0)
    c.timer(5.1)
    ia = p.IANA(IAID, status=p.StatusCode(p.STATUS_NO_BINDING))
    msg = p.replace(answer(c), ia_na=(ia,))
    assert sent(c.receive(5.2, msg)).msg_type == p.SOLICIT and c.lease is not None
    acts = c.timer(20.1)
    assert [type(a) for a in acts] == [Expired] and c.state == State.SOLICITING


def test_address_withdrawn_by_the_server() -> None:
    c = bound(0.0)
    c.timer(5.1)
    acts = c.receive(5.2, answer(c, preferred=0, valid=0))
    assert isinstance(acts[0], Expired) and c.lease is None and c.state == State.SOLICITING


def test_t1_t2_chosen_by_client_and_checked() -> None:
    c = client()
    c.start(0.0)
    (b,) = c.receive(0.0, answer(c, t1=0, t2=0, preferred=100, valid=200))
    assert isinstance(b, Bound) and (b.lease.t1, b.lease.t2) == (50, 80)  # §21.4: 0.5/0.8 of preferred
    c = client()
    c.start(0.0)
    assert c.receive(0.0, answer(c, t1=20, t2=10)) == [] and c.dropped["T1 > T2"] == 1
    c = client()
    c.start(0.0)
    inf = p.INFINITY
    (b,) = c.receive(0.0, answer(c, t1=inf, t2=inf, preferred=inf, valid=inf))
    assert isinstance(b, Bound) and b.lease.valid == math.inf and c.deadline is None
    c = client()
    c.start(0.0)
    (b,) = c.receive(0.0, answer(c, t1=1, t2=2, preferred=0, valid=30))
    assert isinstance(b, Bound) and b.lease.t1 == 5.0  # floor: no RENEW storm


def test_start_with_saved_lease_rebinds() -> None:
    lease = m.Lease(ADDR, 15, 20, 5, 10, obtained=-3.0, server_id=SID)
    c = client()
    msg = sent(c.start(0.0, lease))
    assert (
        c.state == State.REBINDING and msg.msg_type == p.REBIND and msg.ia_na[0].addresses[0].address == ADDR
    )
    assert c.lease == lease and c.deadline is not None and c.deadline <= 17.0
    expired = m.Lease(ADDR, 15, 20, 5, 10, obtained=-30.0, server_id=SID)
    c = client()
    assert sent(c.start(0.0, expired)).msg_type == p.SOLICIT and c.lease is None


def test_events_without_a_row_are_counted() -> None:
    c = bound(0.0)
    assert c.receive(1.0, p.Message(p.REPLY, 5, client_id=DUID, server_id=SID)) == []
    assert c.dropped["transaction id"] == 1
    assert c._dispatch(Event.ADVERTISE, 1.0, None) == [] and c.dropped["advertise in bound"] == 1
