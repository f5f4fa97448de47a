"""One KubeSpan manager pass as a pure function (kubespan.md §6.3 steps 3-7, §7.1-7.5).

The controller (:mod:`kubespan.controllers.manager`) gathers the inputs (resources,
the WireGuard device, the clock), calls :func:`manager_pass`, and applies the
result (publishes specs and statuses, writes the nft table). Keeping the pass
pure lets ``bench/kubespan.py`` time exactly the manager's own work with a
thousand synthetic peers and lets unit tests drive restarts and rotations
without a kernel.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from kubespan import constants as c
from kubespan import nft as _nft
from kubespan import specs as _specs
from kubespan.nft import RoutedSet, routed_set
from kubespan.peer_state import (
    DevicePeer,
    PeerState,
    PeerStatus,
    Timers,
    resume_status,
    update_peer,
    with_counters,
)
from kubespan.peers import Endpoint, Network, PeerSpec
from kubespan.specs import KernelRule, KubeSpanSpecs, LocalIdentity, kubespan_specs
from netd.resources.link import WireguardPeer


@dataclass(frozen=True)
class PassInput:
    now: dt.datetime
    identity: LocalIdentity
    mtu: int
    shared_secret: str
    force_routing: bool
    specs: Mapping[str, PeerSpec]  # by public key
    statuses: Mapping[str, PeerStatus]  # the previous pass's, by public key
    device: Mapping[str, DevicePeer]  # the WireGuard device's view, by public key
    local_subnets: Sequence[Network] = ()
    existing_rules: Sequence[KernelRule] = ()
    #: Peers that are not from PeerSpecs (static ones, device peers kept over a restart) and the
    #: prefixes they add to the nft sets.
    extra_peers: Sequence[WireguardPeer] = ()
    extra_routed: Sequence[Network] = ()
    keepalive: float = c.KEEPALIVE
    timers: Timers = field(default_factory=Timers)


@dataclass
class PassResult:
    statuses: dict[str, PeerStatus]
    push: dict[str, Endpoint | None]
    routed: RoutedSet
    specs: KubeSpanSpecs | None  # None: the cluster secret is unusable (``error`` says why)
    next_check: dt.datetime | None  # the earliest instant a peer's state can change by itself
    trying: bool  # some peer is trying an endpoint (no handshake yet)
    events: list[str] = field(default_factory=list)  # what to log: rotations, state changes
    error: str | None = None


def manager_pass(inp: PassInput) -> PassResult:
    statuses: dict[str, PeerStatus] = {}
    push: dict[str, Endpoint | None] = {}
    due: list[dt.datetime] = []
    events: list[str] = []
    states: dict[str, PeerState] = {}
    trying = False  # some peer is trying an endpoint (no handshake yet)
    memo = _memo_for(inp)
    kept: dict[str, _PeerMemo] = {}
    specs: dict[str, PeerSpec] = {}  # inp.specs, each equal to the last pass's as that object
    last_specs, memos, statuses_in, device = memo.specs, memo.peers, inp.statuses, inp.device
    for key in sorted(inp.specs):
        spec = inp.specs[key]
        last = last_specs.get(key)
        if last is not None and (last is spec or last == spec):
            spec = last  # identity from here on: the memos below compare by ``is`` first
        specs[key] = spec
        dev = device.get(key)
        before = statuses_in.get(key)
        m = memos.get(key)
        hit = None if before is None or m is None else m.lookup(inp.now, spec, before, dev)
        if hit is not None:
            assert m is not None
            status, endpoint, nxt = hit
            kept[key] = m
        else:
            st = before or resume_status(inp.now, spec, dev, inp.timers)
            u = update_peer(inp.now, st, spec, dev, local_subnets=inp.local_subnets, timers=inp.timers)
            if u.rotated:
                events.append(f"peer {spec.label} ({key[:8]}): trying endpoint {u.push_endpoint}")
            status, endpoint, nxt = u.status, u.push_endpoint, u.next_check
            if before is not None and status == before:
                status = before  # the same object: the next pass's memo check is an identity
            if before is not None and not u.rotated:
                new = _PeerMemo.make(inp.now, spec, before, dev, status, endpoint, nxt, inp.timers)
                if new is not None:
                    kept[key] = new
        if before is not None and before.state is not status.state:
            events.append(f"peer {spec.label} ({key[:8]}): {status.state}")
        statuses[key] = status
        states[key] = status.state
        if status.state is PeerState.UNKNOWN and status.last_endpoint_change:
            trying = True
        push[key] = endpoint
        if nxt is not None:
            due.append(nxt)
    memo.peers, memo.specs = kept, specs

    routed = routed_set(specs.values(), states, force_routing=inp.force_routing)
    if inp.extra_routed:
        routed = extend_routed(routed, inp.extra_routed)
    result = PassResult(
        statuses=statuses,
        push=push,
        routed=routed,
        specs=None,
        next_check=min(due) if due else None,
        trying=trying,
        events=events,
    )
    try:
        out = kubespan_specs(
            inp.identity,
            mtu=inp.mtu,
            shared_secret=inp.shared_secret,
            peers=specs.values(),
            endpoints=push,
            existing_rules=inp.existing_rules,
            keepalive=inp.keepalive,
        )
    except ValueError as e:
        result.error = str(e)
        return result
    with_extra_peers(out, inp.extra_peers)
    result.specs = out
    return result


# ---- the per-peer memo --------------------------------------------------------------------------------
#
# ``update_peer`` is most of a pass's cost, and in a pass with one changed peer (or none) every
# other peer gets the same answer as in the last pass. Its result depends on ``now`` only through
# the thresholds of the state table and ``next_check`` (ENDPOINT_CONNECTION_TIMEOUT and
# PEER_DOWN_INTERVAL after the last endpoint change, PEER_DOWN_INTERVAL after the last handshake),
# so a result computed at ``t0`` holds at any ``now >= t0`` until the next threshold, when every
# other input is equal. The counters (rx/tx) influence nothing but themselves: a status that
# differs only in them is the memoised one with the device's counters. Rotations (which stamp
# ``now`` into the status) are never memoised. A result is not memoised either within
# :data:`MEMO_MARGIN` of a threshold (the state table compares float seconds, ``next_check``
# datetimes: they may disagree by a microsecond), nor used unless ``now`` is that far from one.

#: How far ``now`` must be from any threshold for a memoised update to be used.
MEMO_MARGIN = dt.timedelta(milliseconds=1)

_Key = tuple[object, ...]


def _status_key(s: PeerStatus) -> _Key:
    """Every field of a status but the counters."""
    return (s.label, s.endpoint, s.state, s.last_handshake_time, s.last_used_endpoint, s.last_endpoint_change)


def _device_key(d: DevicePeer | None) -> _Key | None:
    return None if d is None else (d.endpoint, d.last_handshake_time)


class _PeerMemo:
    """One peer's last computed update and the inputs it holds for."""

    __slots__ = (
        "before",
        "device",
        "next_check",
        "out",
        "push",
        "since",
        "spec",
        "status",
        "steady",
        "until",
    )

    def __init__(
        self,
        now: dt.datetime,
        until: dt.datetime | None,
        spec: PeerSpec,
        before: PeerStatus,
        dev: DevicePeer | None,
        status: PeerStatus,
        push: Endpoint | None,
        next_check: dt.datetime | None,
    ) -> None:
        self.since = now  # computed at this ``now``, valid from here ...
        self.until = until  # ... to here (exclusive; None: for good)
        self.spec = spec
        self.before = _status_key(before)  # the previous status without counters
        self.device = _device_key(dev)
        self.status = status
        self.steady = _status_key(status) == self.before  # equal to the previous but for counters
        self.push = push
        self.next_check = next_check
        self.out = status  # the status object last handed out

    @classmethod
    def make(
        cls,
        now: dt.datetime,
        spec: PeerSpec,
        before: PeerStatus,
        dev: DevicePeer | None,
        status: PeerStatus,
        push: Endpoint | None,
        next_check: dt.datetime | None,
        timers: Timers,
    ) -> _PeerMemo | None:
        until = _stable_window(now, status, timers)
        if until is False:
            return None
        return cls(now, until, spec, before, dev, status, push, next_check)

    def lookup(
        self, now: dt.datetime, spec: PeerSpec, before: PeerStatus, dev: DevicePeer | None
    ) -> tuple[PeerStatus, Endpoint | None, dt.datetime | None] | None:
        """The memoised (status, push endpoint, next check) if it holds for these inputs (``spec``
        the very object memoised: :func:`manager_pass` hands equal specs on as one object)."""
        if now < self.since or (self.until is not None and now >= self.until) or self.spec is not spec:
            return None
        d = self.device
        if dev is None:
            if d is not None:
                return None
        elif d is None or dev.endpoint != d[0] or dev.last_handshake_time != d[1]:
            return None
        # ``out`` was handed out last time: when the update left the status as it was (steady),
        # its fields are ``before``'s by construction and need no comparing.
        if (before is not self.out or not self.steady) and _status_key(before) != self.before:
            return None
        # The counters: the device's, or the previous status's when the device lacks the peer.
        src = before if dev is None else dev
        rx = src.receive_bytes
        tx = src.transmit_bytes
        if self.steady and before.receive_bytes == rx and before.transmit_bytes == tx:
            status = before
        elif self.status.receive_bytes == rx and self.status.transmit_bytes == tx:
            status = self.status
        else:
            status = with_counters(self.status, rx, tx)
        self.out = status
        return status, self.push, self.next_check


