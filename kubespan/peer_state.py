"""KubeSpan peer status and endpoint rotation (kubespan.md §6.2, §6.3 steps 3-6; decisions.md "KubeSpan").

One pure function, :func:`update_peer`, does a manager run for one peer:
copy the WireGuard device's view into the status (step 4), compute the
state from the two timestamps (step 5, :data:`STATE_TABLE`), and decide the
endpoint to push to WireGuard (step 6). It also says when the state could
next change on its own (:attr:`PeerUpdate.next_check`), so the manager can
arm a timer for exactly ENDPOINT_CONNECTION_TIMEOUT after an endpoint was
tried (decisions.md "Endpoint order": the check runs at the timeout, not at
the next 30 s tick).

Endpoint order is the product decision of decisions.md, not the reference's
advertised order: endpoints on one of this node's connected subnets first,
then the peer's public (non-private) addresses, then the rest as advertised
(:func:`endpoint_order`). What is advertised on the wire is unchanged.

Times are wall-clock UTC ``datetime`` values, because WireGuard reports the
last handshake as wall-clock time (§12); ``None`` is the reference's zero
time ("never").
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, replace

from kubespan import constants
from kubespan.peers import Endpoint, Network, PeerSpec
from netd.netip import Addr


class PeerState(enum.IntEnum):
    """KubeSpanPeerStatus.state (§6.2): the protobuf enum values."""

    UNKNOWN = 0
    UP = 1
    DOWN = 2

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class PeerStatus:
    """KubeSpanPeerStatus (§6.2): id = the peer's public key."""

    label: str = ""
    endpoint: Endpoint | None = None  # what WireGuard reports (roaming-aware), or what we just set
    state: PeerState = PeerState.UNKNOWN
    receive_bytes: int = 0
    transmit_bytes: int = 0
    last_handshake_time: dt.datetime | None = None
    last_used_endpoint: Endpoint | None = None  # the last endpoint *we* configured
    last_endpoint_change: dt.datetime | None = None


@dataclass(frozen=True)
class DevicePeer:
    """The WireGuard device's view of one peer (``wg show`` / UAPI ``get``)."""

    endpoint: Endpoint | None = None
    last_handshake_time: dt.datetime | None = None
    receive_bytes: int = 0
    transmit_bytes: int = 0


@dataclass(frozen=True)
class Timers:
    """The two §6.3 durations, in seconds; tests shorten them through the tunables."""

    endpoint_connection_timeout: float = constants.ENDPOINT_CONNECTION_TIMEOUT
    peer_down_interval: float = constants.PEER_DOWN_INTERVAL

    @classmethod
    def from_tunables(cls) -> Timers:
        """The values ``NETD_TUNABLES`` sets, else the spec's (decisions.md "Tunables")."""
        from netd import tunables

        return cls(
            endpoint_connection_timeout=tunables.seconds("ENDPOINT_CONNECTION_TIMEOUT"),
            peer_down_interval=tunables.seconds("PEER_DOWN_INTERVAL"),
        )


@dataclass(frozen=True)
class PeerUpdate:
    """The result of one run for one peer.

    ``push_endpoint`` is the endpoint to configure on the WireGuard peer, None
    for "leave WireGuard's as it is" (§6.3 step 6: a peer that roamed is not
    fought). ``rotated`` is true when a new endpoint was chosen this run.
    ``next_check`` is the earliest instant at which the state would change
    with no new input (None: never), e.g. exactly ENDPOINT_CONNECTION_TIMEOUT
    after the endpoint was tried.
    """

    status: PeerStatus
    push_endpoint: Endpoint | None
    rotated: bool
    next_check: dt.datetime | None


def new_status(spec: PeerSpec) -> PeerStatus:
    """§6.3 step 3: the label is copied once, at creation (§11: a later nodename change is not seen)."""
    return PeerStatus(label=spec.label)


def resume_status(
    now: dt.datetime, spec: PeerSpec, device: DevicePeer | None, timers: Timers = Timers()
) -> PeerStatus:
    """The first status of a peer this process finds already configured in the device (a
    restarted daemon, decisions.md "Restarts"): a session with a recent handshake continues on
    the endpoint it has, as if that endpoint had been ours for a long time, so the next run
    neither judges it afresh (no ``unknown``) nor pushes the first advertised endpoint over it.
    Anything else starts as a new peer (§6.3 step 3)."""
    if (
        device is None
        or device.endpoint is None
        or _seconds_since(now, device.last_handshake_time) >= timers.peer_down_interval
    ):
        return new_status(spec)
    return PeerStatus(label=spec.label, endpoint=device.endpoint, last_used_endpoint=device.endpoint)


# ---- step 5: the state table ------------------------------------------------------------------------


