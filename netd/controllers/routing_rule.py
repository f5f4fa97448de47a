"""RoutingRule config: the ``configuration`` layer of RoutingRuleSpec (routing-rules.md §2).

Each RoutingRuleConfig document becomes one spec per family it applies to; the
merge (merge.py) folds the layers into ``network``, where the rule spec
controller applies them. KubeSpan's rules come from the operator layer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydantic import BaseModel

from cosi import Context, Input
from netd.config.models import RoutingRuleConfig
from netd.config.routing import parse_rule_prefix, parse_table
from netd.resources.enums import ConfigLayer, Family, RoutingRuleAction, RoutingTable
from netd.resources.routing_rule import ROUTING_RULE_SPEC_TYPE, RoutingRuleSpec

from .sources import MACHINE_CONFIG_INPUT, LayeredConfigController, layered, machine_config


def rule_families(rule: RoutingRuleConfig) -> list[Family]:
    """IPv6 when src or dst is IPv6, IPv4 when either is IPv4, both when neither is
    given (routing-rules.md §2; the loader rejected a src/dst family mismatch)."""
    given = [parse_rule_prefix(text) for text in (rule.src, rule.dst) if text]
    if not given:
        return [Family.INET4, Family.INET6]
    return [Family.INET6 if given[0].version == 6 else Family.INET4]


def config_rule(rule: RoutingRuleConfig, family: Family) -> RoutingRuleSpec:
    """One family's spec of a validated document. A non-unicast rule looks up no table
    (``table`` 0), whatever the document says."""
    action = RoutingRuleAction.from_name(rule.action or "unicast")
    table = RoutingTable.UNSPEC
    if action == RoutingRuleAction.UNICAST:
        table = RoutingTable(parse_table(rule.table))
    return RoutingRuleSpec(
        family=family,
        src=parse_rule_prefix(rule.src) if rule.src else None,
        dst=parse_rule_prefix(rule.dst) if rule.dst else None,
        table=table,
        priority=rule.priority,
        action=action,
        iif_name=rule.iif_name,
        oif_name=rule.oif_name,
        fw_mark=rule.fw_mark,
        fw_mask=rule.fw_mask,
        layer=ConfigLayer.CONFIGURATION,
    )


def config_rules(rules: Iterable[RoutingRuleConfig]) -> list[RoutingRuleSpec]:
    return [config_rule(r, family) for r in rules for family in rule_families(r)]


class RoutingRuleConfigController(LayeredConfigController):
    """Machine config → ``configuration/<family>/<priority 05d>`` RoutingRuleSpecs."""

    name = "network.RoutingRuleConfigController"
    spec_type = ROUTING_RULE_SPEC_TYPE

    def inputs(self) -> Sequence[Input]:
        return [MACHINE_CONFIG_INPUT]

    def desired(self, ctx: Context) -> dict[str, BaseModel]:
        mc = machine_config(ctx)
        return layered(config_rules(mc.routing_rules if mc is not None else []), "configuration")
