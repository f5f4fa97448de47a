"""KubeSpan peer specs from cluster affiliates (kubespan.md §5.6, §6.1).

Pure: the manager turns the merged ``cluster`` affiliates into
:class:`PeerCandidate` values (so this module does not depend on the
resource classes) and gets back one :class:`PeerSpec` per peer, keyed by the
peer's public key (the KubeSpanPeerSpec id), plus the warnings to log.

Why the warnings are returned instead of logged here: the manager recomputes
the specs on every input change, and an overlap between two peers would
otherwise be logged again on each of them; the caller logs what is new.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from netd.kernel.nftables import Interval, merge_intervals, subtract_intervals
from netd.netip import Addr, Prefix, format_addr, parse_addr

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Endpoint(NamedTuple):
    """A WireGuard endpoint ``ip:port`` (a NamedTuple, so ``(ip, port)`` tuples compare equal)."""

    ip: Addr
    port: int

    def __str__(self) -> str:
        # Go's netip.AddrPort.String, the text of KubeSpanPeerSpec.endpoints (§6.1).
        text = format_addr(self.ip)
        return f"[{text}]:{self.port}" if self.ip.version == 6 else f"{text}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """The inverse of ``str()``: ``1.2.3.4:51820`` or ``[2001:db8::1]:51820`` (ValueError otherwise)."""
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or int(port) > 0xFFFF:
            raise ValueError(f"endpoint {text!r}: want ip:port")
        bracketed = host.startswith("[") and host.endswith("]")
        ip = parse_addr(host[1:-1] if bracketed else host)
        if bracketed != (ip.version == 6):
            raise ValueError(f"endpoint {text!r}: IPv6 needs brackets, IPv4 must not have them")
        return cls(ip, int(port))


@dataclass(frozen=True)
class PeerCandidate:
    """What §6.1 needs of one merged ``cluster`` affiliate.

    ``kubespan_address`` None stands for an affiliate whose KubeSpan address is
    missing or invalid: the reference's set builder fails on it, so the peer is
    skipped with a warning (§6.1 step 1). ``additional_addresses`` keep their
    host bits as advertised (``10.244.3.1/24``); they are masked here.
    """

    node_id: str
    label: str  # the affiliate's nodename
    public_key: str
    kubespan_address: ipaddress.IPv6Address | None
    addresses: Sequence[Addr] = ()
    additional_addresses: Sequence[Prefix] = ()
    endpoints: Sequence[Endpoint] = ()


@dataclass(frozen=True)
class PeerSpec:
    """KubeSpanPeerSpec (§6.1): id = ``public_key``."""

    public_key: str
    label: str
    address: ipaddress.IPv6Address
    allowed_ips: tuple[Network, ...]  # minimal CIDR cover, IPv4 first, ascending
    endpoints: tuple[Endpoint, ...]  # as advertised, same order


@dataclass
class PeerSpecBuild:
    """The specs by public key, and what the reference would have logged as warnings."""

    specs: dict[str, PeerSpec] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def select_candidates(candidates: Iterable[PeerCandidate], local_node_id: str) -> list[PeerCandidate]:
    """§5.6: every affiliate except the local node that advertises a KubeSpan public key."""
    return [c for c in candidates if c.node_id != local_node_id and c.public_key]


# ---- address sets as half-open integer intervals per family ---------------------------------------

_Sets = tuple[list[Interval], list[Interval]]  # (IPv4, IPv6)


def _interval(net: Network) -> Interval:
    return int(net.network_address), int(net.broadcast_address) + 1


def _candidate_set(c: PeerCandidate, kubespan_address: ipaddress.IPv6Address) -> _Sets:
    """§6.1 step 1: additional prefixes (masked), every address as a host prefix, the KubeSpan /128."""
    nets: list[Network] = [p.network for p in c.additional_addresses]
    nets += [ipaddress.ip_network(a) for a in c.addresses]
    nets.append(ipaddress.IPv6Network(kubespan_address))
    v4 = merge_intervals(_interval(n) for n in nets if n.version == 4)
    v6 = merge_intervals(_interval(n) for n in nets if n.version == 6)
    return v4, v6


class _OwnerIndex:
    """Disjoint intervals sorted by start, each with its owner (the accepted sets of §6.1 are
    disjoint from each other: each had every earlier overlap subtracted)."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.owner: list[int] = []

    def owners(self, intervals: list[Interval]) -> set[int]:
        """The owners of the intervals that intersect any of ``intervals``."""
        out: set[int] = set()
        starts, ends = self.starts, self.ends
        for lo, hi in intervals:
            i = bisect.bisect_right(ends, lo)  # the first interval ending after lo
            while i < len(starts) and starts[i] < hi:
                out.add(self.owner[i])
                i += 1
        return out

    def add(self, intervals: list[Interval], owner: int) -> None:
        for lo, hi in intervals:
            i = bisect.bisect_left(self.starts, lo)
            self.starts.insert(i, lo)
            self.ends.insert(i, hi)
            self.owner.insert(i, owner)


