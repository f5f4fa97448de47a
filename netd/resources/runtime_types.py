"""Non-network types networking depends on: DevicesStatus and the node Identity."""

from __future__ import annotations

from cosi import ResourceDefinition
from netd.resources.base import Spec
from netd.resources.namespaces import CLUSTER, RUNTIME

DEVICES_STATUS_TYPE = "DevicesStatuses.runtime.talos.dev"
IDENTITY_TYPE = "Identities.cluster.talos.dev"


class DevicesStatus(Spec):
    """``runtime``/``devices``: udev has settled, links have their final names."""

    ready: bool = False


class Identity(Spec):
    """``cluster``/``local``: the node ID (base62, persisted in node-identity.yaml)."""

    node_id: str = ""


DEVICES_STATUS_DEFINITION = ResourceDefinition(
    type=DEVICES_STATUS_TYPE,
    display_type="DevicesStatus",
    default_namespace=RUNTIME,
    spec_model=DevicesStatus,
    print_columns=(("Ready", "{.ready}"),),
)
IDENTITY_DEFINITION = ResourceDefinition(
    type=IDENTITY_TYPE,
    display_type="Identity",
    default_namespace=CLUSTER,
    spec_model=Identity,
    print_columns=(("ID", "{.nodeId}"),),
)