def _stable_window(
    now: dt.datetime, status: PeerStatus, timers: Timers
) -> dt.datetime | Literal[False] | None:
    """Until when (exclusive) ``status``'s state and next check stay what they are at ``now``:
    :data:`MEMO_MARGIN` before the next threshold; None = for good; False = ``now`` is within the
    margin of a threshold (do not memoise)."""
    ect = dt.timedelta(seconds=timers.endpoint_connection_timeout)
    pdi = dt.timedelta(seconds=timers.peer_down_interval)
    thresholds: list[dt.datetime] = []
    ch, hs = status.last_endpoint_change, status.last_handshake_time
    if ch is not None:
        thresholds += (ch + ect, ch + pdi, ch + pdi + dt.timedelta(microseconds=1))
    if hs is not None:
        thresholds.append(hs + pdi)
    until: dt.datetime | None = None
    for t in thresholds:
        if abs(t - now) <= MEMO_MARGIN:
            return False
        if t > now and (until is None or t - MEMO_MARGIN < until):
            until = t - MEMO_MARGIN
    return until


@dataclass
class _Memo:
    """What the last pass computed, for one (local subnets, timers) context."""

    context: _Key = ()
    peers: dict[str, _PeerMemo] = field(default_factory=dict)
    specs: dict[str, PeerSpec] = field(default_factory=dict)