class Window(enum.Enum):
    """Where ``now`` is relative to the last endpoint change."""

    TRYING = "since change < ENDPOINT_CONNECTION_TIMEOUT"
    JUDGING = "ENDPOINT_CONNECTION_TIMEOUT <= since change <= PEER_DOWN_INTERVAL"
    SETTLED = "since change > PEER_DOWN_INTERVAL (or never changed)"


#: §6.3 step 5, row by row:
#: (window, handshake after the endpoint change?, handshake within PEER_DOWN_INTERVAL?) -> state.
#: Then one override (:func:`compute_state`): DOWN with no endpoint ever configured is UNKNOWN.
STATE_TABLE: dict[tuple[Window, bool, bool], PeerState] = {
    # a new endpoint gets ENDPOINT_CONNECTION_TIMEOUT to produce a handshake
    (Window.TRYING, True, True): PeerState.UP,
    (Window.TRYING, True, False): PeerState.UP,
    (Window.TRYING, False, True): PeerState.UNKNOWN,
    (Window.TRYING, False, False): PeerState.UNKNOWN,
    # after that, only a handshake through the new endpoint counts
    (Window.JUDGING, True, True): PeerState.UP,
    (Window.JUDGING, True, False): PeerState.UP,
    (Window.JUDGING, False, True): PeerState.DOWN,
    (Window.JUDGING, False, False): PeerState.DOWN,
    # long after: any recent handshake (roamed sessions included) counts
    (Window.SETTLED, True, True): PeerState.UP,
    (Window.SETTLED, True, False): PeerState.DOWN,
    (Window.SETTLED, False, True): PeerState.UP,
    (Window.SETTLED, False, False): PeerState.DOWN,
}


def _seconds_since(now: dt.datetime, t: dt.datetime | None) -> float:
    return float("inf") if t is None else (now - t).total_seconds()


def window(now: dt.datetime, status: PeerStatus, timers: Timers) -> Window:
    since_change = _seconds_since(now, status.last_endpoint_change)
    if since_change < timers.endpoint_connection_timeout:
        return Window.TRYING
    if since_change > timers.peer_down_interval:
        return Window.SETTLED
    return Window.JUDGING


def compute_state(now: dt.datetime, status: PeerStatus, timers: Timers = Timers()) -> PeerState:
    """§6.3 step 5 through :data:`STATE_TABLE`."""
    hs, ch = status.last_handshake_time, status.last_endpoint_change
    after_change = hs is not None and (ch is None or hs > ch)
    recent = _seconds_since(now, hs) < timers.peer_down_interval
    state = STATE_TABLE[(window(now, status, timers), after_change, recent)]
    if state is PeerState.DOWN and status.last_used_endpoint is None:
        return PeerState.UNKNOWN  # nothing configured yet: not known to be down
    return state


def next_check(now: dt.datetime, status: PeerStatus, timers: Timers = Timers()) -> dt.datetime | None:
    """The earliest instant after ``now`` at which :func:`compute_state` can give another answer
    without new input: one of the table's three thresholds."""
    due: list[dt.datetime] = []
    if status.last_endpoint_change is not None:
        ch = status.last_endpoint_change
        due.append(ch + dt.timedelta(seconds=timers.endpoint_connection_timeout))
        # "> PEER_DOWN_INTERVAL" is strict: the window changes just after the threshold.
        due.append(ch + dt.timedelta(seconds=timers.peer_down_interval, microseconds=1))
    if status.last_handshake_time is not None:
        due.append(status.last_handshake_time + dt.timedelta(seconds=timers.peer_down_interval))
    future = [t for t in due if t > now]
    return min(future) if future else None


# ---- step 6: endpoint choice ---------------------------------------------------------------------------

#: Go's ``netip.Addr.IsPrivate``: RFC 1918 and RFC 4193 unique local addresses.
_PRIVATE: tuple[Network, ...] = (
    ipaddress.IPv4Network("10.0.0.0/8"),
    ipaddress.IPv4Network("172.16.0.0/12"),
    ipaddress.IPv4Network("192.168.0.0/16"),
    ipaddress.IPv6Network("fc00::/7"),
)


@functools.lru_cache(maxsize=8192)
def is_public(ip: Addr) -> bool:
    """Whether an endpoint address is a public one in the sense of decisions.md "Endpoint order".

    Go's definition of private (not Python's ``is_private``, which also
    counts the documentation ranges that test labs use as public addresses);
    loopback, link-local, multicast and unspecified addresses are not public either.
    """
    if ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified:
        return False
    return not any(ip.version == n.version and ip in n for n in _PRIVATE)