def _overlaps(a: list[Interval], b: list[Interval]) -> bool:
    return subtract_intervals(a, b) != merge_intervals(a)


def cidr_cover(v4: Iterable[Interval], v6: Iterable[Interval]) -> tuple[Network, ...]:
    """The minimal list of CIDR prefixes covering the intervals, IPv4 first, ascending (§6.1 step 3)."""
    out: list[Network] = []
    for lo, hi in merge_intervals(v4):
        out.extend(
            ipaddress.summarize_address_range(ipaddress.IPv4Address(lo), ipaddress.IPv4Address(hi - 1))
        )
    for lo, hi in merge_intervals(v6):
        out.extend(
            ipaddress.summarize_address_range(ipaddress.IPv6Address(lo), ipaddress.IPv6Address(hi - 1))
        )
    return tuple(out)


def build_peer_specs(candidates: Iterable[PeerCandidate]) -> PeerSpecBuild:
    """§6.1 over already selected candidates (:func:`select_candidates`).

    Candidates are taken in ascending node-ID order, and a peer whose set
    overlaps an earlier one's loses the overlap: the lower node ID keeps a
    contested prefix, whatever order discovery delivered them in. A peer
    left with nothing but an empty set is kept (§6.1 step 2): WireGuard still
    gets it, so a handshake can happen once the conflict goes away.
    """
    out = PeerSpecBuild()
    accepted: list[_Sets] = []
    index = (_OwnerIndex(), _OwnerIndex())  # every accepted interval -> its position in ``accepted``
    for c in sorted(candidates, key=lambda c: c.node_id):
        address = c.kubespan_address
        if address is None:
            out.warnings.append(
                f"peer {c.label or c.node_id} ({c.public_key}) skipped: no valid KubeSpan address"
            )
            continue
        v4, v6 = _candidate_set(c, address)
        if c.public_key in out.specs:
            # Two affiliates with one key would be one WireGuard peer; the lower node ID keeps it.
            out.warnings.append(
                f"peer {c.label or c.node_id}: public key {c.public_key} already used, skipped"
            )
            continue
        # Only the earlier peers whose sets meet this one's can overlap it (the index finds them
        # in O(log n) instead of checking all n), taken in the same ascending order.
        for pos in sorted(index[0].owners(v4) | index[1].owners(v6)):
            p4, p6 = accepted[pos]
            if _overlaps(v4, p4) or _overlaps(v6, p6):
                out.warnings.append(
                    f"peer {c.label or c.node_id} ({c.public_key}): addresses overlap an earlier peer's,"
                    " overlap removed"
                )
                v4, v6 = subtract_intervals(v4, p4), subtract_intervals(v6, p6)
        if not v4 and not v6:
            out.warnings.append(
                f"peer {c.label or c.node_id} ({c.public_key}): no addresses left after overlaps"
            )
        index[0].add(v4, len(accepted))
        index[1].add(v6, len(accepted))
        accepted.append((v4, v6))
        out.specs[c.public_key] = PeerSpec(
            public_key=c.public_key,
            label=c.label,
            address=address,
            allowed_ips=cidr_cover(v4, v6),
            endpoints=tuple(c.endpoints),
        )
    return out
