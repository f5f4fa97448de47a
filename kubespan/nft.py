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

import hashlib
import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubespan import constants as c
from kubespan.peer_state import PeerState
from kubespan.peers import PeerSpec
from netd.kernel.nft_tables import LibNftTable
from netd.kernel.nftables import NftablesError, listing_digest

Command = dict[str, Any]
Expr = dict[str, Any]

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
    """
    v4: list[ipaddress.IPv4Network] = []
    v6: list[ipaddress.IPv6Network] = []
    for spec in specs:
        if not force_routing and states.get(spec.public_key) is not PeerState.UP:
            continue
        for net in spec.allowed_ips:
            if isinstance(net, ipaddress.IPv4Network):
                v4.append(net)
            else:
                v6.append(net)
    return RoutedSet(tuple(ipaddress.collapse_addresses(v4)), tuple(ipaddress.collapse_addresses(v6)))


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

    def apply(self, routed: RoutedSet, mtu: int) -> bool:
        """Make the table match; True if the kernel was written to.

        Steady state costs one ``list table`` (a netlink dump, not a write):
        the rendering is compared with the last one applied, and the listing
        with the one taken right after that apply, so a table deleted or
        edited behind our back (``nft flush ruleset``) is restored.
        """
        rendering = render_table(routed, mtu)
        digest = rendering_digest(rendering)
        listing = self.backend.list_table()
        if digest == self._applied and listing is not None and listing_digest(listing) == self._listed:
            return False
        self.backend.apply(build_batch(rendering, listing))
        self.applies += 1
        self._applied = digest
        self._listed = listing_digest(self.backend.list_table())
        return True

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