def endpoint_order(endpoints: Sequence[Endpoint], local_subnets: Sequence[Network] = ()) -> list[Endpoint]:
    """The order endpoints are tried in (decisions.md "Endpoint order"), stable within each group:
    on one of this node's connected subnets, then public, then the rest as advertised.

    Duplicates are dropped (first kept): rotation finds the last endpoint by its
    first position, so ``[a, b, a, c]`` would otherwise cycle a, b, a, b and never try c.
    """

    return sorted(dict.fromkeys(endpoints), key=lambda ep: endpoint_group(ep, local_subnets))


def endpoint_group(ep: Endpoint, local_subnets: Sequence[Network] = ()) -> int:
    """0 on a connected subnet, 1 public, 2 anything else (decisions.md "Endpoint order")."""
    if any(ep.ip.version == n.version and ep.ip in n for n in local_subnets):
        return 0
    return 1 if is_public(ep.ip) else 2


def better_endpoint(
    status: PeerStatus, ordered: Sequence[Endpoint], local_subnets: Sequence[Network] = ()
) -> Endpoint | None:
    """An endpoint of a better group than the one being tried, if one appeared (None otherwise).

    A peer's public address is learnt from the discovery service a moment after its
    private ones are published, so a node may start trying a private address of another
    site first. While that try has not produced a handshake (state ``unknown``), the
    public address is taken as soon as it is advertised instead of after
    ENDPOINT_CONNECTION_TIMEOUT: the order of decisions.md holds for late endpoints too.
    """
    last = status.last_used_endpoint
    if status.state is not PeerState.UNKNOWN or last is None or not ordered:
        return None
    best = ordered[0]
    if endpoint_group(best, local_subnets) < endpoint_group(last, local_subnets):
        return best
    return None


def next_endpoint(status: PeerStatus, ordered: Sequence[Endpoint]) -> Endpoint | None:
    """§6.3 step 6 rotation over the (already ordered) endpoints: the first one when none was
    used yet, else the one after the last used (wrapping; an unknown last one restarts at the
    first); None when there is nothing to try or nothing else to rotate to."""
    if not ordered:
        return None
    last = status.last_used_endpoint
    if last is None:
        return ordered[0]
    idx = ordered.index(last) if last in ordered else -1
    if len(ordered) == 1 and idx == 0 and status.endpoint == last:
        return None  # the single endpoint is the one in use: rotating would change nothing
    return ordered[(idx + 1) % len(ordered)]


# ---- one run for one peer ---------------------------------------------------------------------------------


def update_peer(
    now: dt.datetime,
    status: PeerStatus,
    spec: PeerSpec,
    device: DevicePeer | None,
    *,
    local_subnets: Sequence[Network] = (),
    timers: Timers = Timers(),
) -> PeerUpdate:
    """§6.3 steps 4-6 for one peer; ``device`` None when the device does not have the peer (yet)."""
    # Step 4: the device's session counters and roaming-aware endpoint.
    if device is not None:
        status = replace(
            status,
            endpoint=device.endpoint,
            last_handshake_time=device.last_handshake_time,
            receive_bytes=device.receive_bytes,
            transmit_bytes=device.transmit_bytes,
        )
    # Step 5.
    status = replace(status, state=compute_state(now, status, timers))
    # Step 6.
    push: Endpoint | None = None
    rotated = False
    candidate: Endpoint | None = None
    if status.state is PeerState.DOWN or status.last_used_endpoint is None:
        candidate = next_endpoint(status, endpoint_order(spec.endpoints, local_subnets))
    elif status.state is PeerState.UNKNOWN:  # better_endpoint is None for any other state
        candidate = better_endpoint(status, endpoint_order(spec.endpoints, local_subnets), local_subnets)
    if candidate is not None:
        status = replace(
            status,
            endpoint=candidate,
            last_used_endpoint=candidate,
            last_endpoint_change=now,
            state=PeerState.UNKNOWN,
        )
        push, rotated = candidate, True
    last = status.last_used_endpoint
    if last is not None and (status.endpoint is None or status.endpoint == last):
        # Re-assert our choice; a peer WireGuard roamed elsewhere is left alone.
        status = replace(status, endpoint=last)
        push = last
    return PeerUpdate(
        status=status, push_endpoint=push, rotated=rotated, next_check=next_check(now, status, timers)
    )


def with_counters(status: PeerStatus, receive_bytes: int, transmit_bytes: int) -> PeerStatus:
    """``replace(status, receive_bytes=…, transmit_bytes=…)``, several times cheaper: the fields
    are copied as they are (they were checked when ``status`` was made). For the manager's
    per-peer memo (:mod:`kubespan.reconcile`), which reuses a status whose only change is the
    counters."""
    new = object.__new__(PeerStatus)
    fields = new.__dict__
    fields.update(status.__dict__)
    fields["receive_bytes"] = receive_bytes
    fields["transmit_bytes"] = transmit_bytes
    return new
