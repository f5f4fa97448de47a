"""KubeSpan nftables: the routed set and the table ``inet talos_kubespan`` (kubespan.md §7.4, §7.5).

Three parts:

* :func:`routed_set` (§6.3 step 7, §7.5): the prefixes whose traffic must go
  through the tunnel, as non-overlapping CIDR prefixes per family (interval
  sets refuse overlapping elements).
* :func:`render_table` / :func:`build_batch`: the table as libnftables JSON,
  rule for rule the §7.4 reference rendering, and the one transaction that
  replaces the whole table (decisions.md "KubeSpan": the manager owns this
  table directly, not through NfTablesChain resources).
* :class:`KubeSpanTable`: applies a rendering only when it differs from what
  was applied last *and* the kernel still has exactly what was applied then
  (a read, never a write, in steady state), and tears the table down.

Why a named-set table rather than v1.6.8's anonymous sets in ``inet talos``:
the ingress firewall owns ``inet talos`` (decisions.md), and with named sets
an empty routed set needs no special case: the rules are there and never match.
"""

from __future__ import annotations

import bisect
import hashlib
import ipaddress
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubespan import constants as c
from kubespan.peer_state import PeerState
from kubespan.peers import PeerSpec
from netd.kernel.nft_tables import LibNftTable
from netd.kernel.nftables import NftablesError, listing_digest, merge_intervals

Command = dict[str, Any]
Expr = dict[str, Any]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Interval = tuple[int, int]

__all__ = [
    "KubeSpanTable",
    "NftablesError",
    "RoutedSet",
    "build_batch",
    "mss_clamp",
    "render_table",
    "routed_set",
    "set_mark",
    "teardown_batch",
]


# ---- §6.3 step 7, §7.5: what is routed into the tunnel -----------------------------------------------


@dataclass(frozen=True)
class RoutedSet:
    """The nft set contents: collapsed prefixes, ascending, no two overlapping or adjacent-mergeable."""

    ipv4: tuple[ipaddress.IPv4Network, ...] = ()
    ipv6: tuple[ipaddress.IPv6Network, ...] = ()


def routed_set(
    specs: Iterable[PeerSpec], states: Mapping[str, PeerState], *, force_routing: bool
) -> RoutedSet:
    """§6.3 step 7: the allowed IPs of every peer, or with ``allowDownPeerBypass``
    (``force_routing`` False, §7.5) only of the peers that are up, so traffic to
    a peer that is not up leaves unencrypted instead of being black-holed.

    ``states`` is by public key; a peer without a state is not up.

    The result is ``ipaddress.collapse_addresses`` of those prefixes per family (the
    minimal prefix cover of a union is unique), computed from integer intervals and
    memoised, since the manager runs this on every pass and usually little or nothing
    changed: the same prefixes as the last call give the last RoutedSet back; otherwise
    only the peers whose ``allowed_ips`` changed (or that came or went) update the kept
    union, and only merged intervals that changed are turned into prefixes again.
    """
    chosen = [s for s in specs if force_routing or states.get(s.public_key) is PeerState.UP]
    key = [s.allowed_ips for s in chosen]
    memo = _ROUTED
    if memo.key is not None and memo.key == key:
        return memo.result
    last = memo.per_peer
    per_peer: dict[str, _PeerIntervals] = {}
    came: list[_PeerIntervals] = []  # intervals to add to the unions, and to remove:
    gone: list[_PeerIntervals] = []
    unique = True
    found = 0
    for spec in chosen:
        k, nets = spec.public_key, spec.allowed_ips
        old = last.get(k)
        if old is None or (old[0] is not nets and old[0] != nets):
            hit: _PeerIntervals = (nets, *_intervals(nets))
            came.append(hit)
        else:
            hit = old
        if old is not None:
            found += 1
            if hit is not old:
                gone.append(old)
        if k in per_peer:
            unique = False
        per_peer[k] = hit
    if found < len(last):
        gone += [v for k, v in last.items() if k not in per_peer]
    memo.key = None  # until the unions are consistent again
    if memo.unique and unique and len(gone) + len(came) <= _INCREMENTAL_MAX:
        for _, v4, v6 in gone:
            memo.v4.remove(v4)
            memo.v6.remove(v6)
        for _, v4, v6 in came:
            memo.v4.add(v4)
            memo.v6.add(v6)
    else:
        # (With one public key twice, per_peer kept only one of them: the intervals of all.)
        both = (
            list(per_peer.values())
            if unique
            else [(s.allowed_ips, *_intervals(s.allowed_ips)) for s in chosen]
        )
        memo.v4 = _Union(iv for _, v4, _ in both for iv in v4)
        memo.v6 = _Union(iv for _, _, v6 in both for iv in v6)
    result = RoutedSet(
        memo.v4.cover(ipaddress.IPv4Address, memo.result.ipv4),
        memo.v6.cover(ipaddress.IPv6Address, memo.result.ipv6),
    )
    memo.key, memo.result, memo.per_peer, memo.unique = key, result, per_peer, unique
    return result


