"""The KubeSpan manager (kubespan.md §6.3, §7; decisions.md "KubeSpan" and "Restarts").

One pass: read the ``kubespan`` WireGuard device, run every peer through
:func:`kubespan.peer_state.update_peer`, publish the operator-layer specs of
:func:`kubespan.specs.kubespan_specs` (the generic controllers put them in the
kernel: the WireGuard link kind applies the peers as a diff), apply the
``inet talos_kubespan`` table directly, publish peer statuses and harvested
endpoints. Runs on any input change, exactly when a peer's state could next
change on its own (an endpoint is judged ENDPOINT_CONNECTION_TIMEOUT after it
was tried), and every KUBESPAN_RECONCILE_INTERVAL to refresh the counters.

Restarts (machined exits without tearing KubeSpan down): a new process must
not drop peers it has not heard of yet. So while the discovery service has
not delivered its first snapshot, nothing is published (the generic
controllers keep recorded operator-layer objects during their grace), and for
OPERATOR_RESTART_GRACE after start, device peers with no PeerSpec (yet) are
kept as they are in the device; a status starts from the device's session
(:func:`kubespan.peer_state.resume_status`), so an established peer stays
``up`` on its endpoint. The nft table is adopted from its ownership record.

Disabling tears down in §7.6's order: the rules go first (with the nft table),
and the link, address and routes only once the rule specs are gone from the
kernel, so traffic stops being diverted before the tunnel disappears.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from cluster.resources import (
    AFFILIATE_TYPE,
    DISCOVERY_CONFIG_ID,
    DISCOVERY_CONFIG_TYPE,
    DISCOVERY_STATUS_ID,
    DISCOVERY_STATUS_TYPE,
    KUBESPAN_CONFIG_ID,
    KUBESPAN_CONFIG_TYPE,
    KUBESPAN_IDENTITY_ID,
    KUBESPAN_IDENTITY_TYPE,
    AffiliateSpec,
    DiscoveryConfigSpec,
    DiscoveryServiceStatusSpec,
    KubeSpanConfigSpec,
    KubeSpanIdentitySpec,
)
from cosi import Context, Controller, Input, InputKind, Output, OutputKind
from kubespan import constants as c
from kubespan.harvest import harvest_endpoints
from kubespan.nft import KubeSpanTable, RoutedSet
from kubespan.peer_state import DevicePeer, PeerStatus, Timers
from kubespan.peers import Endpoint, Network, PeerSpec
from kubespan.reconcile import PassInput, manager_pass
from kubespan.resources import (
    ENDPOINT_TYPE,
    PEER_SPEC_TYPE,
    PEER_STATUS_TYPE,
    KubeSpanEndpointSpec,
    KubeSpanPeerSpecSpec,
    KubeSpanPeerStatusSpec,
)
from kubespan.specs import LocalIdentity
from netd import tunables
from netd.kernel.applied import Applied
from netd.kernel.nftables import NftablesError, netfilter_unavailable
from netd.kernel.wireguard import WireguardDevice, WireguardError, read_device
from netd.kernel.wireguard.backend import is_userspace_device
from netd.kernel.wireguard.model import key_to_b64
from netd.resources.address import ADDRESS_SPEC_TYPE, ADDRESS_STATUS_TYPE, AddressStatus
from netd.resources.enums import Scope
from netd.resources.link import LINK_SPEC_TYPE, LINK_STATUS_TYPE, LinkStatus, WireguardPeer
from netd.resources.namespaces import CLUSTER, KUBESPAN, NETWORK, NETWORK_CONFIG
from netd.resources.route import ROUTE_SPEC_TYPE
from netd.resources.routing_rule import ROUTING_RULE_SPEC_TYPE, ROUTING_RULE_STATUS_TYPE, RoutingRuleStatus

log = logging.getLogger("kubespan.manager")

#: The nft table's ownership record in ``applied.json`` (decisions.md "KubeSpan").
APPLIED_KIND = "nftables"
APPLIED_KEY = f"{c.NFT_FAMILY} {c.NFT_TABLE}"
#: Where the per-link rp_filter sysctls live (§7.8).
RP_FILTER_DIR = Path("/proc/sys/net/ipv4/conf")
#: Shortest timer the manager arms (a state change due "now" is re-checked this soon).
MIN_REQUEUE = 0.05
#: While a peer is trying an endpoint, the device is read this often: a handshake raises no
#: event, and "up" should show when it happens, not at the next refresh.
TRYING_POLL = 0.5

_SPEC_TYPES = (LINK_SPEC_TYPE, ADDRESS_SPEC_TYPE, ROUTE_SPEC_TYPE, ROUTING_RULE_SPEC_TYPE)


def device_peers(dev: WireguardDevice | None) -> dict[str, DevicePeer]:
    """The device's view of each peer by base64 public key (§6.3 step 4)."""
    out: dict[str, DevicePeer] = {}
    if dev is None:
        return out
    for p in dev.peers:
        ep = None
        if p.endpoint:
            try:
                ep = Endpoint.parse(p.endpoint)
            except ValueError:
                ep = None
        out[key_to_b64(p.public_key)] = DevicePeer(
            endpoint=ep,
            last_handshake_time=p.last_handshake_time,
            receive_bytes=p.rx_bytes,
            transmit_bytes=p.tx_bytes,
        )
    return out


