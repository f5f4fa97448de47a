"""The plan: what the config and merge controllers make of a config, without applying it.

Shared by ``netctl plan`` and the tests: it seeds a fresh state with the
links and addresses of the current network namespace (read-only netlink
dumps), runs the controllers until they settle, and returns the specs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cosi import Resource, ResourceDefinition, Runtime, State
from netd.config.loader import LoadedConfig
from netd.controllers.catalog import config_controllers
from netd.kernel.snapshot import read_links_and_addresses
from netd.resources import register_all
from netd.resources.address import ADDRESS_STATUS_TYPE, AddressStatus
from netd.resources.link import LINK_STATUS_TYPE, LinkStatus
from netd.resources.machine_config import MACHINE_CONFIG_ID, MACHINE_CONFIG_TYPE, MachineConfigSpec
from netd.resources.namespaces import CONFIG, NETWORK, NETWORK_CONFIG
from netd.resources.nftables import NFTABLES_CHAIN_TYPE

PLAN_NAMESPACES = (NETWORK, NETWORK_CONFIG)
LINK_STATUS_OWNER = "network.LinkStatusController"
ADDRESS_STATUS_OWNER = "network.AddressStatusController"


class PlanError(Exception):
    pass


@dataclass
class PlanResult:
    groups: list[tuple[ResourceDefinition, list[Resource]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def resources(self) -> list[Resource]:
        return [r for _, items in self.groups for r in items]


def machine_config_spec(loaded: LoadedConfig) -> MachineConfigSpec:
    return MachineConfigSpec.from_loaded(loaded)


def planned(definition: ResourceDefinition) -> bool:
    """The types a plan shows: every *Spec type and the firewall chains."""
    return definition.display_type.endswith("Spec") or definition.type == NFTABLES_CHAIN_TYPE


async def plan(
    loaded: LoadedConfig,
    cmdline: str = "",
    platform_config: str | None = None,
    namespace: str = NETWORK,
    kernel: tuple[dict[str, LinkStatus], list[AddressStatus]] | None = None,
) -> PlanResult:
    """``kernel`` replaces the netlink snapshot (links by name, addresses) when given."""
    if namespace not in PLAN_NAMESPACES:
        raise PlanError(f"namespace {namespace!r}: plan shows {' or '.join(PLAN_NAMESPACES)}")
    state = State()
    register_all(state)
    links, addresses = kernel if kernel is not None else await read_links_and_addresses()
    for name, status in links.items():
        state.put(NETWORK, LINK_STATUS_TYPE, name, status, owner=LINK_STATUS_OWNER)
    for a in addresses:
        state.put(NETWORK, ADDRESS_STATUS_TYPE, a.id(), a, owner=ADDRESS_STATUS_OWNER)
    if not loaded.empty:
        state.put(CONFIG, MACHINE_CONFIG_TYPE, MACHINE_CONFIG_ID, machine_config_spec(loaded))
    runtime = Runtime(state)
    for c in config_controllers(cmdline, platform_config, state_dir=None, write_cache=False):
        runtime.register(c)
    result = PlanResult()
    async with runtime:
        if not await runtime.settle():
            result.problems.append("warning: controllers did not settle within 10s; the plan may be partial")
    owners = {c.name for c in runtime.controllers}
    for d in sorted(state.registry.all(), key=lambda d: d.type):
        if not planned(d):
            continue
        items = [r for r in state.list(namespace, d.type) if r.md.owner in owners]
        if items:
            result.groups.append((d, items))
    return result
