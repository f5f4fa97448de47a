"""KubeSpanPeerSpecs from the merged ``cluster`` affiliates (kubespan.md §5.6, §6.1).

A thin adapter: affiliates become :class:`kubespan.peers.PeerCandidate`
values, :func:`kubespan.peers.build_peer_specs` does the work, and only the
warnings not logged before are logged (the specs are recomputed on every
affiliate change; an overlap would otherwise be logged on each).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from cluster.controllers.identity import node_id
from cluster.resources import (
    AFFILIATE_TYPE,
    KUBESPAN_CONFIG_ID,
    KUBESPAN_CONFIG_TYPE,
    KUBESPAN_IDENTITY_ID,
    KUBESPAN_IDENTITY_TYPE,
    NODE_IDENTITY_ID,
    AffiliateSpec,
    KubeSpanConfigSpec,
    KubeSpanIdentitySpec,
)
from cosi import Context, Controller, Input, Output
from kubespan.peers import Endpoint, PeerCandidate, build_peer_specs, select_candidates
from kubespan.resources import PEER_SPEC_TYPE, KubeSpanPeerSpecSpec
from netd.resources.namespaces import CLUSTER, KUBESPAN
from netd.resources.runtime_types import IDENTITY_TYPE

log = logging.getLogger("kubespan.peers")


def candidate(a: AffiliateSpec) -> PeerCandidate | None:
    """The §6.1 input of one affiliate; None without a KubeSpan section (not a peer, §5.6).
    An endpoint that does not parse costs itself only (the resource model already checked
    them, so this is defence in depth)."""
    ks = a.kubespan
    if ks is None or not ks.public_key:
        return None
    endpoints = []
    for text in ks.endpoints:
        try:
            endpoints.append(Endpoint.parse(text))
        except ValueError as e:
            log.warning("peer %s: endpoint skipped: %s", a.nodename or a.node_id, e)
    address = ks.address if ks.address is not None and ks.address.version == 6 else None
    return PeerCandidate(
        node_id=a.node_id,
        label=a.nodename,
        public_key=ks.public_key,
        kubespan_address=address,
        addresses=tuple(a.addresses),
        additional_addresses=tuple(ks.additional_addresses),
        endpoints=tuple(endpoints),
    )


def enabled(ctx: Context) -> bool:
    """KubeSpan on, with an identity (§6.1: "only when KubeSpan enabled and own identity known")."""
    cr = ctx.get(KUBESPAN, KUBESPAN_CONFIG_TYPE, KUBESPAN_CONFIG_ID)
    ir = ctx.get(KUBESPAN, KUBESPAN_IDENTITY_TYPE, KUBESPAN_IDENTITY_ID)
    if cr is None or ir is None:
        return False
    assert isinstance(cr.spec, KubeSpanConfigSpec) and isinstance(ir.spec, KubeSpanIdentitySpec)
    return cr.spec.enabled and bool(ir.spec.public_key)


class PeerSpecController(Controller):
    name = "kubespan.PeerSpecController"

    def __init__(self) -> None:
        self._warned: set[str] = set()

    def inputs(self) -> Sequence[Input]:
        return [
            Input(KUBESPAN, KUBESPAN_CONFIG_TYPE, id=KUBESPAN_CONFIG_ID),
            Input(KUBESPAN, KUBESPAN_IDENTITY_TYPE, id=KUBESPAN_IDENTITY_ID),
            Input(CLUSTER, IDENTITY_TYPE, id=NODE_IDENTITY_ID),
            Input(CLUSTER, AFFILIATE_TYPE),
        ]

    def outputs(self) -> Sequence[Output]:
        return [Output(KUBESPAN, PEER_SPEC_TYPE)]

    async def reconcile(self, ctx: Context) -> None:
        own = node_id(ctx)
        if own is None or not enabled(ctx):
            ctx.reconcile_owned(KUBESPAN, PEER_SPEC_TYPE, {})
            self._warned.clear()
            return
        cands = []
        for r in ctx.list(CLUSTER, AFFILIATE_TYPE):
            if isinstance(r.spec, AffiliateSpec):
                c = candidate(r.spec)
                if c is not None:
                    cands.append(c)
        built = build_peer_specs(select_candidates(cands, own))
        log.debug("%d affiliates with KubeSpan, %d peers", len(cands), len(built.specs))
        warnings = set(built.warnings)
        for w in sorted(warnings - self._warned):
            log.warning("%s", w)
        self._warned = warnings
        ctx.reconcile_owned(
            KUBESPAN, PEER_SPEC_TYPE, {k: KubeSpanPeerSpecSpec.of(p) for k, p in built.specs.items()}
        )
