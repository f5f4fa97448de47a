"""The contract between the operator runner and the operators (DHCPv4, DHCPv6, VIP).

The runner (``operators/runner.py``, a controller registered in
``machined/wiring.py``) starts one :class:`Operator` per OperatorSpec in
``network`` as an asyncio task, restarts it with back-off when it raises, and
stops it (task cancelled) when its spec goes or changes. It hands the
operator an :class:`OperatorHost`: everything an operator may do to the rest
of the node goes through it, so operators stay free of the resource state and
can be driven by a fake host in unit tests.

What an operator produces is an :class:`OperatorOutput`: the specs it wants,
each keyed by its natural id. The runner publishes them in ``network-config``
with ids ``<operator id>/<natural id>`` (``dhcp4/eth0/eth0/10.0.2.15/24``,
netd.md §4.2) and ``layer: operator`` (the DHCPv4 MTU link spec keeps the
layer it was given: netd.md §4.2 has it ``default``), replacing the previous
output as a whole; when the operator stops, its output is withdrawn. A
restarted machined keeps the kernel objects of an operator's last output for
OPERATOR_RESTART_GRACE (decisions.md "Restarts"), so an operator that
republishes the same lease in time causes no flap.

Statuses: ``set_status`` publishes the operator's OperatorStatus
(``netctl get operators``), id = the operator id.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from netd.resources.address import AddressSpec
from netd.resources.hostname import HostnameSpec
from netd.resources.link import LinkSpec
from netd.resources.operator import OperatorSpec
from netd.resources.operator_status import OperatorStatusSpec
from netd.resources.resolver import ResolverSpec
from netd.resources.route import RouteSpec
from netd.resources.timeserver import TimeServerSpec


@dataclass
class OperatorOutput:
    """The specs an operator wants now, by natural id (``AddressSpec.id()`` etc.)."""

    addresses: dict[str, AddressSpec] = field(default_factory=dict)
    routes: dict[str, RouteSpec] = field(default_factory=dict)
    links: dict[str, LinkSpec] = field(default_factory=dict)
    hostnames: dict[str, HostnameSpec] = field(default_factory=dict)
    resolvers: dict[str, ResolverSpec] = field(default_factory=dict)
    timeservers: dict[str, TimeServerSpec] = field(default_factory=dict)

    def empty(self) -> bool:
        return not any(
            (self.addresses, self.routes, self.links, self.hostnames, self.resolvers, self.timeservers)
        )


class OperatorHost(Protocol):
    """What the runner gives a running operator."""

    @property
    def spec(self) -> OperatorSpec:
        """The OperatorSpec this operator runs for (fixed: a changed spec restarts it)."""
        ...

    @property
    def state_dir(self) -> Path:
        """A directory of its own that survives restarts (leases, DUID); created by the runner."""
        ...

    def publish(self, output: OperatorOutput) -> None:
        """Replace the operator's published specs with ``output`` (empty: withdraw all)."""
        ...

    def set_status(self, status: OperatorStatusSpec) -> None:
        """Publish the operator's OperatorStatus."""
        ...

    async def wait_link_up(self) -> int:
        """Wait until the operator's link exists (and is up when ``spec.require_up``); its ifindex."""
        ...

    def link_index(self) -> int | None:
        """The link's ifindex now, None while it does not exist."""
        ...


class Operator(abc.ABC):
    """One operator instance; :meth:`run` lives as long as its OperatorSpec is unchanged."""

    @abc.abstractmethod
    async def run(self, host: OperatorHost) -> None:
        """Run until cancelled. Raising restarts the operator with back-off (its output stays
        published meanwhile, so a crash of the operator does not remove a valid lease)."""

    async def leave(self, host: OperatorHost) -> None:  # noqa: B027 - optional hook
        """The node leaves (``netctl reset``, ``machined --leave``): e.g. DHCPRELEASE, VIP resign.
        Not called on a plain stop (decisions.md "Restarts")."""
