"""The RFC 2131 client state machine (figure 5, §3.1, §3.2, §4.1, §4.4), pure.

Driven by :meth:`Machine.start`, :meth:`Machine.receive` (a decoded reply) and
:meth:`Machine.tick` (the clock reached :meth:`Machine.next_deadline`); each returns the
:class:`Action` list the operator performs (send a message, bind a lease, drop it). Time is
whatever clock the caller passes (epoch seconds in the operator, plain numbers in tests), and
randomness comes from an injected function, so every row of :data:`TRANSITIONS` is testable alone.

Deliberate choices (operators.md §0 wins over the reference's behaviour):

* DISCOVER carries option 50 with the last address we had (RFC 2131 §4.4.1 MAY).
* RENEWING unicasts to the server identifier (option 54), never ``siaddr``; REBINDING broadcasts;
  both with ``ciaddr`` = the leased address and without options 50/54 (§4.3.2 table 4).
* Retransmission (§4.1): 4 s doubling to 64 s, ±1 s; in RENEWING/REBINDING half the time left
  until T2 / the lease end, at least 60 s (the T2/expiry timers cut the wait shorter).
* A REQUEST that gets no answer after :data:`REQUEST_TRIES` sends goes back to INIT (§3.1.5);
  INIT-REBOOT after :data:`REBOOT_TRIES`, keeping the stored lease until it expires (§3.2 MAY).
* A NAK, or the lease running out, drops the lease (Unbind) and starts over at INIT at once.
"""

from __future__ import annotations

import enum
import ipaddress
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from . import options as o
from .lease import Lease
from .packet import BOOTREPLY, Message, MessageType

#: RFC 2131 §4.1 retransmission: first wait, cap, randomisation.
RETRANSMIT_INITIAL = 4.0
RETRANSMIT_MAX = 64.0
RETRANSMIT_JITTER = 1.0
#: RFC 2131 §4.4.5: in RENEWING/REBINDING wait half the remaining time, but at least this.
RENEW_RETRANSMIT_MIN = 60.0
#: Sends of a REQUEST (REQUESTING) / of an INIT-REBOOT REQUEST before going back to INIT.
REQUEST_TRIES = 4
REBOOT_TRIES = 3


class State(enum.StrEnum):
    INIT = "init"
    SELECTING = "selecting"
    REQUESTING = "requesting"
    BOUND = "bound"
    RENEWING = "renewing"
    REBINDING = "rebinding"
    INIT_REBOOT = "init-reboot"
    REBOOTING = "rebooting"


class Event(enum.StrEnum):
    START = "start"
    OFFER = "offer"
    ACK = "ack"
    NAK = "nak"
    RETRANSMIT = "retransmit"  # the retransmission timer, tries left
    GIVE_UP = "give-up"  # the retransmission timer, no tries left
    T1 = "t1"
    T2 = "t2"
    EXPIRE = "expire"


