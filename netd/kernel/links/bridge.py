"""Bridges (``kind: bridge``): STP on/off (netd.md §5.1 step 4).

The kernel accepts IFLA_BR_STP_STATE on a running bridge with ports (tested
in tests/netns/test_link_spec.py), so unlike the reference we neither bring
the bridge down nor detach its ports: changing STP does not interrupt
forwarding more than the STP state machine itself does.
"""

from __future__ import annotations

from typing import Any

from netd.kernel.links.base import KernelLink, LinkKind, Links
from netd.resources.link import BridgeMasterSpec, LinkSpec, STPSpec


class BridgeKind(LinkKind):
    kind = "bridge"

    def create_args(self, spec: LinkSpec, links: Links) -> dict[str, Any]:
        return {"br_stp_state": int(spec.bridge_master.stp.enabled)}

    def desired(self, spec: LinkSpec) -> BridgeMasterSpec:
        return BridgeMasterSpec(stp=STPSpec(enabled=spec.bridge_master.stp.enabled))

    def observed(self, link: KernelLink) -> BridgeMasterSpec:
        return BridgeMasterSpec(stp=STPSpec(enabled=bool(link.info_data.get("IFLA_BR_STP_STATE"))))

    def update_args(self, spec: LinkSpec, link: KernelLink) -> dict[str, Any]:
        return self.create_args(spec, {})
