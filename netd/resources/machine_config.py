"""MachineConfig (`config` namespace, id ``v1alpha1``): the loaded machine config as a resource.

Config controllers take it as their input, so a new config (``apply-config``)
reaches them as an ordinary resource update. It holds the typed models of
``netd.config`` (the lower layer: resources import config, never the reverse).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from cosi import ResourceDefinition
from netd.config.loader import LoadedConfig
from netd.config.models import (
    Config,
    KubeSpanPeerConfig,
    LinkConfig,
    NetworkDefaultActionConfig,
    NetworkRuleConfig,
    RoutingRuleConfig,
)
from netd.resources.namespaces import CONFIG

MACHINE_CONFIG_TYPE = "MachineConfigs.config.talos.dev"
MACHINE_CONFIG_ID = "v1alpha1"


class MachineConfigSpec(BaseModel):
    """The documents networking reads; ``config`` is None when only extra documents were given."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    config: Config | None = None
    default_action: NetworkDefaultActionConfig | None = Field(default=None, alias="defaultAction")
    rules: list[NetworkRuleConfig] = Field(default_factory=list)
    routing_rules: list[RoutingRuleConfig] = Field(default_factory=list, alias="routingRules")
    link_configs: list[LinkConfig] = Field(default_factory=list, alias="linkConfigs")
    kubespan_peers: list[KubeSpanPeerConfig] = Field(default_factory=list, alias="kubespanPeers")

    @classmethod
    def from_loaded(cls, loaded: LoadedConfig) -> MachineConfigSpec:
        """The resource of a loaded config (machined, ``netctl plan`` and the tests agree on it)."""
        return cls(
            config=loaded.config,
            default_action=loaded.default_action,
            rules=loaded.rules,
            routing_rules=loaded.routing_rules,
            link_configs=loaded.link_configs,
            kubespan_peers=loaded.kubespan_peers,
        )


MACHINE_CONFIG_DEFINITION = ResourceDefinition(
    type=MACHINE_CONFIG_TYPE,
    display_type="MachineConfig",
    default_namespace=CONFIG,
    spec_model=MachineConfigSpec,
    aliases=("mc", "machineconfig", "machineconfigs"),
    sensitive=True,
)
