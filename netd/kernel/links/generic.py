"""Kinds we only create and delete by name, with no attributes of their own.

Used for any logical kind without a module of its own: ``ip link add NAME
type KIND`` is all there is to it, and there is nothing to compare or update
(up/down, MTU and master are handled by the controller for every kind).
"""

from __future__ import annotations

from netd.kernel.links.base import LinkKind


class GenericKind(LinkKind):
    def __init__(self, kind: str) -> None:
        self.kind = kind
