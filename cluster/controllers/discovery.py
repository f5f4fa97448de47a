"""The discovery service registry on the node (kubespan.md §4.7).

Owns one :class:`discovery_client.DiscoveryClient` while the service registry
is enabled: publishes the local affiliate (only when it changed, since every
update echoes back through Watch), mirrors the other members into
``cluster-raw`` as ``service/<node ID>``, and publishes the public IP the
service saw as AddressStatus ``cluster``/``service``. A new client replaces
the old one when the DiscoveryConfig or the node ID changes.

Leaving (``netctl reset``, ``machined --leave``) goes through :meth:`leave`:
AffiliateDelete at once, and no publishing afterwards. A plain stop only
stops the client: the record expires after its TTL (§4.6 decision).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from typing import Any

from cluster.affiliates import raw_affiliate, to_wire
from cluster.controllers.affiliate import os_version
from cluster.controllers.identity import node_id
from cluster.resources import (
    AFFILIATE_TYPE,
    DISCOVERY_CONFIG_ID,
    DISCOVERY_CONFIG_TYPE,
    DISCOVERY_STATUS_ID,
    DISCOVERY_STATUS_TYPE,
    NODE_IDENTITY_ID,
    SERVICE_ADDRESS_ID,
    AffiliateSpec,
    DiscoveryConfigSpec,
    DiscoveryServiceStatusSpec,
    parse_endpoint,
)
from cosi import Context, Controller, Input, Output, OutputKind
from discovery_client import ClientTimers, ClusterCipher, DiscoveryClient
from discovery_client.models import Endpoint
from kubespan.resources import ENDPOINT_TYPE, KubeSpanEndpointSpec
from netd import tunables
from netd.resources.address import ADDRESS_STATUS_TYPE, AddressStatus
from netd.resources.enums import Family
from netd.resources.namespaces import CLUSTER, CLUSTER_RAW, KUBESPAN
from netd.resources.runtime_types import IDENTITY_TYPE

log = logging.getLogger("cluster.discovery")


def client_timers() -> ClientTimers:
    """The client's timers from ``NETD_TUNABLES`` (spec defaults otherwise)."""
    return ClientTimers.from_tunables(tunables.set_values("DISCOVERY_"))


