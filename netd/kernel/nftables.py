"""NfTablesChain resources → one libnftables JSON batch for the ``inet talos`` table (netd.md §8.3, §8.4).

Two halves:

* Pure compilation. :func:`compile_ruleset` turns the chain resources into the
  JSON commands that build them (table, base chains, rules with inline
  anonymous sets; libnftables names those sets ``__set<N>``). :func:`build_batch`
  wraps that in the one transaction the controller commits: ensure the table
  exists, flush it, delete every chain it has now, recreate ours. The batch is
  a single netlink transaction, so the firewall is never seen half-built.
* A thin adapter, :class:`LibNftables`, that runs a batch and lists the table
  through libnftables (``import nftables``, Debian's libnftables1). It reports
  a kernel without nf_tables, or a missing library, as :class:`NftablesError`
  so the controller can log it and keep the node running (decisions.md
  "Degraded, not dead").

Only the ``inet talos`` table is ever touched: foreign tables, including
KubeSpan's ``inet talos_kubespan``, are never listed, flushed or deleted.

Address and port sets are computed here as half-open integer intervals
``[lo, hi)`` (the kernel's interval-set representation: a port range
``lo-hi`` is ``[lo, hi+1)``), merged so no two elements overlap or touch,
then written as nft elements (single value, prefix, or inclusive range).
"""

from __future__ import annotations

import copy
import enum
import errno
import hashlib
import ipaddress
import json
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from typing import Protocol as TypingProtocol

from netd.resources.enums import ConntrackState, MatchOperator, NfTablesVerdict, Protocol
from netd.resources.nftables import (
    NfTablesAddressMatch,
    NfTablesChain,
    NfTablesIfNameMatch,
    NfTablesMark,
    NfTablesPortMatch,
    NfTablesRule,
)

FAMILY = "inet"
TABLE = "talos"

V4_BITS = 32
V6_BITS = 128
V4_ALL = (0, 1 << V4_BITS)
V6_ALL = (0, 1 << V6_BITS)

Interval = tuple[int, int]  # half-open [lo, hi)
Expr = dict[str, Any]
Command = dict[str, Any]

_L4PROTO = {Protocol.ICMP: "icmp", Protocol.TCP: "tcp", Protocol.UDP: "udp", Protocol.ICMPV6: "ipv6-icmp"}
_CT_STATE = {
    ConntrackState.NEW: "new",
    ConntrackState.RELATED: "related",
    ConntrackState.ESTABLISHED: "established",
    ConntrackState.INVALID: "invalid",
}


# ---- interval arithmetic ----------------------------------------------------------------


