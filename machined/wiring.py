"""Which controllers machined runs, in the two start phases of node.py."""

from __future__ import annotations

from collections.abc import Sequence

from cosi import Controller
from netd.controllers.catalog import config_controllers
from netd.kernel.applied import Applied


def source_controllers(cmdline: str, platform_config: str | None, state_dir: str) -> list[Controller]:
    """Phase 1: observe the kernel, compute and merge the desired state."""
    from cluster.controllers import source_controllers as cluster_sources
    from netd.controllers.status import status_controllers

    return [
        *status_controllers(),
        *config_controllers(cmdline, platform_config, state_dir, write_cache=True),
        *cluster_sources(state_dir),
    ]


def kernel_controllers(applied: Applied, etc_dir: str) -> list[Controller]:
    """Phase 2: apply the desired state to the kernel and the etc files."""
    from netd.controllers.address_spec import AddressSpecController
    from netd.controllers.etcfile import FilesEtcFileController, NetworkEtcFileController
    from netd.controllers.hostname_spec import HostnameSpecController
    from netd.controllers.link_spec import LinkSpecController
    from netd.controllers.nftables import NfTablesChainController
    from netd.controllers.resolver_spec import ResolverSpecController, TimeServerSpecController
    from netd.controllers.route_spec import RouteSpecController
    from netd.controllers.rule_spec import RoutingRuleSpecController

    return [
        LinkSpecController(applied),
        AddressSpecController(applied),
        RouteSpecController(applied),
        RoutingRuleSpecController(applied),
        NfTablesChainController(applied),
        HostnameSpecController(),
        ResolverSpecController(),
        TimeServerSpecController(),
        NetworkEtcFileController(),
        FilesEtcFileController(etc_dir),
    ]


def cluster_controllers(
    state_dir: str, applied: Applied, etcd_endpoints: Sequence[str] = ()
) -> list[Controller]:
    """Phase 2 too: the KubeSpan identity, the local affiliate, the discovery service client
    (network I/O: never in ``netctl plan``), the affiliate merge and members; KubeSpan's peer
    specs and its manager (which publishes operator-layer specs and owns an nft table); the
    operator runner (DHCPv4/DHCPv6/VIP: network I/O, never in ``netctl plan``)."""
    from cluster.controllers import discovery_controllers
    from kubespan.controllers import kubespan_controllers
    from operators.registry import OperatorRegistry
    from operators.runner import OperatorSpecController

    return [
        *discovery_controllers(state_dir),
        *kubespan_controllers(applied),
        OperatorSpecController(state_dir, OperatorRegistry(etcd_endpoints)),
    ]
