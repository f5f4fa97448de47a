"""Cluster discovery and KubeSpan identity controllers, in machined's two start phases.

``source_controllers`` need no network and settle with the config controllers
(the node Identity must exist before a stable hostname can be computed);
``discovery_controllers`` include the one that talks to the discovery service,
so they are never part of ``netctl plan`` (which must stay offline).
"""

from __future__ import annotations

from cosi import Controller

from .affiliate import AffiliateMergeController, LocalAffiliateController, MemberController
from .config import DiscoveryConfigController, KubeSpanConfigController
from .discovery import DiscoveryServiceController
from .identity import KubeSpanIdentityController, NodeIdentityController


def source_controllers(state_dir: str) -> list[Controller]:
    return [NodeIdentityController(state_dir), DiscoveryConfigController(), KubeSpanConfigController()]


def discovery_controllers(state_dir: str) -> list[Controller]:
    return [
        KubeSpanIdentityController(state_dir),
        LocalAffiliateController(),
        DiscoveryServiceController(),
        AffiliateMergeController(),
        MemberController(),
    ]


__all__ = [
    "AffiliateMergeController",
    "DiscoveryConfigController",
    "DiscoveryServiceController",
    "KubeSpanConfigController",
    "KubeSpanIdentityController",
    "LocalAffiliateController",
    "MemberController",
    "NodeIdentityController",
    "discovery_controllers",
    "source_controllers",
]