def peer_spec(key: str, s: KubeSpanPeerSpecSpec) -> PeerSpec | None:
    """The typed value of a KubeSpanPeerSpec resource (None if it does not convert)."""
    if s.address is None or s.address.version != 6:
        return None
    try:
        endpoints = tuple(Endpoint.parse(e) for e in s.endpoints)
    except ValueError:
        return None
    nets: tuple[Network, ...] = tuple(p.network for p in s.allowed_ips)
    return PeerSpec(
        public_key=key,
        label=s.label,
        address=s.address,
        allowed_ips=nets,
        endpoints=endpoints,
    )


def connected_subnets(statuses: Sequence[AddressStatus]) -> list[Network]:
    """This node's connected subnets (decisions.md "Endpoint order"), KubeSpan's own excluded."""
    nets: list[Network] = []
    for a in statuses:
        if a.address is None or a.link_name == c.LINK_NAME or a.scope not in (Scope.GLOBAL, Scope.SITE):
            continue
        net = a.address.network
        if net.prefixlen < net.max_prefixlen and net not in nets:
            nets.append(net)
    return nets


def static_peers(
    cfg: KubeSpanConfigSpec, specs: Mapping[str, PeerSpec], keepalive: float
) -> tuple[list[WireguardPeer], list[Network]]:
    """The ``KubeSpanPeerConfig`` machines (not nodes) as WireGuard peers, and their prefixes
    for the nft sets (always routed: they have no discovery state to be "up" in). No PSK: the
    cluster secret stays on the nodes. A key that is also a node's is the node's."""
    peers: list[WireguardPeer] = []
    nets: list[Network] = []
    for sp in cfg.static_peers:
        if sp.public_key in specs:
            continue
        peers.append(
            WireguardPeer(
                public_key=sp.public_key,
                endpoint=sp.endpoint,
                persistent_keepalive_interval=dt.timedelta(seconds=keepalive),
                allowed_ips=list(sp.allowed_ips),
            )
        )
        nets.extend(p.network for p in sp.allowed_ips)
    return peers, nets


def rp_filter_off(conf: Path, link: str) -> str | None:
    """Make ``link``'s effective rp_filter 0 without changing any other link's (see
    :meth:`ManagerController._rp_filter`); a description of what was written, None if nothing."""
    own = conf / link / "rp_filter"
    all_ = conf / "all" / "rp_filter"
    strict = int(all_.read_text())
    wrote: list[str] = []
    if strict:
        raised = []
        for d in sorted(conf.iterdir()):
            if d.name in ("all", link):
                continue
            f = d / "rp_filter"
            try:
                if int(f.read_text()) < strict:
                    f.write_text(f"{strict}\n")
                    raised.append(d.name)
            except (OSError, ValueError):
                continue  # a link that went away meanwhile
        all_.write_text("0\n")
        wrote.append(f"all: {strict} -> 0, {strict} now set on " + (", ".join(raised) or "no other link"))
    if int(own.read_text()):
        own.write_text("0\n")
        wrote.append(link)
    return "; ".join(wrote) if wrote else None


