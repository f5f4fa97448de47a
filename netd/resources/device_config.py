"""DeviceConfigSpec (netd.md §2.11): one expanded machine.network.interfaces[] entry.

``device`` is the typed v1alpha1 device model (``netd.config.models.Device``),
validated once when the config was loaded: config controllers read it as is.
It renders as the machine config spells it (camelCase keys, unset optional
sections left out), which is what ``netctl get deviceconfigspecs`` shows.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, SerializationInfo, field_serializer

from cosi import ResourceDefinition
from netd.config.models import Device
from netd.resources.base import Spec
from netd.resources.namespaces import NETWORK

DEVICE_CONFIG_SPEC_TYPE = "DeviceConfigSpecs.net.talos.dev"


class DeviceConfigSpec(Spec):
    device: Device = Field(default_factory=Device)

    @field_serializer("device")
    def _device(self, device: Device, info: SerializationInfo) -> dict[str, Any]:
        # Machine-config keys whatever the caller asks for: the device is config, not a spec.
        out: dict[str, Any] = device.model_dump(mode=info.mode, by_alias=True, exclude_none=True)
        return out


DEVICE_CONFIG_SPEC_DEFINITION = ResourceDefinition(
    type=DEVICE_CONFIG_SPEC_TYPE,
    display_type="DeviceConfigSpec",
    default_namespace=NETWORK,
    spec_model=DeviceConfigSpec,
    sensitive=True,
)
