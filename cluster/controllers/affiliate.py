"""The local affiliate (kubespan.md §5.2, §5.3), the merge ``cluster-raw`` → ``cluster`` (§5.4)
and Members (§5.5): thin adapters around :mod:`cluster.affiliates`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from cluster.affiliates import (
    LocalKubeSpan,
    LocalNode,
    local_affiliate,
    members,
    merge_affiliates,
    nodename_of,
    parse_networks,
)
from cluster.controllers.identity import node_id
from cluster.resources import (
    AFFILIATE_TYPE,
    DISCOVERY_CONFIG_ID,
    DISCOVERY_CONFIG_TYPE,
    KUBESPAN_CONFIG_ID,
    KUBESPAN_CONFIG_TYPE,
    KUBESPAN_IDENTITY_ID,
    KUBESPAN_IDENTITY_TYPE,
    MEMBER_TYPE,
    NODE_IDENTITY_ID,
    AffiliateSpec,
    DiscoveryConfigSpec,
    KubeSpanConfigSpec,
    KubeSpanIdentitySpec,
    MachineType,
)
from cosi import Context, Controller, Input, Output, OutputKind
from netd.controllers.sources import MACHINE_CONFIG_INPUT, machine_config
from netd.resources.address import ADDRESS_STATUS_TYPE, AddressStatus
from netd.resources.hostname import HOSTNAME_STATUS_TYPE, HostnameStatus
from netd.resources.ids import HOSTNAME_ID, NODE_ADDRESS_CURRENT_ID, NODE_ADDRESS_ROUTED_ID
from netd.resources.namespaces import CLUSTER, CLUSTER_RAW, KUBESPAN, NETWORK
from netd.resources.nodeaddress import NODE_ADDRESS_TYPE, NodeAddress
from netd.resources.runtime_types import IDENTITY_TYPE

log = logging.getLogger("cluster.affiliate")

OS_NAME = "talos-netd"
#: §5.2 controlPlane: the reference's local API server port; we run no API server to ask.
API_SERVER_PORT = 6443


def os_version() -> str:
    """``v<package version>``: the Hello client_version (§4.6) and the OS tag in the payload."""
    try:
        return "v" + version("talos-netd")
    except PackageNotFoundError:
        return "unknown"


def operating_system() -> str:
    """§5.2 / §11: ``"<name> (<version>)"``, as the reference's ``Talos (v1.6.8)``."""
    return f"{OS_NAME} ({os_version()})"


