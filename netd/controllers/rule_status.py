"""RoutingRuleStatusController: every kernel policy routing rule as a RoutingRuleStatus
(routing-rules.md §3), foreign ones and the kernel's own included.

IDs are ``<family>/<priority 05d>``, then ``/<n>`` (n = 2, 3, ...) for further rules
at one priority in kernel dump order. That order is only known from a dump, and a
node has tens of rules, not thousands: any rule event (or link event: rules name
links) makes the next pass re-read the rules (one dump) and publish what changed.
Events, not polling; a burst of events costs one dump.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from cosi import Context
from netd.kernel import rtnl_events as ev
from netd.kernel.netlink import (
    AF_INET,
    AF_INET6,
    AF_UNSPEC,
    RTM_DELRULE,
    RTM_GETRULE,
    RTM_NEWRULE,
    RULE_GROUPS,
)
from netd.kernel.rtnl_codec import RuleRecord
from netd.netip import Prefix
from netd.resources.enums import Family, RoutingRuleAction, RoutingTable
from netd.resources.routing_rule import ROUTING_RULE_STATUS_TYPE, RoutingRuleStatus, routing_rule_id

from .netlink_status import NetlinkStatusController, publish, publish_all, rule_record


def _prefix(ip: object, plen: int) -> Prefix | None:
    if ip is None or isinstance(ip, bytes):
        return None
    return ipaddress.ip_interface((ip, plen))  # type: ignore[arg-type]


def rule_status(r: RuleRecord) -> RoutingRuleStatus:
    unicast = r.action == int(RoutingRuleAction.UNICAST)
    return RoutingRuleStatus(
        family=Family(r.family),
        src=_prefix(r.src, r.src_len),
        dst=_prefix(r.dst, r.dst_len),
        table=RoutingTable(r.full_table if unicast else 0),
        priority=r.priority or 0,
        action=RoutingRuleAction(r.action),
        iif_name=r.iifname or "",
        oif_name=r.oifname or "",
        fw_mark=r.fwmark or 0,
        fw_mask=r.fwmask or 0,
    )


def rule_statuses(rules: Iterable[RuleRecord]) -> dict[str, RoutingRuleStatus]:
    """Statuses by ID, in dump order (the second rule at a priority gets ``/2``)."""
    out: dict[str, RoutingRuleStatus] = {}
    seen: dict[tuple[int, int], int] = {}
    for r in rules:
        if r.family not in (AF_INET, AF_INET6):
            continue
        key = (r.family, r.priority or 0)
        seen[key] = seen.get(key, 0) + 1
        out[routing_rule_id(Family(r.family), r.priority or 0, seen[key])] = rule_status(r)
    return out


class RoutingRuleStatusController(NetlinkStatusController):
    name = "network.RoutingRuleStatusController"
    groups = RULE_GROUPS
    output_type = ROUTING_RULE_STATUS_TYPE

    async def resync(self, ctx: Context, family: int) -> None:
        self.resyncs += 1
        recs = [rule_record(m) for _t, m in await ev.dump(RTM_GETRULE)]
        want = rule_statuses(recs)
        before = self.model.ids()
        self.model.clear()
        for id_, status in want.items():
            self.model.add(id_, id_, status)
        if self.resyncs == 1:
            publish_all(ctx, self.output_type, self.model)
        else:
            publish(ctx, self.output_type, self.model, sorted(before | set(want)))

    def apply(self, mtype: int, message: bytes) -> set[str]:
        if mtype in (RTM_NEWRULE, RTM_DELRULE):
            self._resync_families.add(AF_UNSPEC)
        return set()
