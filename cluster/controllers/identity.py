"""The node Identity (kubespan.md §2) and the KubeSpan identity (§3) as resources.

File I/O happens once per process (the first reconcile that needs it); later
reconciles reuse what was loaded, so a link event costs no disk access.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from cluster.identity import load_or_create_node_identity
from cluster.resources import (
    KUBESPAN_CONFIG_ID,
    KUBESPAN_CONFIG_TYPE,
    KUBESPAN_IDENTITY_ID,
    KUBESPAN_IDENTITY_TYPE,
    NODE_IDENTITY_ID,
    KubeSpanConfigSpec,
    KubeSpanIdentitySpec,
)
from cosi import Context, Controller, Input, Output
from kubespan.identity import KubeSpanKeys, LinkHW, choose_mac, load_or_create_keys, node_address, ula_prefix
from netd import tunables
from netd.resources.link import LINK_STATUS_TYPE, LinkStatus
from netd.resources.namespaces import CLUSTER, KUBESPAN, NETWORK
from netd.resources.runtime_types import IDENTITY_TYPE, Identity

log = logging.getLogger("cluster.identity")


def node_id(ctx: Context) -> str | None:
    r = ctx.get(CLUSTER, IDENTITY_TYPE, NODE_IDENTITY_ID)
    if r is None:
        return None
    assert isinstance(r.spec, Identity)
    return r.spec.node_id or None


class NodeIdentityController(Controller):
    """Loads or creates ``node-identity.yaml``; an unusable file fails the controller (logged and
    retried with back-off) rather than being replaced (§2)."""

    name = "cluster.NodeIdentityController"

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self._node_id: str | None = None

    def outputs(self) -> Sequence[Output]:
        return [Output(CLUSTER, IDENTITY_TYPE)]

    async def reconcile(self, ctx: Context) -> None:
        if self._node_id is None:
            ident, created = load_or_create_node_identity(self.state_dir)
            self._node_id = ident.node_id
            log.info("node identity %s %s", ident.node_id, "generated" if created else "loaded")
        ctx.reconcile_owned(CLUSTER, IDENTITY_TYPE, {NODE_IDENTITY_ID: Identity(node_id=self._node_id)})


class KubeSpanIdentityController(Controller):
    """§3: exists while KubeSpan is enabled and a MAC is known; destroyed (file kept) when disabled."""

    name = "kubespan.IdentityController"

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self._keys: KubeSpanKeys | None = None
        self._mac_source = ""

    def inputs(self) -> Sequence[Input]:
        return [
            Input(KUBESPAN, KUBESPAN_CONFIG_TYPE, id=KUBESPAN_CONFIG_ID),
            Input(CLUSTER, IDENTITY_TYPE, id=NODE_IDENTITY_ID),
            Input(NETWORK, LINK_STATUS_TYPE),
        ]

    def outputs(self) -> Sequence[Output]:
        return [Output(KUBESPAN, KUBESPAN_IDENTITY_TYPE)]

    def desired(self, ctx: Context) -> KubeSpanIdentitySpec | None:
        r = ctx.get(KUBESPAN, KUBESPAN_CONFIG_TYPE, KUBESPAN_CONFIG_ID)
        cfg = r.spec if r is not None else None
        if not isinstance(cfg, KubeSpanConfigSpec) or not cfg.enabled or not cfg.cluster_id:
            return None
        if self._keys is None:
            self._keys, created = load_or_create_keys(self.state_dir)
            log.info(
                "KubeSpan keys %s, public key %s", "generated" if created else "loaded", self._keys.public_key
            )
        links = []
        for lr in ctx.list(NETWORK, LINK_STATUS_TYPE):
            assert isinstance(lr.spec, LinkStatus)
            links.append(LinkHW(lr.id, lr.spec.hardware_addr, lr.spec.physical()))
        override = str(tunables.get("KUBESPAN_MAC_LINK") or "")
        chosen = choose_mac(links, override, node_id(ctx) or "")
        if chosen is None:
            return None
        mac, source = chosen
        if source != self._mac_source:
            log.info("KubeSpan address from the MAC of %s", source)
            self._mac_source = source
        subnet = ula_prefix(cfg.cluster_id)
        return KubeSpanIdentitySpec(
            address=node_address(subnet, mac),
            subnet=subnet,
            private_key=self._keys.private_key,
            public_key=self._keys.public_key,
        )

    async def reconcile(self, ctx: Context) -> None:
        spec = self.desired(ctx)
        ctx.reconcile_owned(
            KUBESPAN, KUBESPAN_IDENTITY_TYPE, {} if spec is None else {KUBESPAN_IDENTITY_ID: spec}
        )
