"""HardwareAddr (netd.md §2.12): ID ``first``, the first physical link's MAC."""

from __future__ import annotations

from cosi import ResourceDefinition
from netd.resources.base import Spec
from netd.resources.namespaces import NETWORK

HARDWARE_ADDR_TYPE = "HardwareAddresses.net.talos.dev"


class HardwareAddr(Spec):
    name: str = ""
    hardware_addr: str = ""  # lower-case colon hex


HARDWARE_ADDR_DEFINITION = ResourceDefinition(
    type=HARDWARE_ADDR_TYPE,
    display_type="HardwareAddress",
    default_namespace=NETWORK,
    spec_model=HardwareAddr,
)
