"""The DHCPv4 state machine (operators/dhcp4/machine.py), driven by a fake clock, row by row;
and the lease → specs mapping (operators.md §2.9 with §0)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import pytest

from netd.resources.enums import ConfigLayer, Scope
from operators.dhcp4 import options as o
from operators.dhcp4.lease import Lease, hostname_spec, lease_output
from operators.dhcp4.machine import (
    REBOOT_TRIES,
    REQUEST_TRIES,
    TRANSITIONS,
    Bind,
    Event,
    Machine,
    Send,
    State,
    Unbind,
)
from operators.dhcp4.packet import BOOTREPLY, Message, MessageType, decode, encode

MAC = bytes.fromhex("020000000001")
A = ipaddress.IPv4Address
SERVER = A("10.0.0.1")


def machine() -> Machine:
    xids = iter(range(100, 200))
    return Machine(mac=MAC, rand=lambda a, b: 0.0, new_xid=lambda: next(xids))


def reply(m: Machine, t: MessageType, ip: str = "10.0.0.50", server: A = SERVER, **opts: bytes) -> Message:
    options = {
        o.MESSAGE_TYPE: bytes((t,)),
        o.SERVER_ID: server.packed,
        o.SUBNET_MASK: A("255.255.255.0").packed,
        o.LEASE_TIME: (100).to_bytes(4, "big"),
    }
    options.update({int(k[1:]): v for k, v in opts.items()})
    return Message(op=BOOTREPLY, xid=m.xid, chaddr=MAC, yiaddr=A(ip), options=options)


def sends(actions: list[object]) -> list[Send]:
    return [a for a in actions if isinstance(a, Send)]


def bound(now: float = 0.0) -> Machine:
    m = machine()
    m.start(now)
    m.receive(reply(m, MessageType.OFFER), now)
    m.receive(reply(m, MessageType.ACK), now)
    assert m.state is State.BOUND
    return m


def test_table_covers_every_state() -> None:
    states = {s for s, _ in TRANSITIONS}
    assert states == set(State)
    for (_, ev), (step, nxt) in TRANSITIONS.items():
        assert hasattr(Machine, f"_step_{step}"), step
        assert isinstance(ev, Event) and isinstance(nxt, State)


def test_dora() -> None:
    m = machine()
    (s,) = sends(m.start(0.0))
    assert m.state is State.SELECTING and s.message.type is MessageType.DISCOVER and s.unicast is None
    assert o.REQUESTED_ADDRESS not in s.message.options  # no last address yet
    (r,) = sends(m.receive(reply(m, MessageType.OFFER), 1.0))
    assert m.state is State.REQUESTING and r.message.type is MessageType.REQUEST
    assert r.message.options[o.REQUESTED_ADDRESS] == A("10.0.0.50").packed
    assert r.message.options[o.SERVER_ID] == SERVER.packed and r.message.xid == s.message.xid
    acts = m.receive(reply(m, MessageType.ACK), 2.0)
    (b,) = acts
    assert isinstance(b, Bind) and m.state is State.BOUND
    assert b.lease.obtained == 1.0  # when the REQUEST went out (RFC 2131 §4.4.1)
    assert (b.lease.t1, b.lease.t2) == (50.0, 87.5)  # defaults 0.5 / 0.875 of 100 s


def test_retransmission_rfc2131_4_1() -> None:
    m = machine()
    m.start(0.0)
    at = []
    now = 0.0
    for _ in range(7):
        nxt = m.next_deadline()
        assert nxt is not None
        at.append(nxt - now)
        now = nxt
        (s,) = sends(m.tick(now))
        assert s.message.xid == 100  # same packet
    assert at == [4, 8, 16, 32, 64, 64, 64]


def test_request_gives_up_then_init() -> None:
    m = machine()
    m.start(0.0)
    m.receive(reply(m, MessageType.OFFER), 0.0)
    n = 1
    while m.state is State.REQUESTING:
        d = m.next_deadline()
        assert d is not None
        acts = m.tick(d)
        n += 1
    assert n == REQUEST_TRIES + 1
    assert m.state is State.SELECTING and sends(acts)[0].message.type is MessageType.DISCOVER


def test_renew_unicast_to_server_id_then_rebind_broadcast_then_expire() -> None:
    m = bound(0.0)
    lease = m.lease
    assert lease is not None
    assert m.next_deadline() == 50.0
    (s,) = sends(m.tick(50.0))
    assert m.state is State.RENEWING
    assert s.unicast == SERVER and s.from_lease and s.message.ciaddr == A("10.0.0.50")
    assert o.REQUESTED_ADDRESS not in s.message.options and o.SERVER_ID not in s.message.options
    assert m.next_deadline() == 87.5  # half of 37.5 s left is < 60 s: T2 comes first
    (r,) = sends(m.tick(87.5))
    assert m.state is State.REBINDING and r.unicast is None and r.from_lease
    assert r.message.ciaddr == A("10.0.0.50")
    assert m.next_deadline() == 100.0
    acts = m.tick(100.0)
    assert isinstance(acts[0], Unbind) and m.state is State.SELECTING
    d = sends(acts)[0].message
    assert d.type is MessageType.DISCOVER and d.options[o.REQUESTED_ADDRESS] == A("10.0.0.50").packed  # §0


def test_renew_ack_rebinds_times() -> None:
    m = bound(0.0)
    m.tick(50.0)
    (b,) = m.receive(
        reply(m, MessageType.ACK, _58=(20).to_bytes(4, "big"), _59=(30).to_bytes(4, "big")), 51.0
    )
    assert isinstance(b, Bind) and m.state is State.BOUND
    assert b.lease.renew_at == 70.0 and b.lease.rebind_at == 80.0 and b.lease.expires == 150.0


@pytest.mark.parametrize("state", [State.REQUESTING, State.RENEWING, State.REBINDING])
def test_nak_back_to_init(state: State) -> None:
    m = machine()
    m.start(0.0)
    m.receive(reply(m, MessageType.OFFER), 0.0)
    if state is not State.REQUESTING:
        m.receive(reply(m, MessageType.ACK), 0.0)
        m.tick(50.0)
        if state is State.REBINDING:
            m.tick(87.5)
    assert m.state is state
    acts = m.receive(reply(m, MessageType.NAK), 90.0)
    assert isinstance(acts[0], Unbind) and m.lease is None
    assert m.state is State.SELECTING and sends(acts)[0].message.type is MessageType.DISCOVER


def test_init_reboot_publishes_stored_lease_first() -> None:
    m0 = bound(0.0)
    stored = m0.lease
    m = machine()
    acts = m.start(10.0, stored)
    assert isinstance(acts[0], Bind) and acts[0].lease is stored
    (s,) = sends(acts)
    assert m.state is State.REBOOTING and s.message.type is MessageType.REQUEST and s.unicast is None
    assert s.message.options[o.REQUESTED_ADDRESS] == A("10.0.0.50").packed
    assert o.SERVER_ID not in s.message.options and s.message.ciaddr == A(0)
    (b,) = m.receive(reply(m, MessageType.ACK), 11.0)
    assert isinstance(b, Bind) and m.state is State.BOUND


def test_init_reboot_no_answer_keeps_lease_until_expiry() -> None:
    stored = bound(0.0).lease
    m = machine()
    m.start(10.0, stored)
    for _ in range(REBOOT_TRIES):
        d = m.next_deadline()
        assert d is not None
        acts = m.tick(d)
    assert m.state is State.SELECTING and not any(isinstance(a, Unbind) for a in acts)
    assert m.lease is stored
    acts = []
    while m.lease is not None:
        d = m.next_deadline()
        assert d is not None
        acts += m.tick(d)
    assert any(isinstance(a, Unbind) for a in acts) and d == 100.0


def test_expired_stored_lease_is_init() -> None:
    stored = bound(0.0).lease
    m = machine()
    (s,) = sends(m.start(200.0, stored))
    assert m.state is State.SELECTING and s.message.type is MessageType.DISCOVER
    assert s.message.options[o.REQUESTED_ADDRESS] == A("10.0.0.50").packed


def test_hostile_replies_dropped_and_counted() -> None:
    m = machine()
    m.start(0.0)
    good = reply(m, MessageType.OFFER)
    bad = [
        Message(op=1, xid=m.xid, chaddr=MAC, options=good.options),
        Message(op=BOOTREPLY, xid=m.xid + 1, chaddr=MAC, yiaddr=A("10.0.0.66"), options=good.options),
        Message(op=BOOTREPLY, xid=m.xid, chaddr=bytes(6), yiaddr=A("10.0.0.66"), options=good.options),
        Message(op=BOOTREPLY, xid=m.xid, chaddr=MAC, yiaddr=A(0), options=good.options),
        Message(
            op=BOOTREPLY, xid=m.xid, chaddr=MAC, yiaddr=A("10.0.0.66"), options={o.MESSAGE_TYPE: b"\x02"}
        ),
        reply(m, MessageType.ACK),  # an ACK while selecting
    ]
    for b in bad:
        assert m.receive(b, 0.5) == []
    assert m.state is State.SELECTING
    assert m.dropped == {
        "not a reply": 1,
        "wrong xid": 1,
        "wrong chaddr": 1,
        "bad yiaddr": 1,
        "offer without server id": 1,
        "ack while selecting": 1,
    }
    assert sends(m.receive(good, 1.0))
    # an ACK from another server than the one we requested from
    assert m.receive(reply(m, MessageType.ACK, server=A("10.0.0.9")), 1.0) == []
    assert m.state is State.REQUESTING


# ---- lease → specs -----------------------------------------------------------------------------


def lease_of(**opts: bytes) -> Lease:
    options = {o.MESSAGE_TYPE: b"\x05", o.SERVER_ID: SERVER.packed, o.LEASE_TIME: (600).to_bytes(4, "big")}
    options.update({int(k[1:]): v for k, v in opts.items()})
    ack = Message(op=BOOTREPLY, xid=1, chaddr=MAC, yiaddr=A("10.0.0.50"), options=options)
    return Lease.from_ack(ack, 1_700_000_000.0, 1800.0)


def test_mapping_2_9_example() -> None:
    lease = lease_of(
        _1=A("255.255.255.0").packed,
        _3=A("10.0.0.1").packed,
        _6=A("10.0.0.1").packed,
        _42=A("10.0.0.2").packed,
        _26=(1400).to_bytes(2, "big"),
        _12=b"n1",
        _15=b"lab.test",
    )
    out = lease_output(lease, "eth0", 1024, hostname_spec(lease.ack))
    (aid,) = out.addresses
    assert aid == "eth0/10.0.0.50/24"
    addr = out.addresses[aid]
    assert addr.layer is ConfigLayer.OPERATOR and addr.valid_until == dt.datetime.fromtimestamp(
        1_700_000_600, dt.UTC
    )
    assert list(out.routes) == ["inet4/10.0.0.1//1024"]
    r = out.routes["inet4/10.0.0.1//1024"]
    assert r.src == A("10.0.0.50") and r.scope is Scope.GLOBAL and r.priority == 1024
    assert out.links["eth0"].mtu == 1400
    assert [str(a) for a in out.resolvers["resolvers"].dns_servers] == ["10.0.0.1"]
    assert out.timeservers["timeservers"].time_servers == ["10.0.0.2"]
    h = out.hostnames["hostname"]
    assert (h.hostname, h.domainname) == ("n1", "lab.test")


def test_classless_routes_win_over_routers() -> None:
    raw = o.encode_classless_routes(
        [
            o.ClasslessRoute(ipaddress.IPv4Network("0.0.0.0/0"), A("10.0.0.1")),
            o.ClasslessRoute(ipaddress.IPv4Network("192.168.100.0/24"), A("10.0.0.254")),
        ]
    )
    out = lease_output(
        lease_of(_1=A("255.255.255.0").packed, _3=A("10.0.0.2").packed, _121=raw), "eth0", 1024, None
    )
    assert sorted(out.routes) == ["inet4/10.0.0.1//1024", "inet4/10.0.0.254/192.168.100.0/24/1024"]
    # malformed 121 (mask 33) counts as absent: option 3
    out = lease_output(
        lease_of(_1=A("255.255.255.0").packed, _3=A("10.0.0.2").packed, _121=bytes([33]) + bytes(8)),
        "eth0",
        1024,
        None,
    )
    assert list(out.routes) == ["inet4/10.0.0.2//1024"]


def test_slash32_offlink_router() -> None:
    out = lease_output(lease_of(_1=A("255.255.255.255").packed, _3=A("10.0.0.1").packed), "eth0", 1024, None)
    assert set(out.routes) == {"inet4/10.0.0.1//1024", "inet4//10.0.0.1/32/1024"}
    assert out.routes["inet4//10.0.0.1/32/1024"].scope is Scope.LINK


def test_hostname_rules() -> None:
    assert hostname_spec(lease_of(_12=b"a.b.c\x00\x00").ack).model_dump(
        include={"hostname", "domainname"}
    ) == {  # type: ignore[union-attr]
        "hostname": "a",
        "domainname": "b.c",
    }
    assert hostname_spec(lease_of(_12=b"x" * 64).ack) is None
    assert hostname_spec(lease_of().ack) is None


def test_missing_mask_is_classful() -> None:
    assert str(lease_of().prefix()) == "10.0.0.50/8"


def test_lease_file_round_trip(tmp_path: Path) -> None:
    lease = lease_of(_1=A("255.255.255.0").packed)
    lease.save(tmp_path)
    back = Lease.load(tmp_path, 1800.0)
    assert back is not None and back.ack == decode(encode(lease.ack)) and back.obtained == lease.obtained
    (tmp_path / "lease.json").write_text("{garbage")
    assert Lease.load(tmp_path, 1800.0) is None
    Lease.forget(tmp_path)
    assert Lease.load(tmp_path, 1800.0) is None
