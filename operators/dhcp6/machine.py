"""The DHCPv6 client state machine (RFC 8415 §18.2, operators.md §0 and §3): pure, no I/O.

It is driven by three calls, each taking the current time ``now`` (seconds on a monotonic clock)
and returning the actions the operator must carry out (:class:`Send`, :class:`Bound`,
:class:`Expired`):

- :meth:`Client6.start` once (with the lease saved by an earlier run, if any);
- :meth:`Client6.receive` for each decoded message from the link;
- :meth:`Client6.timer` when :attr:`Client6.deadline` has come.

The transitions are the table :data:`TRANSITIONS`, (state, event) → handler; an event that has
no row in the table is dropped and counted. Each handler's docstring is one line of the table::

    state       event      → next state (what is sent)
    init        start      → soliciting (SOLICIT + Rapid Commit) | rebinding (REBIND, saved lease)
    soliciting  advertise  → requesting (REQUEST) if preference 255 or the first RT is over,
                              else soliciting (kept: the best of the first RT wins)
    soliciting  reply      → bound, if it carries Rapid Commit and an address
    soliciting  timer      → requesting (best ADVERTISE) | soliciting (SOLICIT again)
    requesting  reply      → bound | soliciting (NoAddrsAvail, NotOnLink, no address)
    requesting  timer      → requesting (REQUEST again) | soliciting after REQ_MAX_RC sends
    bound       timer (T1) → renewing (RENEW, Server ID, multicast unless Server Unicast)
    renewing    reply      → bound | soliciting (NoBinding)
    renewing    timer      → renewing (RENEW again) | rebinding at T2 (REBIND, multicast)
    rebinding   reply      → bound | soliciting (NoBinding)
    rebinding   timer      → rebinding (REBIND again)
    any         lease end  → the address is withdrawn (Expired); bound/renewing/rebinding →
                              soliciting

Retransmission follows RFC 8415 §15 with the §7.6 parameters below: RT = IRT ± RAND, then
2·RT ± RAND up to MRT (± RAND), stopped by MRC sends or MRD seconds; RENEW's MRD ends at T2,
REBIND's at the end of the valid lifetime; SOLICIT's first RT is strictly above IRT.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from ipaddress import IPv6Address

from . import packet as p

# ---- RFC 8415 §7.6 transmission and retransmission parameters (seconds) ----------------------------
SOL_TIMEOUT = 1.0
SOL_MAX_RT = 3600.0
REQ_TIMEOUT = 1.0
REQ_MAX_RT = 30.0
REQ_MAX_RC = 10
REN_TIMEOUT = 10.0
REN_MAX_RT = 600.0
REB_TIMEOUT = 10.0
REB_MAX_RT = 600.0
RAND = 0.1  # RT jitter: ±10 % (§15)
# Not applied: SOL_MAX_DELAY (§18.2.1, a SHOULD for Solicits set off by Neighbor Discovery, to
# spread many clients): a node starts one client per link and boot time counts.

#: T1/T2 the client picks when the server sends 0 (§21.4: 0.5 and 0.8 times the preferred lifetime).
T1_RATIO = 0.5
T2_RATIO = 0.8

#: All_DHCP_Relay_Agents_and_Servers (§7.1).
ALL_SERVERS = IPv6Address("ff02::1:2")
#: Options requested (ORO, §21.7): DNS servers and search list (RFC 3646, as the reference), NTP
#: (RFC 5908) and SNTP (RFC 4075), which servers send only when asked.
ORO = (p.OPT_DNS_SERVERS, p.OPT_DOMAIN_LIST, p.OPT_NTP_SERVER, p.OPT_SNTP_SERVERS)


class State(StrEnum):
    INIT = "init"
    SOLICITING = "soliciting"
    REQUESTING = "requesting"
    BOUND = "bound"
    RENEWING = "renewing"
    REBINDING = "rebinding"


class Event(StrEnum):
    START = "start"
    ADVERTISE = "advertise"
    REPLY = "reply"
    TIMER = "timer"
    LEASE_END = "lease end"


@dataclass(frozen=True)
class Lease:
    """One bound IA_NA address and the configuration that came with it. Times are seconds on
    the machine's clock; lifetimes and T1/T2 are ``math.inf`` when infinite."""

    address: IPv6Address
    preferred: float
    valid: float
    t1: float
    t2: float
    obtained: float
    server_id: bytes
    server: IPv6Address | None = None  # the source of the REPLY
    unicast: IPv6Address | None = None  # Server Unicast option (§21.12)
    dns_servers: tuple[IPv6Address, ...] = ()
    domains: tuple[str, ...] = ()
    ntp_servers: tuple[str, ...] = ()
    fqdn: str = ""

    @property
    def t1_at(self) -> float:
        return self.obtained + self.t1

    @property
    def t2_at(self) -> float:
        return self.obtained + self.t2

    @property
    def preferred_at(self) -> float:
        return self.obtained + self.preferred

    @property
    def valid_at(self) -> float:
        return self.obtained + self.valid


