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

from kubespan import constants as c
from kubespan.nft import RoutedSet, routed_set
from kubespan.peer_state import DevicePeer, PeerState, PeerStatus, Timers, resume_status, update_peer
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
    for key in sorted(inp.specs):
        spec = inp.specs[key]
        dev = inp.device.get(key)
        before = inp.statuses.get(key)
        st = before or resume_status(inp.now, spec, dev, inp.timers)
        u = update_peer(inp.now, st, spec, dev, local_subnets=inp.local_subnets, timers=inp.timers)
        if u.rotated:
            events.append(f"peer {spec.label} ({key[:8]}): trying endpoint {u.push_endpoint}")
        if before is not None and before.state is not u.status.state:
            events.append(f"peer {spec.label} ({key[:8]}): {u.status.state}")
        statuses[key] = u.status
        push[key] = u.push_endpoint
        if u.next_check is not None:
            due.append(u.next_check)

    states = {k: s.state for k, s in statuses.items()}
    routed = routed_set(inp.specs.values(), states, force_routing=inp.force_routing)
    if inp.extra_routed:
        routed = extend_routed(routed, inp.extra_routed)
    trying = any(s.state is PeerState.UNKNOWN and s.last_endpoint_change for s in statuses.values())
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
            peers=inp.specs.values(),
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


def states_by_key(statuses: Mapping[str, PeerStatus]) -> dict[str, PeerState]:
    return {k: s.state for k, s in statuses.items()}
