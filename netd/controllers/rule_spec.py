"""RoutingRuleSpecController: merged RoutingRuleSpecs → kernel policy routing rules
(routing-rules.md §4).

The key of a rule is (family, priority). A kernel rule at the key that equals
the spec is adopted (no write). One that differs and was created by us (its
Applied record matches it) is deleted and the spec's rule added, in one
batch. One that differs and is foreign is left alone and reported once
(``rule at priority N is not ours``); the spec stays pending until that rule
goes (a rule event triggers the next pass). The kernel's own rules (priority
0, 32766, 32767) can never be a spec's: the config refuses those priorities.

Equality is on what ``ip rule`` shows: family, priority, source and
destination prefixes, table (for ``unicast``), action, interface names, mark
and mask, tos. A mark without a mask is stored by the kernel with the mask
0xffffffff, so the comparison does the same; the rule's protocol is not
compared (a hand-made equal rule is adopted whatever its protocol), but ours
are added as ``proto static``, as config routes are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cosi import Context
from netd.kernel import rtnl
from netd.kernel.netlink import RULE_GROUPS
from netd.kernel.rtnl import KernelError, Rtnl, describe_rule
from netd.kernel.rtnl_codec import RuleRecord, new_rule
from netd.resources.enums import RouteProtocol, RoutingRuleAction, RoutingTable
from netd.resources.routing_rule import ROUTING_RULE_SPEC_TYPE, RoutingRuleSpec

from .kernel_spec import Batch, KernelSpecController, Owner, SpecItem

NAME = "network.RoutingRuleSpecController"
APPLIED_KIND = "rule"
#: A mark without a mask matches all of its bits (the kernel's default mask).
FULL_MASK = 0xFFFFFFFF

#: (family, priority).
RuleKey = tuple[int, int]
#: Everything compared of a rule (see the module docstring); addresses as integers. The
#: Applied record keeps it (JSON) beside the rule's ``ip rule`` text.
RuleIdent = tuple[Any, ...]


def rule_key(r: RuleRecord) -> RuleKey:
    return (r.family, r.priority or 0)


def _ip(a: object, plen: int) -> int | None:
    # ints, not text: formatting an address costs more than the rest of the ident
    return int(a) if a is not None and plen and not isinstance(a, bytes) else None  # type: ignore[call-overload]


def rule_ident(r: RuleRecord) -> RuleIdent:
    mark = r.fwmark or 0
    mask = r.fwmask if r.fwmask is not None else (FULL_MASK if mark else 0)
    unicast = r.action == int(RoutingRuleAction.UNICAST)
    return (
        r.family,
        r.priority or 0,
        _ip(r.src, r.src_len),
        r.src_len,
        _ip(r.dst, r.dst_len),
        r.dst_len,
        r.full_table if unicast else 0,
        r.action,
        r.iifname or "",
        r.oifname or "",
        mark,
        mask,
        r.tos,
    )


def desired_rule(spec: RoutingRuleSpec) -> RuleRecord:
    """The kernel rule a spec asks for: table ``unspec`` means ``main`` for a lookup rule,
    the other actions have no table."""
    unicast = spec.action == RoutingRuleAction.UNICAST
    table = (int(spec.table) or int(RoutingTable.MAIN)) if unicast else 0
    return new_rule(
        int(spec.family),
        spec.priority,
        action=int(spec.action),
        table=table,
        src=spec.src,
        dst=spec.dst,
        iifname=spec.iif_name,
        oifname=spec.oif_name,
        fwmark=spec.fw_mark or None,
        fwmask=(spec.fw_mask or None) if spec.fw_mark else None,
        protocol=int(RouteProtocol.STATIC),
    )


def index_rules(rules: Iterable[RuleRecord]) -> dict[RuleKey, list[RuleRecord]]:
    index: dict[RuleKey, list[RuleRecord]] = {}
    for r in rules:
        index.setdefault(rule_key(r), []).append(r)
    return index


@dataclass(frozen=True)
class RulePlan:
    """Adopt (nothing), or delete ours and add; ``blocked`` = a foreign rule is in the way."""

    delete: tuple[RuleRecord, ...] = ()
    add: RuleRecord | None = None
    blocked: RuleRecord | None = None


def plan_rule(
    want: RuleRecord, kernel: Iterable[RuleRecord], ours: RuleIdent | None, ident: RuleIdent | None = None
) -> RulePlan:
    """``kernel``: the rules at the spec's key; ``ours``: the ident we recorded for it;
    ``ident``: the desired rule's (computed when not given)."""
    at_key = list(kernel)
    ident = ident if ident is not None else rule_ident(want)
    if any(rule_ident(k) == ident for k in at_key):
        return RulePlan()
    mine = tuple(k for k in at_key if ours is not None and rule_ident(k) == ours)
    foreign = [k for k in at_key if k not in mine]
    if foreign:
        return RulePlan(blocked=foreign[0])
    return RulePlan(delete=mine, add=want)


def _recorded_ident(data: dict[str, Any] | None) -> RuleIdent | None:
    ident = (data or {}).get("ident")
    return tuple(ident) if isinstance(ident, list) else None