@dataclass(frozen=True)
class Send:
    message: p.Message
    destination: IPv6Address


@dataclass(frozen=True)
class Bound:
    lease: Lease


@dataclass(frozen=True)
class Expired:
    lease: Lease


Action = Send | Bound | Expired


@dataclass(frozen=True)
class Retransmission:
    """§15 parameters of one message kind."""

    irt: float
    mrt: float
    mrc: int = 0  # 0: no limit on sends


#: Per message type, as §7.6 has them (MRD is per exchange: RENEW until T2, REBIND until lease end).
RETRANSMISSION = {
    p.SOLICIT: Retransmission(SOL_TIMEOUT, SOL_MAX_RT),
    p.REQUEST: Retransmission(REQ_TIMEOUT, REQ_MAX_RT, REQ_MAX_RC),
    p.RENEW: Retransmission(REN_TIMEOUT, REN_MAX_RT),
    p.REBIND: Retransmission(REB_TIMEOUT, REB_MAX_RT),
}


def first_rt(r: Retransmission, rand: float, *, solicit: bool = False) -> float:
    """RT of the first send (§15): IRT + RAND·IRT; for SOLICIT RAND is positive (§18.2.1)."""
    return r.irt + (abs(rand) if solicit else rand) * r.irt


def next_rt(r: Retransmission, prev: float, rand: float) -> float:
    """RT after ``prev`` (§15): 2·RTprev + RAND·RTprev, or MRT + RAND·MRT once above MRT."""
    rt = 2 * prev + rand * prev
    if r.mrt and rt > r.mrt:
        rt = r.mrt + rand * r.mrt
    return rt


@dataclass
class Exchange:
    """One message being (re)transmitted until answered: same transaction id throughout."""

    message: p.Message  # without Elapsed Time (filled in per send)
    destination: IPv6Address
    params: Retransmission
    started: float
    end: float = math.inf  # MRD
    sent: int = 0
    rt: float = 0.0
    next_at: float = math.inf

    @property
    def xid(self) -> int:
        return self.message.xid


def _seconds(v: int) -> float:
    return math.inf if v == p.INFINITY else float(v)


