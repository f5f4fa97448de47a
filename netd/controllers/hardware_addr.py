"""HardwareAddrController: HardwareAddr ``first`` (netd.md §2.12)."""

from __future__ import annotations

from collections.abc import Iterable

from cosi import Context, Controller, Input, Output
from netd.resources.hardware import HARDWARE_ADDR_TYPE, HardwareAddr
from netd.resources.ids import HARDWARE_ADDR_FIRST_ID
from netd.resources.link import LINK_STATUS_TYPE, LinkStatus
from netd.resources.namespaces import NETWORK


def first_physical(links: Iterable[tuple[str, LinkStatus]]) -> HardwareAddr | None:
    """HardwareAddr of the first physical link in name order (netd.md §2.12)."""
    for name, status in sorted(links, key=lambda x: x[0]):
        if status.physical():
            return HardwareAddr(name=name, hardware_addr=status.hardware_addr)
    return None


class HardwareAddrController(Controller):
    """HardwareAddr ``first``: the first physical link's MAC; destroyed when there is none."""

    name = "network.HardwareAddrController"

    def inputs(self) -> list[Input]:
        return [Input(NETWORK, LINK_STATUS_TYPE)]

    def outputs(self) -> list[Output]:
        return [Output(NETWORK, HARDWARE_ADDR_TYPE)]

    async def reconcile(self, ctx: Context) -> None:
        links = [(r.md.id, r.spec) for r in ctx.list(NETWORK, LINK_STATUS_TYPE)]
        first = first_physical((n, s) for n, s in links if isinstance(s, LinkStatus))
        ctx.reconcile_owned(NETWORK, HARDWARE_ADDR_TYPE, {HARDWARE_ADDR_FIRST_ID: first} if first else {})