#: (state, event) → (step, next state). Pairs not listed are ignored (a late OFFER while
#: REQUESTING, an ACK while SELECTING...). The steps are the ``_step_*`` methods below.
TRANSITIONS: dict[tuple[State, Event], tuple[str, State]] = {
    (State.INIT, Event.START): ("discover", State.SELECTING),
    (State.INIT_REBOOT, Event.START): ("reboot", State.REBOOTING),
    (State.SELECTING, Event.OFFER): ("request", State.REQUESTING),
    (State.SELECTING, Event.RETRANSMIT): ("resend", State.SELECTING),
    (State.SELECTING, Event.EXPIRE): ("expire", State.SELECTING),
    (State.REQUESTING, Event.ACK): ("bind", State.BOUND),
    (State.REQUESTING, Event.NAK): ("restart", State.SELECTING),
    (State.REQUESTING, Event.RETRANSMIT): ("resend", State.REQUESTING),
    (State.REQUESTING, Event.GIVE_UP): ("discover", State.SELECTING),
    (State.REQUESTING, Event.EXPIRE): ("expire", State.REQUESTING),
    (State.REBOOTING, Event.ACK): ("bind", State.BOUND),
    (State.REBOOTING, Event.NAK): ("restart", State.SELECTING),
    (State.REBOOTING, Event.RETRANSMIT): ("resend", State.REBOOTING),
    (State.REBOOTING, Event.GIVE_UP): ("discover", State.SELECTING),
    (State.REBOOTING, Event.EXPIRE): ("restart", State.SELECTING),
    (State.BOUND, Event.T1): ("renew", State.RENEWING),
    (State.BOUND, Event.T2): ("rebind", State.REBINDING),
    (State.BOUND, Event.EXPIRE): ("restart", State.SELECTING),
    (State.RENEWING, Event.ACK): ("bind", State.BOUND),
    (State.RENEWING, Event.NAK): ("restart", State.SELECTING),
    (State.RENEWING, Event.RETRANSMIT): ("resend", State.RENEWING),
    (State.RENEWING, Event.T2): ("rebind", State.REBINDING),
    (State.RENEWING, Event.EXPIRE): ("restart", State.SELECTING),
    (State.REBINDING, Event.ACK): ("bind", State.BOUND),
    (State.REBINDING, Event.NAK): ("restart", State.SELECTING),
    (State.REBINDING, Event.RETRANSMIT): ("resend", State.REBINDING),
    (State.REBINDING, Event.EXPIRE): ("restart", State.SELECTING),
}


@dataclass(frozen=True)
class Send:
    message: Message
    unicast: ipaddress.IPv4Address | None = None  # None: broadcast (raw socket before an address)
    from_lease: bool = False  # the source is the leased address (UDP socket), not 0.0.0.0


@dataclass(frozen=True)
class Bind:
    lease: Lease


@dataclass(frozen=True)
class Unbind:
    reason: str


Action = Send | Bind | Unbind