@dataclass
class Client6:
    """One IA_NA client on one link."""

    duid: bytes
    iaid: int
    rng: random.Random = field(default_factory=random.Random)
    oro: tuple[int, ...] = ORO
    state: State = State.INIT
    lease: Lease | None = None
    exchange: Exchange | None = None
    advertises: list[tuple[int, int, p.Message, IPv6Address | None]] = field(default_factory=list)
    hint: IPv6Address | None = None  # last address, asked for again in SOLICIT (§18.2.1 MAY)
    min_t1: float = 5.0  # DHCP_MIN_INTERVAL: the earliest RENEW after a REPLY
    dropped: Counter[str] = field(default_factory=Counter)  # messages/events dropped, by reason
    last_drop: str = ""

    # ---- the three entry points ------------------------------------------------------------------

    def start(self, now: float, lease: Lease | None = None) -> list[Action]:
        return self._dispatch(Event.START, now, lease)

    def receive(self, now: float, msg: p.Message, source: IPv6Address | None = None) -> list[Action]:
        """A decoded message from the link; anything not for us is dropped and counted."""
        reason = self._reject(msg)
        if reason:
            self._count(reason)
            return []
        event = Event.ADVERTISE if msg.msg_type == p.ADVERTISE else Event.REPLY
        return self._dispatch(event, now, (msg, source))

    def timer(self, now: float) -> list[Action]:
        if self.lease is not None and now >= self.lease.valid_at:
            return self._dispatch(Event.LEASE_END, now, None)
        due = self.deadline
        if due is None or now < due:
            return []
        return self._dispatch(Event.TIMER, now, None)

    @property
    def deadline(self) -> float | None:
        """When :meth:`timer` has something to do (None: nothing until a message comes)."""
        times = [self.exchange.next_at] if self.exchange is not None else []
        if self.lease is not None:
            times.append(self.lease.valid_at)
            if self.state == State.BOUND:
                times.append(self.lease.t1_at)
        finite = [t for t in times if t != math.inf]
        return min(finite) if finite else None

    def _count(self, reason: str) -> None:
        self.dropped[reason] += 1
        self.last_drop = reason

    def _dispatch(self, event: Event, now: float, arg: object) -> list[Action]:
        handler = TRANSITIONS.get((self.state, event))
        if handler is None:
            self._count(f"{event.value} in {self.state.value}")
            return []
        return handler(self, now, arg)

    # ---- checks common to every received message (§16) -----------------------------------------

    def _reject(self, msg: p.Message) -> str | None:
        if msg.msg_type not in (p.ADVERTISE, p.REPLY):
            return "message type"
        if self.exchange is None or msg.xid != self.exchange.xid:
            return "transaction id"
        if msg.client_id != self.duid:
            return "client id"
        if msg.server_id is None:
            return "no server id"
        sent_to = self.exchange.message.server_id
        if sent_to is not None and msg.server_id != sent_to:  # REQUEST and RENEW name their server
            return "server id"
        return None

    # ---- sending ------------------------------------------------------------------------------

    def _rand(self) -> float:
        return self.rng.uniform(-RAND, RAND)

    def _ia(self, address: IPv6Address | None) -> tuple[p.IANA, ...]:
        addrs = (p.IAAddress(address, 0, 0),) if address is not None else ()
        return (p.IANA(self.iaid, 0, 0, addrs),)

    def _begin(
        self, now: float, state: State, msg_type: int, destination: IPv6Address = ALL_SERVERS,
        *, server_id: bytes | None = None, address: IPv6Address | None = None, end: float = math.inf,
    ) -> list[Action]:  # fmt: skip
        """Enter ``state`` and send the first message of a new exchange (new transaction id)."""
        msg = p.Message(
            msg_type, self.rng.getrandbits(24), client_id=self.duid, server_id=server_id,
            ia_na=self._ia(address), oro=self.oro, rapid_commit=msg_type == p.SOLICIT,
        )  # fmt: skip
        params = RETRANSMISSION[msg_type]
        self.state = state
        self.exchange = ex = Exchange(msg, destination, params, now, end)
        ex.rt = first_rt(params, self._rand(), solicit=msg_type == p.SOLICIT)
        return [self._send(now)]

    def _send(self, now: float) -> Send:
        ex = self.exchange
        assert ex is not None
        ex.sent += 1
        ex.next_at = min(now + ex.rt, ex.end)
        elapsed = min(0xFFFF, round((now - ex.started) * 100)) if ex.sent > 1 else 0  # §21.9
        return Send(replace(ex.message, elapsed=elapsed), ex.destination)

    def _solicit(self, now: float, _arg: object = None) -> list[Action]:
        self.advertises.clear()
        return self._begin(now, State.SOLICITING, p.SOLICIT, address=self.hint)

    def _request(self, now: float, adv: p.Message) -> list[Action]:
        ia = adv.ia(self.iaid)
        offered = _usable(ia) if ia is not None else None
        address = offered.address if offered is not None else None
        self.advertises.clear()
        return self._begin(now, State.REQUESTING, p.REQUEST, server_id=adv.server_id, address=address)

    def _rebind(self, now: float, _arg: object = None) -> list[Action]:
        lease = self.lease
        assert lease is not None
        return self._begin(now, State.REBINDING, p.REBIND, address=lease.address, end=lease.valid_at)

    def _expire(self, now: float, _arg: object = None) -> list[Action]:
        """any, lease end → Expired; bound/renewing/rebinding → soliciting."""
        lease = self.lease
        assert lease is not None
        self.lease = None
        actions: list[Action] = [Expired(lease)]
        if self.state in (State.BOUND, State.RENEWING, State.REBINDING):
            actions += self._solicit(now)
        return actions

    # ---- the handlers of TRANSITIONS ------------------------------------------------------------

    def _on_start(self, now: float, lease: object) -> list[Action]:
        """init, start → soliciting; with a saved lease still valid → rebinding (§18.2.12: a
        client that may have moved links and has leases confirms them with a Rebind)."""
        if isinstance(lease, Lease) and now < lease.valid_at:
            self.lease, self.hint = lease, lease.address
            return self._rebind(now)
        return self._solicit(now)

    def _on_advertise(self, now: float, arg: object) -> list[Action]:
        """soliciting, advertise → requesting at once for preference 255 or after the first RT
        (§18.2.1); else kept, the best one of the first RT is requested at its end."""
        msg, source = _received(arg)
        ia = msg.ia(self.iaid)
        if _failed(msg.status) or ia is None or _usable(ia) is None:
            self._count("advertise without address")  # §18.2.9: MUST ignore it
            return []
        pref = msg.preference or 0
        ex = self.exchange
        assert ex is not None
        if pref == 255 or ex.sent > 1:
            return self._request(now, msg)
        self.advertises.append((pref, -len(self.advertises), msg, source))
        return []

    def _on_solicit_timer(self, now: float, _arg: object) -> list[Action]:
        """soliciting, timer → requesting (the best ADVERTISE) | SOLICIT again."""
        if self.advertises:
            best = max(self.advertises, key=lambda a: (a[0], a[1]))
            return self._request(now, best[2])
        return self._retransmit(now, None)

    def _on_rapid_reply(self, now: float, arg: object) -> list[Action]:
        """soliciting, reply → bound if it has Rapid Commit (§18.2.1) and an address."""
        msg, _source = _received(arg)
        if not msg.rapid_commit:
            self._count("reply without rapid commit")
            return []
        return self._on_reply(now, arg)

    def _on_reply(self, now: float, arg: object) -> list[Action]:
        """requesting/renewing/rebinding, reply → bound | soliciting (§18.2.10)."""
        msg, source = _received(arg)
        status = msg.status.code if msg.status is not None else p.STATUS_SUCCESS
        if status == p.STATUS_USE_MULTICAST and self.exchange is not None:
            if self.lease is not None:
                self.lease = replace(self.lease, unicast=None)
            self.exchange.destination = ALL_SERVERS  # §18.2.10: send again, multicast
            return [self._send(now)]
        if status == p.STATUS_NOT_ON_LINK and self.state == State.REQUESTING:
            return self._solicit(now)
        if status != p.STATUS_SUCCESS:
            self._count("reply status")  # UnspecFail and the like: retransmit (§18.2.10)
            return []
        ia = msg.ia(self.iaid)
        ia_status = ia.status.code if ia is not None and ia.status is not None else p.STATUS_SUCCESS
        if ia is None or ia_status != p.STATUS_SUCCESS:
            if self.state == State.SOLICITING:
                self._count("reply without address")
                return []
            if ia_status in (p.STATUS_NO_ADDRS_AVAIL, p.STATUS_NO_BINDING, p.STATUS_NOT_ON_LINK) or (
                ia is None and self.state == State.REQUESTING
            ):
                return self._solicit(now)  # the old lease, if any, runs out on its own
            self._count("reply status")
            return []
        if ia.t2 and ia.t1 > ia.t2:
            self._count("T1 > T2")  # §21.4: discard the IA_NA
            return []
        addr = _usable(ia)
        if addr is None:
            gone = self.lease is not None and any(
                a.address == self.lease.address and a.valid == 0 for a in ia.addresses
            )
            if gone:  # the server withdrew our address (§18.2.10.1)
                actions = self._expire(now)  # bound/renewing/rebinding → soliciting
                return actions + self._solicit(now) if self.state == State.REQUESTING else actions
            if self.state in (State.SOLICITING, State.RENEWING, State.REBINDING):
                self._count("reply without address")
                return []
            return self._solicit(now)
        lease = _lease(msg, ia, addr, now, source, self.min_t1)
        self.lease, self.hint = lease, lease.address
        self.state, self.exchange = State.BOUND, None
        self.advertises.clear()
        return [Bound(lease)]

    def _on_t1(self, now: float, _arg: object) -> list[Action]:
        """bound, timer (T1) → renewing: RENEW to the server (§18.2.4), until T2."""
        lease = self.lease
        assert lease is not None
        dest = lease.unicast or ALL_SERVERS
        return self._begin(
            now, State.RENEWING, p.RENEW, dest, server_id=lease.server_id, address=lease.address,
            end=min(lease.t2_at, lease.valid_at),
        )  # fmt: skip

    def _retransmit(self, now: float, _arg: object) -> list[Action]:
        """requesting/renewing/rebinding, timer → send again, or the next step once MRC/MRD is
        spent (:data:`EXHAUSTED`)."""
        ex = self.exchange
        assert ex is not None
        if (ex.params.mrc and ex.sent >= ex.params.mrc) or now >= ex.end:
            return EXHAUSTED[self.state](self, now, None)
        ex.rt = next_rt(ex.params, ex.rt, self._rand())
        return [self._send(now)]


