"""ProbeSpec and ProbeStatus (netd.md §2.14); ID ``tcp:<endpoint>``."""

from __future__ import annotations

import datetime as dt

from pydantic import Field

from cosi import ResourceDefinition
from netd.resources.base import Duration, Spec
from netd.resources.enums import ConfigLayer
from netd.resources.ids import probe_id
from netd.resources.namespaces import NETWORK

PROBE_SPEC_TYPE = "ProbeSpecs.net.talos.dev"
PROBE_STATUS_TYPE = "ProbeStatuses.net.talos.dev"


class TCPProbeSpec(Spec):
    endpoint: str = ""  # host:port
    timeout: Duration = dt.timedelta(0)


class ProbeSpec(Spec):
    OMITEMPTY = frozenset({"tcp"})

    interval: Duration = dt.timedelta(0)
    failure_threshold: int = 0
    tcp: TCPProbeSpec = Field(default_factory=TCPProbeSpec)
    layer: ConfigLayer = ConfigLayer.DEFAULT

    def id(self) -> str:
        return probe_id(self.tcp.endpoint)


class ProbeStatus(Spec):
    success: bool = False
    last_error: str = ""


PROBE_SPEC_DEFINITION = ResourceDefinition(
    type=PROBE_SPEC_TYPE,
    display_type="ProbeSpec",
    default_namespace=NETWORK,
    spec_model=ProbeSpec,
)
PROBE_STATUS_DEFINITION = ResourceDefinition(
    type=PROBE_STATUS_TYPE,
    display_type="ProbeStatus",
    default_namespace=NETWORK,
    spec_model=ProbeStatus,
    aliases=("probe", "probes"),
    print_columns=(("SUCCESS", "{.success}"),),
)