def merge_intervals(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted union; overlapping and touching intervals become one (nft refuses overlaps)."""
    out: list[Interval] = []
    for lo, hi in sorted(i for i in intervals if i[0] < i[1]):
        if out and lo <= out[-1][1]:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def subtract_intervals(base: Iterable[Interval], remove: Iterable[Interval]) -> list[Interval]:
    """``base - remove`` as merged intervals."""
    result = merge_intervals(base)
    for rlo, rhi in merge_intervals(remove):
        nxt: list[Interval] = []
        for lo, hi in result:
            if rhi <= lo or rlo >= hi:
                nxt.append((lo, hi))
                continue
            if lo < rlo:
                nxt.append((lo, rlo))
            if rhi < hi:
                nxt.append((rhi, hi))
        result = nxt
    return result


def port_intervals(match: NfTablesPortMatch) -> list[Interval]:
    """Port ranges ``lo-hi`` (inclusive, as in the resource) as merged ``[lo, hi+1)``."""
    return merge_intervals((r.lo, r.hi + 1) for r in match.ranges if r.lo <= r.hi)


def _prefix_interval(prefix: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> Interval:
    net = prefix.network  # masked: host bits of the config text do not matter
    return int(net.network_address), int(net.broadcast_address) + 1


def address_intervals(match: NfTablesAddressMatch) -> tuple[list[Interval], list[Interval]]:
    """S = union(include) - union(exclude), split into IPv4 and IPv6 intervals.

    Excludes are subtracted from the union of *all* includes (netd.md §8.2 note).
    """
    inc4 = [_prefix_interval(p) for p in match.include_subnets if p.version == 4]
    inc6 = [_prefix_interval(p) for p in match.include_subnets if p.version == 6]
    exc4 = [_prefix_interval(p) for p in match.exclude_subnets if p.version == 4]
    exc6 = [_prefix_interval(p) for p in match.exclude_subnets if p.version == 6]
    return subtract_intervals(inc4, exc4), subtract_intervals(inc6, exc6)


# ---- nft JSON elements -----------------------------------------------------------------


def _addr_text(value: int, bits: int) -> str:
    if bits == V4_BITS:
        return str(ipaddress.IPv4Address(value))
    return str(ipaddress.IPv6Address(value))


def _address_element(iv: Interval, bits: int) -> Any:
    lo, hi = iv
    size = hi - lo
    if size == 1:
        return _addr_text(lo, bits)
    if size & (size - 1) == 0 and lo % size == 0:
        return {"prefix": {"addr": _addr_text(lo, bits), "len": bits - size.bit_length() + 1}}
    return {"range": [_addr_text(lo, bits), _addr_text(hi - 1, bits)]}


def _port_element(iv: Interval) -> Any:
    lo, hi = iv
    return lo if hi - lo == 1 else {"range": [lo, hi - 1]}


def _match(left: Any, right: Any, op: str = "==") -> Expr:
    return {"match": {"op": op, "left": left, "right": right}}


def _meta(key: str) -> Expr:
    return {"meta": {"key": key}}


def _mark_expr(m: NfTablesMark) -> Expr:
    """``(meta mark & mask) ^ xor``."""
    return {"^": [{"&": [_meta("mark"), m.mask]}, m.xor]}


class _Empty(Exception):
    """A match that no packet can satisfy: the rule compiles to nothing."""


def _ifname_match(key: str, m: NfTablesIfNameMatch) -> list[Expr]:
    names = list(m.interface_names)
    negate = m.operator == MatchOperator.NOT_EQUAL
    if not names:
        if negate:
            return []  # "not in {}" is every packet
        raise _Empty
    op = "!=" if negate else "=="
    if len(names) == 1:
        return [_match(_meta(key), names[0], op)]
    return [_match(_meta(key), {"set": names}, op)]


def _ct_match(states: Sequence[ConntrackState]) -> list[Expr]:
    names = [_CT_STATE[s] for s in states]
    if not names:
        raise _Empty
    if len(names) == 1:
        return [_match({"ct": {"key": "state"}}, names[0], "in")]  # ct state & bit != 0
    return [_match({"ct": {"key": "state"}}, {"set": names})]


def _port_lookup(protocol: Protocol, field_name: str, m: NfTablesPortMatch) -> list[Expr]:
    ivs = port_intervals(m)
    if not ivs:
        raise _Empty
    proto = {Protocol.TCP: "tcp", Protocol.UDP: "udp"}.get(protocol, "th")
    return [
        _match(
            {"payload": {"protocol": proto, "field": field_name}}, {"set": [_port_element(i) for i in ivs]}
        )
    ]


# ---- rule compilation --------------------------------------------------------------------


class _Use(enum.Enum):
    UNUSED = 0  # no family-specific constraint so far
    ACTIVE = 1  # this family gets its own rule
    DISABLED = 2  # no packet of this family can match: no rule for it


@dataclass
class _FamilyPart:
    nfproto: str
    payload: str  # "ip" / "ip6"
    bits: int
    use: _Use = _Use.UNUSED
    exprs: list[Expr] = field(default_factory=list)

    def activate(self, exprs: Sequence[Expr] = ()) -> None:
        if self.use is _Use.DISABLED:
            return
        self.use = _Use.ACTIVE
        self.exprs.extend(exprs)

    def disable(self) -> None:
        self.use = _Use.DISABLED
        self.exprs = []


def _address_part(part: _FamilyPart, ivs: list[Interval], covers_all: bool, invert: bool, key: str) -> None:
    """Steps 4/5 of netd.md §8.3 for one family."""
    if (covers_all and not invert) or (invert and not ivs):
        part.activate()  # any address of this family: the family check alone
    elif (not covers_all and invert) or (not invert and ivs):
        elems = [_address_element(i, part.bits) for i in ivs]
        left = {"payload": {"protocol": part.payload, "field": key}}
        part.activate([_match(left, {"set": elems}, "!=" if invert else "==")])
    else:
        part.disable()


def compile_rule(rule: NfTablesRule) -> list[list[Expr]]:
    """One NfTablesRule → 0, 1 or 2 nft rules (lists of JSON expressions), IPv4 first."""
    try:
        prefix: list[Expr] = []
        if rule.match_i_if_name is not None:
            prefix += _ifname_match("iifname", rule.match_i_if_name)
        if rule.match_o_if_name is not None:
            prefix += _ifname_match("oifname", rule.match_o_if_name)
        if rule.match_mark is not None:
            prefix.append(_match(_mark_expr(rule.match_mark), rule.match_mark.value))
        if rule.match_conntrack_state is not None:
            prefix += _ct_match(rule.match_conntrack_state.states)
        l4 = rule.match_layer4
        if l4 is not None:
            prefix.append(_match(_meta("l4proto"), _L4PROTO.get(l4.protocol, int(l4.protocol))))

        v4 = _FamilyPart("ipv4", "ip", V4_BITS)
        v6 = _FamilyPart("ipv6", "ip6", V6_BITS)
        for match, key in ((rule.match_source_address, "saddr"), (rule.match_destination_address, "daddr")):
            if match is None:
                continue
            ivs4, ivs6 = address_intervals(match)
            if not ivs4 and not ivs6 and not match.invert:
                return []  # matches no address at all
            all4, all6 = ivs4 == [V4_ALL], ivs6 == [V6_ALL]
            if all4 and all6 and match.invert:
                return []  # "not any address": nothing
            _address_part(v4, ivs4, all4, match.invert, key)
            _address_part(v6, ivs6, all6, match.invert, key)

        if rule.clamp_mss is not None:
            for part, overhead in ((v4, 40), (v6, 60)):
                mss = max(rule.clamp_mss.mtu - overhead, 0)
                opt = {"tcp option": {"name": "maxseg", "field": "size"}}
                flags = {"&": [{"payload": {"protocol": "tcp", "field": "flags"}}, ["syn", "rst"]]}
                part.activate(
                    [
                        _match(flags, "syn"),
                        _match(opt, mss, ">"),
                        {"mangle": {"key": opt, "value": mss}},
                    ]
                )

        suffix: list[Expr] = []
        if l4 is not None:
            if l4.match_source_port is not None:
                suffix += _port_lookup(l4.protocol, "sport", l4.match_source_port)
            if l4.match_destination_port is not None:
                suffix += _port_lookup(l4.protocol, "dport", l4.match_destination_port)
        if rule.match_limit is not None:
            rate = rule.match_limit.packet_rate_per_second
            suffix.append({"limit": {"rate": rate, "per": "second", "burst": rate}})
        if rule.set_mark is not None:
            suffix.append({"mangle": {"key": _meta("mark"), "value": _mark_expr(rule.set_mark)}})
        if rule.anonymous_counter:
            suffix.append({"counter": None})
        if rule.verdict is not None:
            suffix.append({"accept": None} if rule.verdict == NfTablesVerdict.ACCEPT else {"drop": None})
    except _Empty:
        return []

    parts = [p for p in (v4, v6) if p.use is _Use.ACTIVE]
    if v4.use is _Use.UNUSED and v6.use is _Use.UNUSED:
        body = prefix + suffix
        return [body] if body else []
    out: list[list[Expr]] = []
    for p in parts:
        family = [_match(_meta("nfproto"), p.nfproto), *p.exprs]
        out.append(copy.deepcopy(prefix + family + suffix))
    return out


# ---- chains, ruleset, batch ----------------------------------------------------------------


def _table_obj() -> dict[str, Any]:
    return {"family": FAMILY, "name": TABLE}


def compile_chain(name: str, chain: NfTablesChain) -> list[Command]:
    """``add chain`` (a base chain) followed by ``add rule`` for each compiled rule."""
    cmds: list[Command] = [
        {
            "add": {
                "chain": {
                    "family": FAMILY,
                    "table": TABLE,
                    "name": name,
                    "type": chain.type or "filter",
                    "hook": str(chain.hook),
                    "prio": int(chain.priority),
                    "policy": "accept" if chain.policy == NfTablesVerdict.ACCEPT else "drop",
                }
            }
        }
    ]
    for rule in chain.rules:
        for expr in compile_rule(rule):
            cmds.append({"add": {"rule": {"family": FAMILY, "table": TABLE, "chain": name, "expr": expr}}})
    return cmds


def compile_ruleset(chains: Mapping[str, NfTablesChain]) -> list[Command]:
    """The desired content of ``inet talos``: the table, then every chain in ID order."""
    cmds: list[Command] = [{"add": {"table": _table_obj()}}]
    for name in sorted(chains):
        cmds += compile_chain(name, chains[name])
    return cmds


def build_batch(ruleset: Sequence[Command], existing_chains: Iterable[str]) -> dict[str, Any]:
    """One transaction: ensure the table, flush its rules, delete every chain it has, recreate ours.

    ``ruleset`` is :func:`compile_ruleset` output (starting with ``add table``,
    which never fails on an existing table). Flushing first releases the rules
    (and their anonymous sets), so the chain deletions cannot fail with EBUSY.
    """
    cmds: list[Command] = [{"add": {"table": _table_obj()}}, {"flush": {"table": _table_obj()}}]
    for name in sorted(set(existing_chains)):
        cmds.append({"delete": {"chain": {"family": FAMILY, "table": TABLE, "name": name}}})
    cmds += [c for c in ruleset if c != {"add": {"table": _table_obj()}}]
    return {"nftables": cmds}


def ruleset_digest(ruleset: Sequence[Command]) -> str:
    """A stable fingerprint of compiled JSON (what the controller compares to skip a no-op apply)."""
    return hashlib.sha256(json.dumps(list(ruleset), sort_keys=True).encode()).hexdigest()


def chains_in_listing(listing: Mapping[str, Any]) -> list[str]:
    """Chain names of ``inet talos`` in a ``list table`` JSON answer."""
    out: list[str] = []
    for item in listing.get("nftables", []):
        ch = item.get("chain") if isinstance(item, dict) else None
        if isinstance(ch, dict) and ch.get("family") == FAMILY and ch.get("table") == TABLE:
            out.append(str(ch.get("name")))
    return out


def _normalize(value: Any) -> Any:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k in ("handle", "metainfo"):
                continue
            if k == "counter" and isinstance(v, dict):
                out[k] = None  # packet/byte counts change all the time
                continue
            out[k] = _normalize(v)
        return out
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    return value


def listing_digest(listing: Mapping[str, Any] | None) -> str:
    """Fingerprint of the table as the kernel has it, minus handles and counter values.

    Recorded right after an apply; a different digest later means someone else
    changed ``inet talos`` and the controller re-applies.
    """
    items = [] if listing is None else [i for i in listing.get("nftables", []) if "metainfo" not in i]
    return hashlib.sha256(json.dumps(_normalize(items), sort_keys=True).encode()).hexdigest()


# ---- the libnftables adapter -------------------------------------------------------------------


class NftablesError(Exception):
    """nftables refused a batch, or is not usable here (no library, no nf_tables in the kernel)."""


class NftBackend(TypingProtocol):
    def list_table(self) -> dict[str, Any] | None:
        """``list table inet talos`` as JSON; None when the table does not exist."""
        ...

    def apply(self, batch: dict[str, Any]) -> None:
        """Commit one batch (one transaction); raise :class:`NftablesError` on failure."""
        ...


#: NETLINK_NETFILTER from linux/netlink.h: the socket family libnftables talks over.
NETLINK_NETFILTER = 12


def netfilter_unavailable() -> str | None:
    """Why libnftables cannot work in this network namespace (None: it can).

    libnftables 1.0.x opens its netfilter netlink socket while it creates a
    context and calls ``exit()`` when that fails (a kernel without nfnetlink,
    e.g. our UML kernel), which would take the whole daemon down. Opening the
    same socket from Python first (it fails with EPROTONOSUPPORT there) turns
    that into an error the controller reports (decisions.md "Degraded, not dead").
    """
    try:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    except OSError as e:
        if e.errno == errno.EPROTONOSUPPORT:
            return "the kernel has no nfnetlink (nf_tables)"
        return f"cannot open a netfilter netlink socket: {e.strerror or e}"
    s.close()
    return None


class LibNftables:
    """Runs JSON through libnftables in the caller's network namespace.

    The library is opened lazily, so a node without it (or a kernel without
    nf_tables) only fails here, at apply time, with an error the controller logs.
    """

    def __init__(self) -> None:
        self._nft: Any = None

    def _ctx(self) -> Any:
        if self._nft is None:
            why = netfilter_unavailable()
            if why is not None:
                raise NftablesError(f"nftables unavailable: {why}")
            try:
                import nftables  # Debian's libnftables1 through the pip-nftables binding

                nft = nftables.Nftables()
            except (ImportError, OSError) as e:
                raise NftablesError(f"libnftables unavailable: {e}") from e
            nft.set_json_output(True)
            nft.set_handle_output(False)
            self._nft = nft
        return self._nft

    def _run(self, doc: dict[str, Any]) -> tuple[int, Any, str]:
        rc, out, err = self._ctx().json_cmd(doc)
        return int(rc), out, str(err or "").strip()

    def list_table(self) -> dict[str, Any] | None:
        rc, out, err = self._run({"nftables": [{"list": {"table": _table_obj()}}]})
        if rc != 0:
            if "No such file or directory" in err:
                return None
            raise NftablesError(f"list table {FAMILY} {TABLE}: {err or f'rc={rc}'}")
        return out if isinstance(out, dict) else {"nftables": []}

    def apply(self, batch: dict[str, Any]) -> None:
        rc, _out, err = self._run(batch)
        if rc != 0:
            raise NftablesError(err or f"libnftables rc={rc}")
