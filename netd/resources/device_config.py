"""DeviceConfigSpec (netd.md §2.11): one expanded machine.network.interfaces[] entry.

``device`` holds the v1alpha1 device document as plain data (keys as in the
machine config); the config package owns its typed model.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from cosi import ResourceDefinition
from netd.resources.base import Spec
from netd.resources.namespaces import NETWORK

DEVICE_CONFIG_SPEC_TYPE = "DeviceConfigSpecs.net.talos.dev"


class DeviceConfigSpec(Spec):
    device: dict[str, Any] = Field(default_factory=dict)


DEVICE_CONFIG_SPEC_DEFINITION = ResourceDefinition(
    type=DEVICE_CONFIG_SPEC_TYPE,
    display_type="DeviceConfigSpec",
    default_namespace=NETWORK,
    spec_model=DeviceConfigSpec,
    sensitive=True,
)
