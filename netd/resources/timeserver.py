"""TimeServerSpec and TimeServerStatus (netd.md §2.7)."""

from __future__ import annotations

from pydantic import Field

from cosi import ResourceDefinition
from netd.resources.base import Spec
from netd.resources.enums import ConfigLayer
from netd.resources.namespaces import NETWORK

TIME_SERVER_SPEC_TYPE = "TimeServerSpecs.net.talos.dev"
TIME_SERVER_STATUS_TYPE = "TimeServerStatuses.net.talos.dev"


class TimeServerSpec(Spec):
    time_servers: list[str] = Field(default_factory=list)
    layer: ConfigLayer = ConfigLayer.DEFAULT


class TimeServerStatus(Spec):
    time_servers: list[str] = Field(default_factory=list)


TIME_SERVER_SPEC_DEFINITION = ResourceDefinition(
    type=TIME_SERVER_SPEC_TYPE,
    display_type="TimeServerSpec",
    default_namespace=NETWORK,
    spec_model=TimeServerSpec,
)
TIME_SERVER_STATUS_DEFINITION = ResourceDefinition(
    type=TIME_SERVER_STATUS_TYPE,
    display_type="TimeServerStatus",
    default_namespace=NETWORK,
    spec_model=TimeServerStatus,
    aliases=("timeserver", "timeservers"),
    print_columns=(("TIMESERVERS", "{.timeServers}"),),
)
