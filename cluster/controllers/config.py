"""DiscoveryConfig and KubeSpanConfig from the MachineConfig resource (kubespan.md §1.2)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from cluster.config import DerivationError, discovery_config, kubespan_config
from cluster.resources import (
    DISCOVERY_CONFIG_ID,
    DISCOVERY_CONFIG_TYPE,
    KUBESPAN_CONFIG_ID,
    KUBESPAN_CONFIG_TYPE,
)
from cosi import Context, Controller, Input, Output
from netd.controllers.sources import MACHINE_CONFIG_INPUT, machine_config
from netd.resources.namespaces import CLUSTER, KUBESPAN

log = logging.getLogger("cluster.config")


class DiscoveryConfigController(Controller):
    """A config that cannot give a usable DiscoveryConfig (bad secret, bad URL) removes it:
    discovery stays off and the error is logged once per distinct message, naming the field."""

    name = "cluster.ConfigController"

    def __init__(self) -> None:
        self._logged: str | None = None

    def inputs(self) -> Sequence[Input]:
        return [MACHINE_CONFIG_INPUT]

    def outputs(self) -> Sequence[Output]:
        return [Output(CLUSTER, DISCOVERY_CONFIG_TYPE)]

    async def reconcile(self, ctx: Context) -> None:
        mc = machine_config(ctx)
        try:
            spec = discovery_config(mc.config if mc is not None else None)
        except DerivationError as e:
            if str(e) != self._logged:
                log.error("cluster discovery disabled: %s", e)
                self._logged = str(e)
            ctx.reconcile_owned(CLUSTER, DISCOVERY_CONFIG_TYPE, {})
            return
        self._logged = None
        ctx.reconcile_owned(CLUSTER, DISCOVERY_CONFIG_TYPE, {DISCOVERY_CONFIG_ID: spec})


class KubeSpanConfigController(Controller):
    name = "kubespan.ConfigController"

    def inputs(self) -> Sequence[Input]:
        return [MACHINE_CONFIG_INPUT]

    def outputs(self) -> Sequence[Output]:
        return [Output(KUBESPAN, KUBESPAN_CONFIG_TYPE)]

    async def reconcile(self, ctx: Context) -> None:
        mc = machine_config(ctx)
        spec = kubespan_config(
            mc.config if mc is not None else None, mc.kubespan_peers if mc is not None else ()
        )
        ctx.reconcile_owned(
            KUBESPAN, KUBESPAN_CONFIG_TYPE, {} if spec is None else {KUBESPAN_CONFIG_ID: spec}
        )
