"""RoutingRuleSpec and RoutingRuleStatus: policy routing rules (routing-rules.md §3).

The key of a rule is (family, priority): ids are ``<family>/<priority 05d>``, and a
status for a further kernel rule at the same priority gets ``/<n>`` (n = 2, 3, ...)
in kernel dump order. KubeSpan's two rules (kubespan.md §7.3) are RoutingRuleSpecs too.
"""

from __future__ import annotations

from cosi import ResourceDefinition
from netd.resources.base import OptPrefix, Spec
from netd.resources.enums import ConfigLayer, Family, RoutingRuleAction, RoutingTable
from netd.resources.namespaces import NETWORK

ROUTING_RULE_SPEC_TYPE = "RoutingRuleSpecs.net.talos.dev"
ROUTING_RULE_STATUS_TYPE = "RoutingRuleStatuses.net.talos.dev"

#: Priorities no config may use: the kernel's local (0), main (32766) and default
#: (32767) rules, and KubeSpan's (32500, kubespan.md §7.3).
RESERVED_PRIORITIES = frozenset({0, 32500, 32766, 32767})
#: The highest priority a RoutingRuleConfig may name (routing-rules.md §1).
MAX_CONFIG_PRIORITY = 32765


def routing_rule_id(family: Family, priority: int, n: int = 1) -> str:
    """``inet4/01000``; ``inet4/01000/2`` for the second kernel rule at that priority."""
    base = f"{family}/{priority:05d}"
    return base if n <= 1 else f"{base}/{n}"


class RoutingRuleStatus(Spec):
    """A kernel rule (any family, foreign and the kernel's own included). ``table`` is the
    lookup table of a ``unicast`` rule (0 for the other actions); ``fw_mask`` 0 with a
    mark set means "all bits" (the kernel's default mask 0xffffffff)."""

    OMITEMPTY = frozenset({"src", "dst", "iif_name", "oif_name", "fw_mark", "fw_mask"})

    family: Family = Family.INET4
    src: OptPrefix = None
    dst: OptPrefix = None
    table: RoutingTable = RoutingTable.UNSPEC
    priority: int = 0
    action: RoutingRuleAction = RoutingRuleAction.UNICAST
    iif_name: str = ""
    oif_name: str = ""
    fw_mark: int = 0
    fw_mask: int = 0


class RoutingRuleSpec(RoutingRuleStatus):
    """A desired rule: the status fields plus the config layer it came from."""

    layer: ConfigLayer = ConfigLayer.DEFAULT

    def id(self) -> str:
        return routing_rule_id(self.family, self.priority)


ROUTING_RULE_SPEC_DEFINITION = ResourceDefinition(
    type=ROUTING_RULE_SPEC_TYPE,
    display_type="RoutingRuleSpec",
    default_namespace=NETWORK,
    spec_model=RoutingRuleSpec,
    aliases=("routingrulespec", "routingrulespecs", "rulespec", "rulespecs"),
    print_columns=(
        ("PRIORITY", "{.priority}"),
        ("SRC", "{.src}"),
        ("DST", "{.dst}"),
        ("TABLE", "{.table}"),
        ("ACTION", "{.action}"),
    ),
)
ROUTING_RULE_STATUS_DEFINITION = ResourceDefinition(
    type=ROUTING_RULE_STATUS_TYPE,
    display_type="RoutingRuleStatus",
    default_namespace=NETWORK,
    spec_model=RoutingRuleStatus,
    aliases=("routingrule", "routingrules", "routingrulestatus", "routingrulestatuses", "rule", "rules"),
    print_columns=(
        ("PRIORITY", "{.priority}"),
        ("SRC", "{.src}"),
        ("DST", "{.dst}"),
        ("TABLE", "{.table}"),
        ("ACTION", "{.action}"),
    ),
)