class RoutingRuleSpecController(KernelSpecController[RoutingRuleSpec, dict[RuleKey, list[RuleRecord]]]):
    name = NAME
    spec_type = ROUTING_RULE_SPEC_TYPE
    spec_model = RoutingRuleSpec
    applied_kind = APPLIED_KIND
    groups = RULE_GROUPS
    what = "rule"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._blocked: dict[str, RuleIdent] = {}  # spec ID → the foreign rule reported
        # spec ID → (spec, desired rule, its ident): a spec is converted once, not per pass
        self._wants: dict[str, tuple[RoutingRuleSpec, RuleRecord, RuleIdent]] = {}

    def _want(self, item: SpecItem[RoutingRuleSpec]) -> tuple[RuleRecord, RuleIdent]:
        cached = self._wants.get(item.id)
        if cached is not None and (cached[0] is item.spec or cached[0] == item.spec):
            return cached[1], cached[2]
        want = desired_rule(item.spec)
        ident = rule_ident(want)
        self._wants[item.id] = (item.spec, want, ident)
        return want, ident

    def order(self, items: list[SpecItem[RoutingRuleSpec]]) -> list[SpecItem[RoutingRuleSpec]]:
        return sorted(items, key=lambda s: (s.spec.priority, s.id))

    async def observe(self, kernel: Rtnl) -> dict[RuleKey, list[RuleRecord]]:
        return index_rules(await kernel.rules())

    def _ours(self, index: dict[RuleKey, list[RuleRecord]], data: dict[str, Any] | None) -> list[RuleRecord]:
        ident = _recorded_ident(data)
        if ident is None or len(ident) < 2:
            return []
        return [k for k in index.get((ident[0], ident[1]), []) if rule_ident(k) == ident]

    def teardown(
        self,
        item: SpecItem[RoutingRuleSpec],
        obs: dict[RuleKey, list[RuleRecord]],
        batch: Batch,
        owner: Owner[RoutingRuleSpec],
        recorded: bool,
    ) -> None:
        data = self.applied.items(APPLIED_KIND).get(item.id) if recorded else None
        for k in self._ours(obs, data):
            batch.delete(owner, id(k), rtnl.delete_rule(k))

    def stale(
        self,
        rec_id: str,
        data: dict[str, Any],
        obs: dict[RuleKey, list[RuleRecord]],
        batch: Batch,
        owner: Owner[RoutingRuleSpec],
    ) -> None:
        for k in self._ours(obs, data):
            batch.delete(owner, id(k), rtnl.delete_rule(k))

    def plan(
        self,
        ctx: Context,
        item: SpecItem[RoutingRuleSpec],
        obs: dict[RuleKey, list[RuleRecord]],
        batch: Batch,
        recorded: dict[str, Any] | None,
    ) -> Owner[RoutingRuleSpec] | str | None:
        want, ident = self._want(item)
        bucket = obs.get(rule_key(want), [])
        if batch.doomed and bucket:
            bucket = [k for k in bucket if id(k) not in batch.doomed]
        p = plan_rule(want, bucket, _recorded_ident(recorded), ident)
        if p.blocked is not None:
            ident = rule_ident(p.blocked)
            if self._blocked.get(item.id) != ident:
                self._blocked[item.id] = ident
                ctx.log.warning(
                    "%s: rule at priority %d is not ours (%s); left alone, spec pending",
                    item.id,
                    item.spec.priority,
                    describe_rule(p.blocked),
                )
            return None
        self._blocked.pop(item.id, None)
        if p.add is None:
            return None
        o: Owner[RoutingRuleSpec] = Owner(item.id, item=item, data=want)
        for k in p.delete:
            batch.delete(o, id(k), rtnl.delete_rule(k))
        batch.add(o, rtnl.add_rule(p.add))
        return o

    def intent(self, owner: Owner[RoutingRuleSpec]) -> dict[str, Any] | None:
        want: RuleRecord = owner.data
        return {"rule": describe_rule(want), "ident": list(rule_ident(want))}

    def reclaim(
        self, item: SpecItem[RoutingRuleSpec], obs: dict[RuleKey, list[RuleRecord]]
    ) -> dict[str, Any] | None:
        want, _ident = self._want(item)
        record = {"rule": describe_rule(want), "ident": list(rule_ident(want))}
        return record if self.exists(item.id, record, obs) else None

    def exists(self, rec_id: str, data: dict[str, Any], obs: dict[RuleKey, list[RuleRecord]]) -> bool:
        return bool(self._ours(obs, data))

    def commit(
        self, ctx: Context, owner: Owner[RoutingRuleSpec], after: Any, errors: Sequence[KernelError | None]
    ) -> dict[str, Any] | None:
        want: RuleRecord = owner.data
        self.note(ctx, "%s: rule %s added", owner.key, describe_rule(want))
        return self.intent(owner)

    def forget(self, spec_id: str) -> None:
        self._blocked.pop(spec_id, None)
        self._wants.pop(spec_id, None)
