"""NodeAddressController: the node's addresses as other subsystems need them (netd.md §7.1).

``default`` (one address: hostname, /etc/hosts), ``current`` (on up links),
``routed`` (current minus external and SideroLink), ``accumulative`` (every
address ever seen while running), and each of those through every
NodeAddressFilter.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cosi import Context, Controller, Input, Output
from netd.netip import Prefix
from netd.resources.address import ADDRESS_STATUS_TYPE, AddressStatus
from netd.resources.enums import OperationalState, Scope
from netd.resources.ids import (
    NODE_ADDRESS_ACCUMULATIVE_ID,
    NODE_ADDRESS_CURRENT_ID,
    NODE_ADDRESS_DEFAULT_ID,
    NODE_ADDRESS_ROUTED_ID,
    filtered_node_address_id,
)
from netd.resources.link import LINK_STATUS_TYPE, LinkStatus
from netd.resources.namespaces import NETWORK
from netd.resources.nodeaddress import (
    NODE_ADDRESS_FILTER_TYPE,
    NODE_ADDRESS_TYPE,
    NodeAddress,
    NodeAddressFilter,
)

ADDRESS_STATUS_CONTROLLER = "network.AddressStatusController"
EXTERNAL_LINK = "external"
_LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))


@dataclass(frozen=True)
class Candidate:
    prefix: Prefix
    link: str
    from_kernel: bool  # owned by the address status controller (not a platform external IP)


def ip_key(p: Prefix) -> tuple[int, int, int]:
    """IPv4 before IPv6, then numerically, then by prefix length."""
    return (p.version, int(p.ip), p.network.prefixlen)


def is_candidate(a: AddressStatus) -> bool:
    if a.address is None or a.scope >= Scope.LINK:
        return False
    ip = a.address.ip
    if ip.is_loopback or ip.is_multicast:
        return False
    return not any(ip.version == n.version and ip in n for n in _LINK_LOCAL)


def link_up(s: LinkStatus) -> bool:
    return s.operational_state in (OperationalState.UP, OperationalState.UNKNOWN) and (
        not s.physical() or s.link_state
    )


def is_sidero_link(p: Prefix) -> bool:
    packed = p.ip.packed
    return p.version == 6 and packed[0] == 0xFD and packed[7] == 0x03


def _sorted_unique(prefixes: Iterable[Prefix]) -> list[Prefix]:
    return sorted(set(prefixes), key=ip_key)


def accumulate(existing: Sequence[Prefix], new: Iterable[Prefix]) -> list[Prefix]:
    """Add prefixes whose IP is not present yet (any length); never remove."""
    out = list(existing)
    ips = {p.ip for p in out}
    for p in new:
        if p.ip not in ips:
            out.append(p)
            ips.add(p.ip)
    return sorted(out, key=ip_key)


def compute(
    candidates: Sequence[Candidate],
    up_links: set[str],
    previous: dict[str, list[Prefix]],
    filters: dict[str, NodeAddressFilter],
) -> dict[str, list[Prefix]]:
    """Every NodeAddress list; a missing ``default`` key means "no default"."""
    current = _sorted_unique(
        c.prefix for c in candidates if c.link == EXTERNAL_LINK or (c.from_kernel and c.link in up_links)
    )
    routed = _sorted_unique(
        c.prefix for c in candidates
        if c.link != EXTERNAL_LINK and c.link in up_links and not is_sidero_link(c.prefix)
    )
    everything = [c.prefix for c in candidates]
    out: dict[str, list[Prefix]] = {
        NODE_ADDRESS_CURRENT_ID: current,
        NODE_ADDRESS_ROUTED_ID: routed,
        NODE_ADDRESS_ACCUMULATIVE_ID: accumulate(previous.get(NODE_ADDRESS_ACCUMULATIVE_ID, []), everything),
    }
    kernel = [c for c in candidates if c.from_kernel and c.link != EXTERNAL_LINK]
    prev_default = previous.get(NODE_ADDRESS_DEFAULT_ID, [])
    if prev_default and prev_default[0] in current:
        out[NODE_ADDRESS_DEFAULT_ID] = prev_default[:1]
    elif kernel:
        best = min(kernel, key=lambda c: (c.link, ip_key(c.prefix)))
        out[NODE_ADDRESS_DEFAULT_ID] = [best.prefix]
    for fid, f in filters.items():
        out[filtered_node_address_id(NODE_ADDRESS_CURRENT_ID, fid)] = f.apply(current)
        out[filtered_node_address_id(NODE_ADDRESS_ROUTED_ID, fid)] = f.apply(routed)
        acc_id = filtered_node_address_id(NODE_ADDRESS_ACCUMULATIVE_ID, fid)
        out[acc_id] = accumulate(previous.get(acc_id, []), f.apply(everything))
    return out


class NodeAddressController(Controller):
    name = "network.NodeAddressController"

    def inputs(self) -> Sequence[Input]:
        return [
            Input(NETWORK, ADDRESS_STATUS_TYPE),
            Input(NETWORK, LINK_STATUS_TYPE),
            Input(NETWORK, NODE_ADDRESS_FILTER_TYPE),
        ]

    def outputs(self) -> Sequence[Output]:
        return [Output(NETWORK, NODE_ADDRESS_TYPE)]

    async def reconcile(self, ctx: Context) -> None:
        up = set()
        for r in ctx.list(NETWORK, LINK_STATUS_TYPE):
            assert isinstance(r.spec, LinkStatus)
            if link_up(r.spec):
                up.add(r.id)
        cands = []
        for r in ctx.list(NETWORK, ADDRESS_STATUS_TYPE):
            a = r.spec
            assert isinstance(a, AddressStatus)
            if is_candidate(a) and a.address is not None:
                cands.append(Candidate(a.address, a.link_name, r.md.owner == ADDRESS_STATUS_CONTROLLER))
        filters = {}
        for r in ctx.list(NETWORK, NODE_ADDRESS_FILTER_TYPE):
            assert isinstance(r.spec, NodeAddressFilter)
            filters[r.id] = r.spec
        previous = {}
        for r in ctx.list(NETWORK, NODE_ADDRESS_TYPE):
            assert isinstance(r.spec, NodeAddress)
            previous[r.id] = list(r.spec.addresses)
        lists = compute(cands, up, previous, filters)
        desired = {k: NodeAddress(addresses=v) for k, v in lists.items()}
        ctx.reconcile_owned(NETWORK, NODE_ADDRESS_TYPE, desired)