def _received(arg: object) -> tuple[p.Message, IPv6Address | None]:
    assert isinstance(arg, tuple)
    return arg[0], arg[1]


def _failed(status: p.StatusCode | None) -> bool:
    return status is not None and status.code != p.STATUS_SUCCESS


def _usable(ia: p.IANA) -> p.IAAddress | None:
    """The first address of the IA that can be used (§18.2.10.1: valid > 0, preferred ≤ valid)."""
    for a in ia.addresses:
        if a.valid > 0 and a.preferred <= a.valid and not _failed(a.status):
            return a
    return None


def _lease(
    msg: p.Message, ia: p.IANA, a: p.IAAddress, now: float, source: IPv6Address | None, min_t1: float
) -> Lease:
    preferred, valid = _seconds(a.preferred), _seconds(a.valid)
    # §21.4: T1/T2 of 0 leave the times to the client (0.5 / 0.8 times the preferred lifetime).
    t1 = _seconds(ia.t1) if ia.t1 else T1_RATIO * preferred
    t2 = _seconds(ia.t2) if ia.t2 else T2_RATIO * preferred
    if t1 < min_t1:  # a server's T1 of 1 s (or a preferred lifetime of 0) must not make a RENEW storm
        t1 = min(min_t1, valid / 2)
    ntp = [str(x) for s in msg.ntp_servers for x in s.addresses()]
    if not ntp and msg.sntp_servers:
        ntp = [str(x) for x in msg.sntp_servers]
    return Lease(
        address=a.address, preferred=preferred, valid=valid, t1=t1, t2=max(t1, t2), obtained=now,
        server_id=msg.server_id or b"", server=source, unicast=msg.unicast,
        dns_servers=msg.dns_servers or (), domains=msg.domains or (), ntp_servers=tuple(ntp),
        fqdn=msg.fqdn.name if msg.fqdn is not None else "",
    )  # fmt: skip