#: More changed peers than this: the union is rebuilt rather than updated interval by interval.
_INCREMENTAL_MAX = 64

_PeerIntervals = tuple[tuple[Network, ...], list[Interval], list[Interval]]


class _Union:
    """The union of a multiset of half-open intervals (``raw``, sorted), kept merged as
    :func:`merge_intervals` merges (``merged``: sorted, neither overlapping nor touching)
    under insertions and removals, and each merged interval's prefixes (``covers``)."""

    def __init__(self, intervals: Iterable[Interval] = ()) -> None:
        self.raw: list[Interval] = sorted(i for i in intervals if i[0] < i[1])
        self.merged: list[Interval] = merge_intervals(self.raw)
        self.covers: dict[Interval, tuple[Any, ...]] = {}
        self._covered: list[Interval] | None = None  # ``merged`` when ``cover`` last ran

    def add(self, intervals: list[Interval]) -> None:
        for lo, hi in intervals:
            if lo >= hi:
                continue
            bisect.insort(self.raw, (lo, hi))
            m = self.merged
            j0 = bisect.bisect_left(m, (lo, -1))
            if j0 > 0 and m[j0 - 1][1] >= lo:  # the one before reaches (or touches) lo
                j0 -= 1
            j1 = bisect.bisect_right(m, (hi, _INF))  # every one starting at or before hi
            if j0 < j1:
                lo, hi = min(lo, m[j0][0]), max(hi, m[j1 - 1][1])
            m[j0:j1] = [(lo, hi)]

    def remove(self, intervals: list[Interval]) -> None:
        for lo, hi in intervals:
            if lo >= hi:
                continue
            raw = self.raw
            i = bisect.bisect_left(raw, (lo, hi))
            assert i < len(raw) and raw[i] == (lo, hi), "removing an interval that was not added"
            del raw[i]
            # The merged interval that held it is re-merged from the raw ones starting inside it.
            m = self.merged
            j = bisect.bisect_right(m, (lo, _INF)) - 1
            mlo, mhi = m[j]
            r0 = bisect.bisect_left(raw, (mlo, -1))
            r1 = bisect.bisect_left(raw, (mhi, -1))
            m[j : j + 1] = merge_intervals(raw[r0:r1])

    def cover(self, addr: Callable[[int], Any], last: tuple[Any, ...]) -> tuple[Any, ...]:
        """The prefixes of ``merged``, ascending (``last`` again when nothing changed)."""
        if self._covered == self.merged:
            return last
        known, covers = self.covers, {}
        nets: list[Any] = []
        for iv in self.merged:
            c = known.get(iv)
            if c is None:
                c = tuple(ipaddress.summarize_address_range(addr(iv[0]), addr(iv[1] - 1)))
            covers[iv] = c
            nets += c
        self.covers, self._covered = covers, list(self.merged)
        return tuple(nets)


_INF = 1 << 129  # above any IPv6 interval end


@dataclass
class _RoutedMemo:
    key: list[tuple[Network, ...]] | None = None
    result: RoutedSet = field(default_factory=RoutedSet)
    per_peer: dict[str, _PeerIntervals] = field(default_factory=dict)
    unique: bool = True  # per_peer holds every interval of ``v4``/``v6``
    v4: _Union = field(default_factory=_Union)
    v6: _Union = field(default_factory=_Union)


_ROUTED = _RoutedMemo()


def clear_caches() -> None:
    """Forget what :func:`routed_set` memoised (tests, benches)."""
    global _ROUTED
    _ROUTED = _RoutedMemo()


def _intervals(nets: Iterable[Network]) -> tuple[list[Interval], list[Interval]]:
    """Half-open integer intervals ``[first, last + 1)`` of the prefixes, IPv4 and IPv6 apart."""
    v4: list[Interval] = []
    v6: list[Interval] = []
    for net in nets:
        (v4 if net.version == 4 else v6).append((int(net.network_address), int(net.broadcast_address) + 1))
    return v4, v6


# ---- §7.4: the table --------------------------------------------------------------------------------


def set_mark(mark: int) -> int:
    """The mark a packet leaves the set-mark rules with (§7.4, §9.8): both KubeSpan bits
    cleared, 0x40 set, every other bit kept."""
    return (mark & c.SET_MARK_AND) | c.MARK