class LocalAffiliateController(Controller):
    """Writes ``cluster``/<node ID> while discovery is enabled; waits (writes nothing) until the
    identity, hostname, node addresses and machine config are all known."""

    name = "cluster.LocalAffiliateController"

    def __init__(self) -> None:
        self._filter_error: str | None = None

    def inputs(self) -> Sequence[Input]:
        return [
            Input(CLUSTER, DISCOVERY_CONFIG_TYPE, id=DISCOVERY_CONFIG_ID),
            Input(CLUSTER, IDENTITY_TYPE, id=NODE_IDENTITY_ID),
            Input(NETWORK, HOSTNAME_STATUS_TYPE, id=HOSTNAME_ID),
            Input(NETWORK, NODE_ADDRESS_TYPE),
            MACHINE_CONFIG_INPUT,
            Input(KUBESPAN, KUBESPAN_CONFIG_TYPE, id=KUBESPAN_CONFIG_ID),
            Input(KUBESPAN, KUBESPAN_IDENTITY_TYPE, id=KUBESPAN_IDENTITY_ID),
            Input(CLUSTER, ADDRESS_STATUS_TYPE),  # public IPs seen by the discovery service (§4.7)
        ]

    def outputs(self) -> Sequence[Output]:
        # Shared with the merge controller, which writes the other nodes' affiliates.
        return [Output(CLUSTER, AFFILIATE_TYPE, OutputKind.SHARED)]

    def _addresses(self, ctx: Context, id_: str) -> NodeAddress | None:
        r = ctx.get(NETWORK, NODE_ADDRESS_TYPE, id_)
        return r.spec if r is not None and isinstance(r.spec, NodeAddress) else None

    async def reconcile(self, ctx: Context) -> None:
        r = ctx.get(CLUSTER, DISCOVERY_CONFIG_TYPE, DISCOVERY_CONFIG_ID)
        if r is None or not isinstance(r.spec, DiscoveryConfigSpec) or not r.spec.discovery_enabled:
            ctx.reconcile_owned(CLUSTER, AFFILIATE_TYPE, {})
            return
        nid = node_id(ctx)
        hr = ctx.get(NETWORK, HOSTNAME_STATUS_TYPE, HOSTNAME_ID)
        routed = self._addresses(ctx, NODE_ADDRESS_ROUTED_ID)
        current = self._addresses(ctx, NODE_ADDRESS_CURRENT_ID)
        mc = machine_config(ctx)
        cfg = mc.config if mc is not None else None
        if nid is None or hr is None or routed is None or current is None or cfg is None:
            return
        assert isinstance(hr.spec, HostnameStatus)
        if not hr.spec.hostname:
            return
        mtype = MachineType.parse(cfg.machine.type)
        node = LocalNode(
            node_id=nid,
            hostname=hr.spec.fqdn(),
            nodename=nodename_of(hr.spec.hostname),
            machine_type=mtype,
            operating_system=operating_system(),
            api_server_port=API_SERVER_PORT
            if mtype in (MachineType.CONTROLPLANE, MachineType.INIT)
            else None,
        )
        public = []
        for ar in ctx.list(CLUSTER, ADDRESS_STATUS_TYPE):
            if isinstance(ar.spec, AddressStatus) and ar.spec.address is not None:
                public.append(ar.spec.address.ip)
        k8s = parse_networks([*cfg.cluster.network.pod_subnets, *cfg.cluster.network.service_subnets])
        ks = self._kubespan(ctx)
        try:
            spec = local_affiliate(node, routed.addresses, current.addresses, public, k8s, ks)
            self._filter_error = None
        except ValueError as e:  # an endpoint filter the loader should have rejected
            if str(e) != self._filter_error:
                log.error("KubeSpan endpoints not advertised: %s", e)
                self._filter_error = str(e)
            no_filter = (
                None
                if ks is None
                else LocalKubeSpan(ks.public_key, ks.address, ks.advertise_kubernetes_networks)
            )
            spec = local_affiliate(node, routed.addresses, current.addresses, public, k8s, no_filter)
            if spec.kubespan is not None:
                spec.kubespan.endpoints = []
        ctx.reconcile_owned(CLUSTER, AFFILIATE_TYPE, {nid: spec})

    def _kubespan(self, ctx: Context) -> LocalKubeSpan | None:
        cr = ctx.get(KUBESPAN, KUBESPAN_CONFIG_TYPE, KUBESPAN_CONFIG_ID)
        ir = ctx.get(KUBESPAN, KUBESPAN_IDENTITY_TYPE, KUBESPAN_IDENTITY_ID)
        if cr is None or ir is None:
            return None
        cfg, ident = cr.spec, ir.spec
        assert isinstance(cfg, KubeSpanConfigSpec) and isinstance(ident, KubeSpanIdentitySpec)
        if not cfg.enabled or ident.address is None or not ident.public_key:
            return None
        return LocalKubeSpan(
            public_key=ident.public_key,
            address=ident.address.ip,
            advertise_kubernetes_networks=cfg.advertise_kubernetes_networks,
            endpoint_filters=tuple(cfg.endpoint_filters),
        )


class AffiliateMergeController(Controller):
    """§5.4: one merged ``cluster`` affiliate per node ID from every registry's raw ones."""

    name = "cluster.AffiliateMergeController"

    def inputs(self) -> Sequence[Input]:
        return [
            Input(CLUSTER_RAW, AFFILIATE_TYPE),
            Input(CLUSTER, IDENTITY_TYPE, id=NODE_IDENTITY_ID),
        ]

    def outputs(self) -> Sequence[Output]:
        return [Output(CLUSTER, AFFILIATE_TYPE, OutputKind.SHARED)]

    async def reconcile(self, ctx: Context) -> None:
        own = node_id(ctx)
        if own is None:
            return  # without it a raw affiliate naming this node could take the local one's id
        raw = [
            (r.id, r.spec) for r in ctx.list(CLUSTER_RAW, AFFILIATE_TYPE) if isinstance(r.spec, AffiliateSpec)
        ]
        desired = merge_affiliates(raw, own)
        for id_ in list(desired):
            cur = ctx.state.get(CLUSTER, AFFILIATE_TYPE, id_)
            if cur is not None and cur.md.owner != self.name:
                del desired[id_]  # not ours to overwrite (shared output)
        ctx.reconcile_owned(CLUSTER, AFFILIATE_TYPE, desired)


class MemberController(Controller):
    """§5.5: a Member per ``cluster`` affiliate with a nodename."""

    name = "cluster.MemberController"

    def inputs(self) -> Sequence[Input]:
        return [Input(CLUSTER, AFFILIATE_TYPE)]

    def outputs(self) -> Sequence[Output]:
        return [Output(CLUSTER, MEMBER_TYPE)]

    async def reconcile(self, ctx: Context) -> None:
        affs = [r.spec for r in ctx.list(CLUSTER, AFFILIATE_TYPE) if isinstance(r.spec, AffiliateSpec)]
        ctx.reconcile_owned(CLUSTER, MEMBER_TYPE, dict(members(affs)))