Handler = Callable[[Client6, float, object], list[Action]]

#: (state, event) → handler: the whole machine (the module docstring reads it as a table).
TRANSITIONS: dict[tuple[State, Event], Handler] = {
    (State.INIT, Event.START): Client6._on_start,
    (State.SOLICITING, Event.ADVERTISE): Client6._on_advertise,
    (State.SOLICITING, Event.REPLY): Client6._on_rapid_reply,
    (State.SOLICITING, Event.TIMER): Client6._on_solicit_timer,
    (State.REQUESTING, Event.REPLY): Client6._on_reply,
    (State.REQUESTING, Event.TIMER): Client6._retransmit,
    (State.BOUND, Event.TIMER): Client6._on_t1,
    (State.RENEWING, Event.REPLY): Client6._on_reply,
    (State.RENEWING, Event.TIMER): Client6._retransmit,
    (State.REBINDING, Event.REPLY): Client6._on_reply,
    (State.REBINDING, Event.TIMER): Client6._retransmit,
    **{(s, Event.LEASE_END): Client6._expire for s in State if s != State.INIT},
}

#: What follows an exchange that ran out of sends (MRC) or time (MRD).
EXHAUSTED: dict[State, Handler] = {
    State.REQUESTING: Client6._solicit,  # §18.2.2: REQ_MAX_RC reached → back to Solicit
    State.RENEWING: Client6._rebind,  # §18.2.4: T2 reached → Rebind
    State.REBINDING: Client6._expire,  # §18.2.5: lease end (normally caught as LEASE_END first)
}
