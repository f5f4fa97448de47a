"""A read-only snapshot of the links and addresses of the current network namespace.

Used by ``netctl plan`` (which must touch nothing) and by the status
controllers' initial resync.
"""

from __future__ import annotations

from pyroute2 import AsyncIPRoute

from netd.kernel.rtnl_decode import address_status, link_status
from netd.resources.address import AddressStatus
from netd.resources.link import LinkStatus


async def read_links_and_addresses() -> tuple[dict[str, LinkStatus], list[AddressStatus]]:
    async with AsyncIPRoute() as ipr:
        links: dict[str, LinkStatus] = {}
        names: dict[int, str] = {}
        async for msg in await ipr.link("dump"):
            name, status = link_status(msg)
            links[name] = status
            names[status.index] = name
        addresses = [
            address_status(msg, names.get(msg["index"], "")) async for msg in await ipr.addr("dump")
        ]
    return links, addresses
