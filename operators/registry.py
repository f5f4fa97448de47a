"""Which class runs which operator (operators.md §1.1): ``Operator`` → factory.

DHCPv6 and VIP are imported lazily, at the first spec that needs them: their
modules (and the etcd client) stay out of machined's start-up path, and an
operator whose module cannot be imported is logged once as not available and
skipped, instead of taking the runner down with it.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence

from netd.resources.enums import Operator as OperatorKind
from netd.resources.operator import OperatorSpec
from operators.base import Operator

log = logging.getLogger("network.OperatorSpecController")

Factory = Callable[[OperatorSpec], Operator]

#: Where each operator's class lives: (module, class name).
_LAZY: dict[OperatorKind, tuple[str, str]] = {
    OperatorKind.DHCP4: ("operators.dhcp4", "DHCP4Operator"),
    OperatorKind.DHCP6: ("operators.dhcp6", "DHCP6Operator"),
    OperatorKind.VIP: ("operators.vip", "VIPOperator"),
}


class OperatorRegistry:
    """Makes operator instances; ``etcd_endpoints`` is ``machined --etcd-endpoints`` (VIP)."""

    def __init__(self, etcd_endpoints: Sequence[str] = ()) -> None:
        self.etcd_endpoints = list(etcd_endpoints)
        self._classes: dict[OperatorKind, type[Operator] | None] = {}
        self._overrides: dict[OperatorKind, Factory] = {}

    def register(self, kind: OperatorKind, factory: Factory) -> None:
        """Use ``factory`` for ``kind`` (tests: a fake operator)."""
        self._overrides[kind] = factory

    def _class(self, kind: OperatorKind) -> type[Operator] | None:
        if kind not in self._classes:
            module, name = _LAZY[kind]
            try:
                cls = getattr(importlib.import_module(module), name)
            except Exception as e:  # not written yet, or broken: skip it, once
                log.error("operator %s not available: %s", kind, e)
                cls = None
            self._classes[kind] = cls
        return self._classes[kind]

    def create(self, spec: OperatorSpec) -> Operator | None:
        """A new operator for ``spec``; None when that kind of operator is not available."""
        override = self._overrides.get(spec.operator)
        if override is not None:
            return override(spec)
        cls = self._class(spec.operator)
        if cls is None:
            return None
        if spec.operator is OperatorKind.VIP:
            return cls(spec, self.etcd_endpoints)  # type: ignore[call-arg]
        return cls(spec)  # type: ignore[call-arg]