class DiscoveryServiceController(Controller):
    name = "cluster.DiscoveryServiceController"

    def __init__(self) -> None:
        self._client: DiscoveryClient | None = None
        self._client_key: tuple[DiscoveryConfigSpec, str] | None = None
        self._last_sent: Any = None
        self._leaving = False
        self._logged: str | None = None

    def inputs(self) -> Sequence[Input]:
        return [
            Input(CLUSTER, DISCOVERY_CONFIG_TYPE, id=DISCOVERY_CONFIG_ID),
            Input(CLUSTER, IDENTITY_TYPE, id=NODE_IDENTITY_ID),
            # The local affiliate lives here (id = node ID, unknown until the identity is).
            Input(CLUSTER, AFFILIATE_TYPE),
            # Endpoints this node harvested for its peers (§6.4), reported as other_endpoints.
            Input(KUBESPAN, ENDPOINT_TYPE),
        ]

    def outputs(self) -> Sequence[Output]:
        return [
            # Shared: a Kubernetes registry would write k8s/<id> next to ours (§5.7).
            Output(CLUSTER_RAW, AFFILIATE_TYPE, OutputKind.SHARED),
            Output(CLUSTER, ADDRESS_STATUS_TYPE),
            Output(CLUSTER, DISCOVERY_STATUS_TYPE),
        ]

    async def run(self, ctx: Context) -> None:
        try:
            await super().run(ctx)
        finally:
            await self._stop_client()

    async def _stop_client(self) -> None:
        client, self._client, self._client_key = self._client, None, None
        self._last_sent = None
        if client is not None:
            await client.stop()

    def _log_once(self, message: str) -> None:
        if message != self._logged:
            log.error("%s", message)
            self._logged = message

    async def reconcile(self, ctx: Context) -> None:
        if self._leaving:
            return
        r = ctx.get(CLUSTER, DISCOVERY_CONFIG_TYPE, DISCOVERY_CONFIG_ID)
        dc = r.spec if r is not None and isinstance(r.spec, DiscoveryConfigSpec) else None
        nid = node_id(ctx)
        client = await self._ensure_client(ctx, dc, nid) if dc is not None and nid is not None else None
        if client is None or nid is None:
            await self._stop_client()
            ctx.reconcile_owned(CLUSTER_RAW, AFFILIATE_TYPE, {})
            ctx.reconcile_owned(CLUSTER, ADDRESS_STATUS_TYPE, {})
            ctx.reconcile_owned(CLUSTER, DISCOVERY_STATUS_TYPE, {})
            return
        self._publish(ctx, client, nid)
        public: dict[str, AddressStatus] = {}
        ip = client.get_public_ip()
        if ip is not None:
            # §4.7 step 3: IP/32 or /128; it feeds the local endpoint list (§5.3).
            prefix = ipaddress.ip_interface((ip, ip.max_prefixlen))
            family = Family.INET4 if ip.version == 4 else Family.INET6
            public[SERVICE_ADDRESS_ID] = AddressStatus(address=prefix, family=family)
        ctx.reconcile_owned(CLUSTER, ADDRESS_STATUS_TYPE, public)
        raw: dict[str, AffiliateSpec] = {}
        for d in client.get_affiliates():
            try:
                item = raw_affiliate(d)
            except Exception as e:  # a hostile payload costs its own entry, nothing else
                log.warning("affiliate %r skipped: %s", d.id, e)
                continue
            if item is not None:
                raw[item[0]] = item[1]
        ctx.reconcile_owned(CLUSTER_RAW, AFFILIATE_TYPE, raw)
        status = DiscoveryServiceStatusSpec(
            endpoint=client.target.address,
            synced=client.synced,
            affiliates=len(raw),
            public_ip=ip,
        )
        ctx.reconcile_owned(CLUSTER, DISCOVERY_STATUS_TYPE, {DISCOVERY_STATUS_ID: status})

    async def _ensure_client(self, ctx: Context, dc: DiscoveryConfigSpec, nid: str) -> DiscoveryClient | None:
        """The running client for this config and node ID (a new one when either changed)."""
        if not dc.registry_service_enabled:
            return None
        key = (dc, nid)
        if self._client is not None and self._client_key == key:
            return self._client
        if not dc.service_cluster_id:
            self._log_once("discovery service not used: cluster.id is empty")
            return None
        try:
            cipher = ClusterCipher(dc.service_encryption_key)
            client = DiscoveryClient(
                cipher,
                endpoint=dc.service_endpoint,
                cluster_id=dc.service_cluster_id,
                affiliate_id=nid,
                client_version=os_version(),
                insecure=dc.service_endpoint_insecure,
                timers=client_timers(),
                on_update=ctx.trigger,
            )
        except ValueError as e:
            self._log_once(f"discovery service not used: {e}")
            return None
        self._logged = None
        # Replaced, not left: the old record expires by its TTL (§4.7).
        await self._stop_client()
        log.info(
            "discovery service %s (%s), cluster %s…",
            dc.service_endpoint,
            "TLS" if client.target.tls else "plaintext",
            dc.service_cluster_id[:8],
        )
        self._client, self._client_key, self._last_sent = client, key, None
        client.start()
        return client

    def _publish(self, ctx: Context, client: DiscoveryClient, nid: str) -> None:
        """§4.7 step 2: set_local_data only when the payload or endpoints differ from the last sent."""
        r = ctx.get(CLUSTER, AFFILIATE_TYPE, nid)
        if r is None or not isinstance(r.spec, AffiliateSpec):
            return
        try:
            info, endpoints = to_wire(r.spec)
        except ValueError as e:
            log.error("local affiliate not published: %s", e)
            return
        others = harvested(ctx)
        sent = (info, endpoints, others)
        if sent != self._last_sent:
            client.set_local_data(info, endpoints, others)
            self._last_sent = sent

    async def leave(self) -> bool:
        """Delete this node's affiliate now and stop publishing (reset/leave); True if confirmed."""
        self._leaving = True
        client = self._client
        if client is None:
            return False
        ok = await client.leave()
        log.info("left the cluster: AffiliateDelete %s", "confirmed" if ok else "not confirmed")
        await self._stop_client()
        return ok


def harvested(ctx: Context) -> tuple[tuple[str, tuple[Endpoint, ...]], ...]:
    """§6.4: the KubeSpanEndpoints as (peer node ID, endpoints), one entry per peer node,
    sorted so an unchanged set compares equal to the last one sent."""
    by_node: dict[str, list[Endpoint]] = {}
    for r in ctx.list(KUBESPAN, ENDPOINT_TYPE):
        spec = r.spec
        if not isinstance(spec, KubeSpanEndpointSpec) or not spec.affiliate_id:
            continue
        try:
            ep = Endpoint(*parse_endpoint(spec.endpoint))
        except ValueError as e:
            log.warning("harvested endpoint %s skipped: %s", r.id, e)
            continue
        by_node.setdefault(spec.affiliate_id, []).append(ep)
    return tuple((node, tuple(sorted(set(eps), key=str))) for node, eps in sorted(by_node.items()))
