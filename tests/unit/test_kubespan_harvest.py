"""kubespan/harvest.py: KubeSpanEndpoints of kubespan.md §6.4."""

from __future__ import annotations

from kubespan.harvest import HarvestedEndpoint, harvest_endpoints
from kubespan.peer_state import PeerState, PeerStatus
from kubespan.peers import Endpoint

NAT = Endpoint.parse("10.0.0.50:40123")
EP2 = Endpoint.parse("[fd00:10::2]:51820")


def test_only_up_peers_with_endpoint_and_affiliate() -> None:
    statuses = {
        "K1": PeerStatus(state=PeerState.UP, endpoint=NAT),
        "K2": PeerStatus(state=PeerState.UP, endpoint=EP2),
        "K3": PeerStatus(state=PeerState.DOWN, endpoint=NAT),
        "K4": PeerStatus(state=PeerState.UNKNOWN, endpoint=NAT),
        "K5": PeerStatus(state=PeerState.UP, endpoint=None),
        "K6": PeerStatus(state=PeerState.UP, endpoint=NAT),  # no cluster affiliate has this key
    }
    ids = {"K1": "node-1", "K2": "node-2", "K3": "node-3", "K4": "node-4", "K5": "node-5"}
    assert harvest_endpoints(statuses, ids, enabled=True) == {
        "K1": HarvestedEndpoint("node-1", NAT),
        "K2": HarvestedEndpoint("node-2", EP2),
    }


def test_disabled_harvests_nothing() -> None:
    statuses = {"K1": PeerStatus(state=PeerState.UP, endpoint=NAT)}
    assert harvest_endpoints(statuses, {"K1": "node-1"}, enabled=False) == {}


def test_reports_what_wireguard_sees_not_what_we_configured() -> None:
    st = PeerStatus(state=PeerState.UP, endpoint=NAT, last_used_endpoint=Endpoint.parse("192.168.50.2:51820"))
    assert harvest_endpoints({"K": st}, {"K": "n4"}, enabled=True)["K"].endpoint == NAT
