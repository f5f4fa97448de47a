"""Every KubeSpan number, named once, with its source (kubespan.md §8; style.md "one module per subsystem").

These are the spec defaults. The timers among them can be shortened for tests
through ``NETD_TUNABLES`` (decisions.md "Tunables"); code that runs on a timer
takes its durations as parameters (``kubespan.peer_state.Timers``) and the
caller decides whether they come from here or from the tunables.

Durations are ``float`` seconds, like the tunables, so a test's 1.5 s and the
spec's 15 s are the same type.
"""

from __future__ import annotations

from typing import Final

# ---- the WireGuard link (§7.1, §8) --------------------------------------------------------------

#: Name of the WireGuard link (§7.1).
LINK_NAME: Final = "kubespan"
#: Its link kind (§7.1).
LINK_KIND: Final = "wireguard"
#: WireGuard UDP listen port, also the port of every advertised endpoint (§5.3 step 4, §7.1).
LISTEN_PORT: Final = 51820
#: Default link MTU when the config leaves it unset or 0 (§1.1; rule of thumb: underlay MTU - 80).
DEFAULT_MTU: Final = 1420
#: Smallest MTU the config accepts (§1.1 validation; IPv6's minimum link MTU).
MIN_MTU: Final = 1280
#: Persistent keepalive of every peer, seconds (§6.3, §8).
KEEPALIVE: Final = 25.0
#: Length of the KubeSpan address on the link: the cluster's /64, not the identity's /128 (§7.2).
ADDRESS_PREFIX_LEN: Final = 64
#: Length of the pre-shared key (the decoded cluster secret) WireGuard requires (§7.1).
PRESHARED_KEY_LEN: Final = 32

# ---- marks, policy routing (§7.3, §7.4, §8, §9.8) -----------------------------------------------

#: The mark WireGuard puts on every packet it sends itself (§7.1): never diverted into the tunnel.
FWMARK: Final = 0x20
#: "Force into KubeSpan" mark set by the nftables chains (§7.4).
MARK: Final = 0x40
#: The two mark bits KubeSpan owns (§8).
MASK: Final = 0x60
#: ``meta mark & SET_MARK_AND`` clears both KubeSpan bits before MARK is or-ed in (§7.4, §11:
#: the docs' 0xffffffdf is outdated).
SET_MARK_AND: Final = 0xFFFFFFFF ^ MASK  # 0xffffff9f
#: The policy routing table marked packets look up (§7.2, §7.3).
ROUTING_TABLE: Final = 180
#: Rule priority KubeSpan starts at, searching downward for a free one (§7.3).
RULE_PRIORITY: Final = 32500
#: Metric of the two table-180 default routes (§7.2).
ROUTE_METRIC: Final = 1

# ---- MSS clamping (§7.4, §8) --------------------------------------------------------------------

#: IPv4 + TCP header bytes: SYNs to IPv4 targets are clamped to MTU - 40 (§8).
MSS_OVERHEAD_IPV4: Final = 40
#: IPv6 + TCP header bytes: SYNs to IPv6 targets are clamped to MTU - 60 (§8).
MSS_OVERHEAD_IPV6: Final = 60

# ---- nftables (§7.4) ------------------------------------------------------------------------------

#: The dedicated table (decisions.md "KubeSpan", §7.4 recommended rendering).
NFT_FAMILY: Final = "inet"
NFT_TABLE: Final = "talos_kubespan"
NFT_SET_IPV4: Final = "kubespan_targets_ipv4"
NFT_SET_IPV6: Final = "kubespan_targets_ipv6"
NFT_CHAIN_PREROUTING: Final = "kubespan_prerouting"
NFT_CHAIN_OUTGOING: Final = "kubespan_outgoing"

# ---- timers (§6.3, §8) -----------------------------------------------------------------------------

#: How long a freshly configured endpoint has to produce a handshake before it is judged (§6.3).
ENDPOINT_CONNECTION_TIMEOUT: Final = 15.0
#: A peer with no handshake for this long is down: 180 s handshake timeout + 5 s rekey timeout
#: + 90 s rekey-attempt time of the WireGuard protocol (§6.3).
PEER_DOWN_INTERVAL: Final = 275.0
#: The manager's periodic run, refreshing statuses from the device (§6.3 RECONCILE_INTERVAL).
KUBESPAN_RECONCILE_INTERVAL: Final = 30.0