class ManagerController(Controller):
    name = "kubespan.ManagerController"

    def __init__(self, applied: Applied) -> None:
        self.applied = applied
        self.timers = Timers.from_tunables()
        self.interval = tunables.seconds("KUBESPAN_RECONCILE_INTERVAL")
        self.keepalive = tunables.seconds("KUBESPAN_KEEPALIVE")
        self.grace = tunables.seconds("OPERATOR_RESTART_GRACE")
        self.statuses: dict[str, PeerStatus] = {}
        self.passes = 0
        self._started = time.monotonic()
        self._ready = False
        self._leaving = False
        self._seen: set[str] = set()  # public keys this process has had PeerSpecs for
        self._table: KubeSpanTable | None = None
        self._logged: dict[str, str] = {}

    def inputs(self) -> Sequence[Input]:
        return [
            Input(KUBESPAN, KUBESPAN_CONFIG_TYPE, id=KUBESPAN_CONFIG_ID),
            Input(KUBESPAN, KUBESPAN_IDENTITY_TYPE, id=KUBESPAN_IDENTITY_ID),
            Input(KUBESPAN, PEER_SPEC_TYPE),
            Input(CLUSTER, AFFILIATE_TYPE),  # node IDs by public key, for harvesting (§6.4)
            Input(CLUSTER, DISCOVERY_CONFIG_TYPE, id=DISCOVERY_CONFIG_ID),
            Input(CLUSTER, DISCOVERY_STATUS_TYPE, id=DISCOVERY_STATUS_ID),
            Input(NETWORK, LINK_STATUS_TYPE, id=c.LINK_NAME),
            Input(NETWORK, ADDRESS_STATUS_TYPE),
            Input(NETWORK, ROUTING_RULE_STATUS_TYPE),
            # Teardown waits for the rule specs to be gone from the kernel (§7.6 order).
            Input(NETWORK, ROUTING_RULE_SPEC_TYPE, InputKind.WEAK),
        ]

    def outputs(self) -> Sequence[Output]:
        return [
            *(Output(NETWORK_CONFIG, t, OutputKind.SHARED) for t in _SPEC_TYPES),
            Output(KUBESPAN, PEER_STATUS_TYPE),
            Output(KUBESPAN, ENDPOINT_TYPE),
        ]

    # ---- helpers

    def _log_once(self, topic: str, level: int, message: str) -> None:
        if self._logged.get(topic) != message:
            self._logged[topic] = message
            log.log(level, "%s", message)

    def _config(self, ctx: Context) -> tuple[KubeSpanConfigSpec | None, KubeSpanIdentitySpec | None]:
        cr = ctx.get(KUBESPAN, KUBESPAN_CONFIG_TYPE, KUBESPAN_CONFIG_ID)
        ir = ctx.get(KUBESPAN, KUBESPAN_IDENTITY_TYPE, KUBESPAN_IDENTITY_ID)
        cfg = cr.spec if cr is not None and isinstance(cr.spec, KubeSpanConfigSpec) else None
        ident = ir.spec if ir is not None and isinstance(ir.spec, KubeSpanIdentitySpec) else None
        if ident is not None and (ident.address is None or not ident.private_key):
            ident = None
        return cfg, ident

    def _grace_left(self) -> float:
        return self.grace - (time.monotonic() - self._started)

    def _wait(self, ctx: Context, link_exists: bool) -> float | None:
        """Seconds to hold back after a start (None: go). Only a restart over a live KubeSpan
        waits, and only for the discovery service's first snapshot, at most the grace."""
        left = self._grace_left()
        if not link_exists or left <= 0:
            return None
        dr = ctx.get(CLUSTER, DISCOVERY_CONFIG_TYPE, DISCOVERY_CONFIG_ID)
        dc = dr.spec if dr is not None else None
        if not isinstance(dc, DiscoveryConfigSpec) or not (
            dc.discovery_enabled and dc.registry_service_enabled
        ):
            return None
        sr = ctx.get(CLUSTER, DISCOVERY_STATUS_TYPE, DISCOVERY_STATUS_ID)
        if sr is not None and isinstance(sr.spec, DiscoveryServiceStatusSpec) and sr.spec.synced:
            return None
        return left

    async def _device(self, link: LinkStatus | None) -> WireguardDevice | None:
        if link is None:
            return None
        try:
            if is_userspace_device(c.LINK_NAME):
                return await read_device(c.LINK_NAME, "tun")
            return await read_device(c.LINK_NAME, link.kind)
        except (WireguardError, OSError) as e:
            self._log_once("device", logging.WARNING, f"cannot read the {c.LINK_NAME} device: {e}")
            return None

    def _table_or_none(self) -> KubeSpanTable | None:
        """The nft adapter, created only once the probe says libnftables can work here."""
        if self._table is None:
            why = netfilter_unavailable()
            if why is not None:
                self._log_once("nft", logging.ERROR, f"KubeSpan nftables table not applied: {why}")
                return None
            self._table = KubeSpanTable()
            rec = self.applied.items(APPLIED_KIND).get(APPLIED_KEY)
            if rec and isinstance(rec.get("rendering"), str) and isinstance(rec.get("listing"), str):
                self._table.adopt((rec["rendering"], rec["listing"]))
        return self._table

    def _apply_table(self, routed: RoutedSet, mtu: int) -> None:
        table = self._table_or_none()
        if table is None:
            return
        if APPLIED_KEY not in self.applied.items(APPLIED_KIND):  # intent before action (issue 16)
            self.applied.pend(APPLIED_KIND, APPLIED_KEY, {"layer": "operator"})
        try:
            wrote = table.apply(routed, mtu)
        except NftablesError as e:
            self._log_once("nft", logging.ERROR, f"KubeSpan nftables table not applied: {e}")
            return
        self._logged.pop("nft", None)
        if wrote:
            log.info(
                "nftables %s: %d IPv4 and %d IPv6 prefixes routed through %s",
                APPLIED_KEY,
                len(routed.ipv4),
                len(routed.ipv6),
                c.LINK_NAME,
            )
        rec = table.record
        if rec is not None:
            self.applied.add(
                APPLIED_KIND, APPLIED_KEY, {"rendering": rec[0], "listing": rec[1], "layer": "operator"}
            )

    def _teardown_table(self) -> None:
        if APPLIED_KEY not in self.applied.items(APPLIED_KIND) and self._table is None:
            return  # never ours: a table of that name is somebody else's
        table = self._table_or_none()
        if table is None:
            return
        try:
            if table.teardown():
                log.info("nftables %s removed", APPLIED_KEY)
        except NftablesError as e:
            self._log_once("nft", logging.ERROR, f"KubeSpan nftables table not removed: {e}")
            return
        self.applied.remove(APPLIED_KIND, APPLIED_KEY)

    def _rp_filter(self) -> None:
        """§7.8 on the real kernel: reverse-path filtering off on ``kubespan``.

        Packets from a peer's node address arrive decrypted on ``kubespan`` while the route
        back to that address is the underlay's, so strict filtering drops them; and loose
        filtering (2) drops them too, because ``kubespan`` has no IPv4 address (the kernel's
        fib_validate_source fails a device without one unless rp_filter is 0). The kernel
        applies max(all, link), so a non-zero ``all`` is first moved onto every other link
        and ``default``: their effective value is unchanged, only ``kubespan`` gets 0.
        """
        try:
            moved = rp_filter_off(RP_FILTER_DIR, c.LINK_NAME)
        except OSError as e:
            self._log_once("rp_filter", logging.WARNING, f"cannot set rp_filter on {c.LINK_NAME}: {e}")
            return
        if moved is not None:
            log.info("net.ipv4.conf.%s.rp_filter = 0 (%s)", c.LINK_NAME, moved)

    def _rule_specs_left(self, ctx: Context) -> bool:
        """Whether a KubeSpan rule spec is still applied (held by the rule controller until the
        kernel rule is gone)."""
        for r in ctx.list(NETWORK, ROUTING_RULE_SPEC_TYPE):
            s = r.spec
            if (
                getattr(s, "table", None) == c.ROUTING_TABLE
                and getattr(s, "fw_mark", None) == c.MARK
                and getattr(s, "fw_mask", None) == c.MASK
            ):
                return True
        return False

    # ---- the pass

    async def reconcile(self, ctx: Context) -> None:
        self.passes += 1
        cfg, ident = self._config(ctx)
        if self._leaving or cfg is None or not cfg.enabled:
            self._teardown(ctx)
            return
        if ident is None or ident.address is None:
            return  # §6.3 step 2: wait for the identity
        lr = ctx.get(NETWORK, LINK_STATUS_TYPE, c.LINK_NAME)
        link = lr.spec if lr is not None and isinstance(lr.spec, LinkStatus) else None
        if not self._ready:
            wait = self._wait(ctx, link is not None)
            if wait is not None:
                self._log_once("wait", logging.INFO, "waiting for the discovery service's member list")
                ctx.requeue_after(max(wait, MIN_REQUEUE))
                return
            self._ready = True
        ks_ip = ident.address.ip
        assert isinstance(ks_ip, ipaddress.IPv6Address)
        raw = await self._device(link)
        specs: dict[str, PeerSpec] = {}
        for r in ctx.list(KUBESPAN, PEER_SPEC_TYPE):
            if isinstance(r.spec, KubeSpanPeerSpecSpec):
                p = peer_spec(r.id, r.spec)
                if p is not None:
                    specs[r.id] = p
        extra, extra_nets = static_peers(cfg, specs, self.keepalive)
        # Restart: device peers this process has not had a spec for (yet) are kept as they
        # are during the grace; a peer whose spec went away is removed at once.
        self._seen |= specs.keys()
        known = self._seen | {p.public_key for p in extra}
        adopted = 0
        if self._grace_left() > 0:
            for info in raw.peers if raw is not None else []:
                if key_to_b64(info.public_key) not in known:
                    extra.append(info.to_spec().model_copy(update={"endpoint": ""}))
                    adopted += 1
                    if cfg.force_routing:
                        extra_nets.extend(a.network for a in info.allowed_ips)
        addresses = [
            a.spec for a in ctx.list(NETWORK, ADDRESS_STATUS_TYPE) if isinstance(a.spec, AddressStatus)
        ]
        log.debug("pass %d: %d peer specs", self.passes, len(specs))
        result = manager_pass(
            PassInput(
                now=dt.datetime.now(dt.UTC),
                identity=LocalIdentity(address=ks_ip, private_key=ident.private_key),
                mtu=cfg.mtu,
                shared_secret=cfg.shared_secret,
                force_routing=cfg.force_routing,
                specs=specs,
                statuses=self.statuses,
                device=device_peers(raw),
                local_subnets=connected_subnets(addresses),
                existing_rules=[
                    r.spec
                    for r in ctx.list(NETWORK, ROUTING_RULE_STATUS_TYPE)
                    if isinstance(r.spec, RoutingRuleStatus)
                ],
                extra_peers=extra,
                extra_routed=extra_nets,
                keepalive=self.keepalive,
                timers=self.timers,
            )
        )
        for line in result.events:
            log.info("%s", line)
        self.statuses = result.statuses
        if result.specs is None:
            self._log_once("specs", logging.ERROR, f"KubeSpan not applied: {result.error}")
            self._publish_statuses(ctx, cfg)
            return
        self._logged.pop("specs", None)
        out = result.specs
        ctx.reconcile_owned(NETWORK_CONFIG, LINK_SPEC_TYPE, out.links)
        ctx.reconcile_owned(NETWORK_CONFIG, ADDRESS_SPEC_TYPE, out.addresses)
        ctx.reconcile_owned(NETWORK_CONFIG, ROUTE_SPEC_TYPE, out.routes)
        ctx.reconcile_owned(NETWORK_CONFIG, ROUTING_RULE_SPEC_TYPE, out.rules)
        self._apply_table(result.routed, cfg.mtu)
        if link is not None:
            self._rp_filter()
        self._publish_statuses(ctx, cfg)

        # Next run: when a peer's state can change by itself, else the refresh interval.
        delay = self.interval
        if result.next_check is not None:
            delay = min(delay, (result.next_check - dt.datetime.now(dt.UTC)).total_seconds())
        if adopted:
            delay = min(delay, self._grace_left())
        if result.trying:
            delay = min(delay, TRYING_POLL)
        ctx.requeue_after(max(delay, MIN_REQUEUE))

    def _publish_statuses(self, ctx: Context, cfg: KubeSpanConfigSpec) -> None:
        ctx.reconcile_owned(
            KUBESPAN, PEER_STATUS_TYPE, {k: KubeSpanPeerStatusSpec.of(s) for k, s in self.statuses.items()}
        )
        node_ids = {}
        for r in ctx.list(CLUSTER, AFFILIATE_TYPE):
            a = r.spec
            if isinstance(a, AffiliateSpec) and a.kubespan is not None and a.kubespan.public_key:
                node_ids[a.kubespan.public_key] = a.node_id
        harvested = harvest_endpoints(self.statuses, node_ids, enabled=cfg.harvest_extra_endpoints)
        ctx.reconcile_owned(
            KUBESPAN, ENDPOINT_TYPE, {k: KubeSpanEndpointSpec.of(h) for k, h in harvested.items()}
        )

    def _teardown(self, ctx: Context) -> None:
        """§7.6, in its order: rules and the nft table first, the rest once the rules are gone."""
        self.statuses = {}
        ctx.reconcile_owned(KUBESPAN, PEER_STATUS_TYPE, {})
        ctx.reconcile_owned(KUBESPAN, ENDPOINT_TYPE, {})
        ctx.reconcile_owned(NETWORK_CONFIG, ROUTING_RULE_SPEC_TYPE, {})
        self._teardown_table()
        if self._rule_specs_left(ctx):
            return  # the rule specs' destruction triggers the next pass
        for t in (ROUTE_SPEC_TYPE, ADDRESS_SPEC_TYPE, LINK_SPEC_TYPE):
            ctx.reconcile_owned(NETWORK_CONFIG, t, {})

    async def leave(self) -> bool:
        """``netctl reset`` / ``machined --leave``: KubeSpan goes with the node's other config
        (§7.6); the nft table is ours to remove, the specs go with the generic reset."""
        self._leaving = True
        self._teardown_table()
        return True
