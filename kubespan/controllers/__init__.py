"""KubeSpan's controllers: peer specs from affiliates, and the manager (kubespan.md §6)."""

from __future__ import annotations

from cosi import Controller
from netd.kernel.applied import Applied

from .manager import ManagerController
from .peer_spec import PeerSpecController


def kubespan_controllers(applied: Applied) -> list[Controller]:
    return [PeerSpecController(), ManagerController(applied)]


__all__ = ["ManagerController", "PeerSpecController", "kubespan_controllers"]