def mss_clamp(mtu: int) -> tuple[int, int]:
    """The MSS SYNs to IPv4 / IPv6 targets are clamped to (§8): MTU-40, MTU-60."""
    return mtu - c.MSS_OVERHEAD_IPV4, mtu - c.MSS_OVERHEAD_IPV6


def _table() -> dict[str, str]:
    return {"family": c.NFT_FAMILY, "name": c.NFT_TABLE}


def _in_table(**obj: Any) -> dict[str, Any]:
    return {"family": c.NFT_FAMILY, "table": c.NFT_TABLE, **obj}


def _match(left: Any, right: Any, op: str = "==") -> Expr:
    return {"match": {"op": op, "left": left, "right": right}}


_MARK: Expr = {"meta": {"key": "mark"}}
_MSS: Expr = {"tcp option": {"name": "maxseg", "field": "size"}}
#: rule (1) of both chains: WireGuard's own packets (mark 0x20) are never touched.
_WIREGUARD_ACCEPT: list[Expr] = [_match({"&": [_MARK, c.MASK]}, c.FWMARK), {"accept": None}]
#: ``meta mark set meta mark & 0xffffff9f | 0x40`` (§7.4). The kernel stores it as one bitwise
#: op (mask, xor) and ``nft list`` prints it back as ``& 0xffffffdf | 0x40``: the same function,
#: since 0x40 is set either way; that is where the docs' "0xffffffdf" of §11 comes from.
_SET_MARK: list[Expr] = [
    {"mangle": {"key": _MARK, "value": {"|": [{"&": [_MARK, c.SET_MARK_AND]}, c.MARK]}}},
    {"accept": None},
]


def _daddr_in(payload: str, set_name: str) -> Expr:
    return _match({"payload": {"protocol": payload, "field": "daddr"}}, f"@{set_name}")


def _clamp(payload: str, set_name: str, mss: int) -> list[Expr]:
    """SYN without RST, MSS option larger than ``mss`` → set it to ``mss``; no verdict (§7.4)."""
    flags = {"&": [{"payload": {"protocol": "tcp", "field": "flags"}}, ["syn", "rst"]]}
    return [
        _daddr_in(payload, set_name),
        _match(flags, "syn"),
        _match(_MSS, mss, ">"),
        {"mangle": {"key": _MSS, "value": mss}},
    ]


def _chain(name: str, chain_type: str, hook: str) -> Command:
    return {
        "add": {
            "chain": _in_table(name=name, type=chain_type, hook=hook, prio=0, policy="accept"),
        }
    }


def _rule(chain: str, expr: list[Expr]) -> Command:
    return {"add": {"rule": _in_table(chain=chain, expr=expr)}}