@dataclass
class Machine:
    mac: bytes
    default_lease: float = 1800.0
    min_t1: float = 0.0
    rand: Callable[[float, float], float] = random.uniform
    new_xid: Callable[[], int] = lambda: random.getrandbits(32)
    #: Options every client message carries besides 53/50/54/61 (55, 57, and 12/15 in send
    #: mode): set by the operator before each exchange (hostname rule, operators.md §2.4).
    client_options: dict[int, bytes] = field(default_factory=dict)

    state: State = State.INIT
    lease: Lease | None = None  # the lease we hold (published), bound or not
    last_address: ipaddress.IPv4Address | None = None  # for option 50 in DISCOVER
    offer: Message | None = None
    xid: int = 0
    sent: Message | None = None  # the message being retransmitted
    sent_to: ipaddress.IPv4Address | None = None
    exchange_started: float = 0.0  # when the first REQUEST of this exchange went out
    tries: int = 0
    retransmit_at: float | None = None
    dropped: dict[str, int] = field(default_factory=dict)

    # ---- inputs ------------------------------------------------------------------------------

    def start(self, now: float, stored: Lease | None = None) -> list[Action]:
        """Begin: INIT-REBOOT with an unexpired stored lease (published at once, so nothing
        flaps across a restart), else INIT."""
        if stored is not None and stored.expires > now:
            self.lease = stored
            self.last_address = stored.address
            self.state = State.INIT_REBOOT
        else:
            self.state = State.INIT
            if stored is not None:
                self.last_address = stored.address
        return self._fire(Event.START, now)

    def receive(self, msg: Message, now: float) -> list[Action]:
        """A decoded reply; dropped (and counted) unless it answers our pending message."""
        ev = self._classify(msg)
        if ev is None:
            return []
        if (self.state, ev) not in TRANSITIONS:
            self._drop(f"{ev} while {self.state}")
            return []
        return self._fire(ev, now, msg)

    def next_deadline(self) -> float | None:
        times = [t for t in (self.retransmit_at, *self._lease_deadlines()) if t is not None]
        return min(times) if times else None

    def tick(self, now: float) -> list[Action]:
        """Fire what is due at ``now``: the lease timers first (they change the state), then
        the retransmission timer."""
        out: list[Action] = []
        for _ in range(4):
            ev = self._due(now)
            if ev is None:
                break
            out += self._fire(ev, now)
        return out

    # ---- internals ---------------------------------------------------------------------------

    def _lease_deadlines(self) -> list[float | None]:
        lease = self.lease
        if lease is None:
            return []
        t1 = lease.renew_at if self.state is State.BOUND else None
        t2 = lease.rebind_at if self.state in (State.BOUND, State.RENEWING) else None
        return [t1, t2, lease.expires]

    def _due(self, now: float) -> Event | None:
        lease = self.lease
        if lease is not None:
            if now >= lease.expires:
                return Event.EXPIRE
            if self.state in (State.BOUND, State.RENEWING) and now >= lease.rebind_at:
                return Event.T2
            if self.state is State.BOUND and now >= lease.renew_at:
                return Event.T1
        if self.retransmit_at is not None and now >= self.retransmit_at:
            limit = {State.REQUESTING: REQUEST_TRIES, State.REBOOTING: REBOOT_TRIES}.get(self.state)
            return Event.GIVE_UP if limit is not None and self.tries >= limit else Event.RETRANSMIT
        return None

    def _drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def _classify(self, msg: Message) -> Event | None:
        if msg.op != BOOTREPLY:
            self._drop("not a reply")
            return None
        if self.sent is None or msg.xid != self.xid:
            self._drop("wrong xid")
            return None
        if msg.chaddr != self.mac:
            self._drop("wrong chaddr")
            return None
        t = msg.type
        if t is MessageType.NAK:
            # RFC 2131 §3.1.4: a NAK counts only from the server we asked (any server while
            # rebinding or rebooting, where we named none).
            if (
                self.state is State.REQUESTING
                and self.offer is not None
                and msg.server_id != self.offer.server_id
            ):
                self._drop("NAK from another server")
                return None
            return Event.NAK
        if t not in (MessageType.OFFER, MessageType.ACK):
            self._drop(f"message type {t}")
            return None
        a = msg.yiaddr
        if (
            a.is_unspecified
            or a.is_multicast
            or a == ipaddress.IPv4Address("255.255.255.255")
            or a.is_loopback
        ):
            self._drop("bad yiaddr")
            return None
        if t is MessageType.OFFER:
            if msg.server_id is None:
                self._drop("offer without server id")
                return None
            return Event.OFFER
        if (
            self.state is State.REQUESTING
            and self.offer is not None
            and msg.server_id != self.offer.server_id
        ):
            self._drop("ACK from another server")
            return None
        return Event.ACK

    def _fire(self, ev: Event, now: float, msg: Message | None = None) -> list[Action]:
        step, nxt = TRANSITIONS[(self.state, ev)]
        actions: list[Action] = getattr(self, f"_step_{step.replace('-', '_')}")(now, msg, nxt)
        return actions

    def _message(
        self, mtype: MessageType, extra: dict[int, bytes], ciaddr: ipaddress.IPv4Address | None
    ) -> Message:
        opts = dict(self.client_options)
        opts[o.MESSAGE_TYPE] = bytes((mtype,))
        opts.update(extra)
        return Message(xid=self.xid, chaddr=self.mac, ciaddr=ciaddr or ipaddress.IPv4Address(0), options=opts)

    def _delay(self, now: float) -> float:
        if self.state is State.RENEWING and self.lease is not None:
            return max(RENEW_RETRANSMIT_MIN, (self.lease.rebind_at - now) / 2)
        if self.state is State.REBINDING and self.lease is not None:
            return max(RENEW_RETRANSMIT_MIN, (self.lease.expires - now) / 2)
        base = min(RETRANSMIT_INITIAL * float(1 << max(self.tries - 1, 0)), RETRANSMIT_MAX)
        jitter: float = self.rand(-RETRANSMIT_JITTER, RETRANSMIT_JITTER)
        return max(0.5, base + jitter)

    def _send(self, now: float, nxt: State, msg: Message, unicast: ipaddress.IPv4Address | None = None,
              from_lease: bool = False) -> list[Action]:  # fmt: skip
        self.state = nxt
        self.sent = msg
        self.sent_to = unicast
        self.tries = 1
        self.retransmit_at = now + self._delay(now)
        return [Send(msg, unicast, from_lease)]

    def _step_discover(self, now: float, msg: Message | None, nxt: State) -> list[Action]:
        self.offer = None
        self.xid = self.new_xid()
        extra = {}
        if self.last_address is not None:
            extra[o.REQUESTED_ADDRESS] = self.last_address.packed  # §0: option 50 in DISCOVER
        return self._send(now, nxt, self._message(MessageType.DISCOVER, extra, None))

    def _step_reboot(self, now: float, msg: Message | None, nxt: State) -> list[Action]:
        assert self.lease is not None
        self.xid = self.new_xid()
        self.exchange_started = now
        req = self._message(MessageType.REQUEST, {o.REQUESTED_ADDRESS: self.lease.address.packed}, None)
        return [Bind(self.lease), *self._send(now, nxt, req)]

    def _step_request(self, now: float, msg: Message | None, nxt: State) -> list[Action]:
        assert msg is not None and msg.server_id is not None
        self.offer = msg
        self.exchange_started = now
        extra = {o.REQUESTED_ADDRESS: msg.yiaddr.packed, o.SERVER_ID: msg.server_id.packed}
        return self._send(now, nxt, self._message(MessageType.REQUEST, extra, None))

    def _step_renew(self, now: float, msg: Message | None, nxt: State) -> list[Action]:
        assert self.lease is not None
        self.xid = self.new_xid()
        self.exchange_started = now
        server = self.lease.server
        req = self._message(MessageType.REQUEST, {}, self.lease.address)
        if server is None:  # no server identifier to unicast to: straight to a broadcast
            return self._send(now, nxt, req, None, from_lease=True)
        return self._send(now, nxt, req, server, from_lease=True)

    def _step_rebind(self, now: float, msg: Message | None, nxt: State) -> list[Action]:
        assert self.lease is not None
        self.xid = self.new_xid()
        self.exchange_started = now
        return self._send(now, nxt, self._message(MessageType.REQUEST, {}, self.lease.address), None, True)

    def _step_resend(self, now: float, msg: Message | None, nxt: State) -> list[Action]:
        assert self.sent is not None
        self.tries += 1
        self.retransmit_at = now + self._delay(now)
        return [Send(self.sent, self.sent_to, self.state in (State.RENEWING, State.REBINDING))]

    def _step_bind(self, now: float, msg: Message | None, nxt: State) -> list[Action]:
        assert msg is not None
        lease = Lease.from_ack(msg, self.exchange_started or now, self.default_lease, self.min_t1)
        self.lease = lease
        self.last_address = lease.address
        self.state = nxt
        self.sent = None
        self.retransmit_at = None
        self.offer = None
        return [Bind(lease)]

    def _step_restart(self, now: float, msg: Message | None, nxt: State) -> list[Action]:
        """NAK, or the lease ran out: drop the lease, back to INIT, DISCOVER at once."""
        reason = "NAK" if msg is not None else "lease expired"
        self.lease = None
        return [Unbind(reason), *self._step_discover(now, None, nxt)]

    def _step_expire(self, now: float, msg: Message | None, nxt: State) -> list[Action]:
        """The lease kept through a failed INIT-REBOOT ran out while we look for a new one."""
        self.lease = None
        self.state = nxt
        return [Unbind("lease expired")]
