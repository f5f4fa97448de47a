"""Harvested endpoints: KubeSpanEndpoint resources (kubespan.md §6.4).

A peer that is up is reachable at the address WireGuard currently sees for it,
which behind NAT is often an address the peer cannot know about itself (its
NAT mapping). Reporting it to discovery for that peer's affiliate teaches
every other node one more endpoint to try (§4.7 ``other_endpoints``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kubespan.peer_state import PeerState, PeerStatus
from kubespan.peers import Endpoint


@dataclass(frozen=True)
class HarvestedEndpoint:
    """KubeSpanEndpoint (§6.4): id = the peer's public key."""

    affiliate_id: str  # the peer's node ID
    endpoint: Endpoint


def harvest_endpoints(
    statuses: Mapping[str, PeerStatus],
    node_id_by_public_key: Mapping[str, str],
    *,
    enabled: bool,
) -> dict[str, HarvestedEndpoint]:
    """The KubeSpanEndpoints that should exist, by public key (the rest are removed).

    ``statuses`` are this run's peer statuses by public key;
    ``node_id_by_public_key`` maps the KubeSpan public key of every ``cluster``
    affiliate to its node ID; ``enabled`` is ``harvestExtraEndpoints`` (off:
    nothing, so every existing KubeSpanEndpoint is removed).
    """
    if not enabled:
        return {}
    out: dict[str, HarvestedEndpoint] = {}
    for key in sorted(statuses):
        st = statuses[key]
        node_id = node_id_by_public_key.get(key)
        if st.state is PeerState.UP and st.endpoint is not None and node_id:
            out[key] = HarvestedEndpoint(affiliate_id=node_id, endpoint=st.endpoint)
    return out