def _prefix_elem(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Any:
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def render_table(routed: RoutedSet, mtu: int) -> list[Command]:
    """The content of ``inet talos_kubespan`` as ``add`` commands (§7.4 reference rendering)."""
    mss4, mss6 = mss_clamp(mtu)
    s4, s6 = c.NFT_SET_IPV4, c.NFT_SET_IPV6
    pre, out = c.NFT_CHAIN_PREROUTING, c.NFT_CHAIN_OUTGOING
    cmds: list[Command] = [
        {"add": {"table": _table()}},
        {"add": {"set": _in_table(name=s4, type="ipv4_addr", flags=["interval"])}},
        {"add": {"set": _in_table(name=s6, type="ipv6_addr", flags=["interval"])}},
        _chain(pre, "filter", "prerouting"),
        _rule(pre, _WIREGUARD_ACCEPT),
        _rule(pre, [_daddr_in("ip", s4), *_SET_MARK]),
        _rule(pre, [_daddr_in("ip6", s6), *_SET_MARK]),
        _chain(out, "route", "output"),
        _rule(out, _WIREGUARD_ACCEPT),
        # Packets to this node's own addresses leave via lo and must stay unmarked (§7.4).
        _rule(out, [_match({"meta": {"key": "oifname"}}, "lo"), {"accept": None}]),
        _rule(out, _clamp("ip", s4, mss4)),
        _rule(out, _clamp("ip6", s6, mss6)),
        _rule(out, [_daddr_in("ip", s4), *_SET_MARK]),
        _rule(out, [_daddr_in("ip6", s6), *_SET_MARK]),
    ]
    for name, nets in ((s4, routed.ipv4), (s6, routed.ipv6)):
        if nets:  # an element command with no elements is an error
            cmds.append({"add": {"element": _in_table(name=name, elem=[_prefix_elem(n) for n in nets])}})
    return cmds


def _names(listing: Mapping[str, Any] | None, kind: str) -> set[str]:
    out: set[str] = set()
    for item in [] if listing is None else listing.get("nftables", []):
        obj = item.get(kind) if isinstance(item, dict) else None
        if isinstance(obj, dict) and obj.get("family") == c.NFT_FAMILY and obj.get("table") == c.NFT_TABLE:
            out.add(str(obj.get("name")))
    return out


def build_batch(rendering: list[Command], listing: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One transaction replacing the whole table with ``rendering`` (:func:`render_table`).

    ``add table`` then ``flush table`` empties every chain of ours (a no-op on a
    new table); the sets are flushed explicitly before their elements are added
    again, since an interval set refuses an element overlapping one it still
    holds (decisions.md "Libraries"). Chains and sets found in ``listing`` (the
    table as it is) that the rendering does not have are deleted, so a stray
    chain cannot survive in our table.
    """
    ours_chains = {cmd["add"]["chain"]["name"] for cmd in rendering if "chain" in cmd.get("add", {})}
    ours_sets = {cmd["add"]["set"]["name"] for cmd in rendering if "set" in cmd.get("add", {})}
    cmds: list[Command] = [{"add": {"table": _table()}}, {"flush": {"table": _table()}}]
    cmds += [{"delete": {"chain": _in_table(name=n)}} for n in sorted(_names(listing, "chain") - ours_chains)]
    cmds += [{"delete": {"set": _in_table(name=n)}} for n in sorted(_names(listing, "set") - ours_sets)]
    for cmd in rendering:
        if cmd == {"add": {"table": _table()}}:
            continue
        cmds.append(cmd)
        if "set" in cmd.get("add", {}):
            cmds.append({"flush": {"set": _in_table(name=cmd["add"]["set"]["name"])}})
    return {"nftables": cmds}


def teardown_batch() -> dict[str, Any]:
    """§7.6: the table and everything in it, nothing else."""
    return {"nftables": [{"delete": {"table": _table()}}]}


def rendering_digest(rendering: list[Command]) -> str:
    return hashlib.sha256(json.dumps(rendering, sort_keys=True).encode()).hexdigest()


# ---- the adapter ----------------------------------------------------------------------------------------


@dataclass
class KubeSpanTable:
    """Applies the table in the caller's network namespace and remembers what it applied.

    ``applies``/``deletes`` count kernel writes (tests and benches read them).
    """

    backend: LibNftTable = field(default_factory=lambda: LibNftTable(c.NFT_FAMILY, c.NFT_TABLE))
    applies: int = 0
    deletes: int = 0
    _applied: str | None = None  # digest of the rendering last applied
    _listed: str | None = None  # digest of the table as listed right after that
    _rendered: tuple[RoutedSet, int, list[Command], str] | None = None  # the last rendering

    def apply(self, routed: RoutedSet, mtu: int) -> bool:
        """Make the table match; True if the kernel was written to.

        Steady state costs one ``list table`` (a netlink dump, not a write):
        the rendering is compared with the last one applied, and the listing
        with the one taken right after that apply, so a table deleted or
        edited behind our back (``nft flush ruleset``) is restored.
        """
        rendering, digest = self._render(routed, mtu)
        listing = self.backend.list_table()
        if digest == self._applied and listing is not None and listing_digest(listing) == self._listed:
            return False
        self.backend.apply(build_batch(rendering, listing))
        self.applies += 1
        self._applied = digest
        self._listed = listing_digest(self.backend.list_table())
        return True

    def _render(self, routed: RoutedSet, mtu: int) -> tuple[list[Command], str]:
        """:func:`render_table` and its digest, memoised on the last (routed, mtu): the manager
        applies on every pass, and :func:`routed_set` hands back the same RoutedSet while
        nothing changed (an equal one is compared, which is cheaper than rendering again)."""
        last = self._rendered
        if last is not None and last[1] == mtu and (last[0] is routed or last[0] == routed):
            return last[2], last[3]
        rendering = render_table(routed, mtu)
        digest = rendering_digest(rendering)
        self._rendered = (routed, mtu, rendering, digest)
        return rendering, digest

    @property
    def record(self) -> tuple[str, str] | None:
        """(rendering digest, listing digest) of the last apply, for the ownership records: a
        restarted daemon passes it back (:meth:`adopt`) and an unchanged table is not rewritten."""
        if self._applied is None or self._listed is None:
            return None
        return self._applied, self._listed

    def adopt(self, record: tuple[str, str] | None) -> None:
        """Take over what a previous process applied (its :attr:`record`); wrong or stale records
        only cost one rewrite, since the kernel's listing is checked before anything is skipped."""
        self._applied, self._listed = record if record is not None else (None, None)

    def teardown(self) -> bool:
        """Delete the table (only ours); True if it existed."""
        self._applied = self._listed = None
        existed = self.backend.delete()
        self.deletes += int(existed)
        return existed

    def exists(self) -> bool:
        return self.backend.list_table() is not None