_MEMO = _Memo()


def _memo_for(inp: PassInput) -> _Memo:
    global _MEMO
    context = (tuple(inp.local_subnets), inp.timers)
    if _MEMO.context != context:
        _MEMO = _Memo(context)
    return _MEMO


def clear_caches() -> None:
    """Forget every memo of a pass (this module's, :func:`kubespan.nft.routed_set`'s and
    :func:`kubespan.specs.wireguard_peers`'s): for tests and benches that time a cold pass."""
    global _MEMO
    _MEMO = _Memo()
    _nft.clear_caches()
    _specs.clear_caches()


def with_extra_peers(specs: KubeSpanSpecs, extra: Sequence[WireguardPeer]) -> None:
    """Add peers that are not from PeerSpecs to the published link (sorted by key, §7.1)."""
    if not extra:
        return
    for link in specs.links.values():
        wg = link.wireguard
        if wg is None:
            continue
        peers = sorted([*wg.peers, *extra], key=lambda p: p.public_key)
        link.wireguard = wg.model_copy(update={"peers": peers})


def extend_routed(routed: RoutedSet, nets: Sequence[Network]) -> RoutedSet:
    v4 = [*routed.ipv4, *(n for n in nets if isinstance(n, ipaddress.IPv4Network))]
    v6 = [*routed.ipv6, *(n for n in nets if isinstance(n, ipaddress.IPv6Network))]
    return RoutedSet(tuple(ipaddress.collapse_addresses(v4)), tuple(ipaddress.collapse_addresses(v6)))

