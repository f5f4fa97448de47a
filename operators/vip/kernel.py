"""The few kernel reads and one write the VIP operator makes itself (everything else goes through specs).

Why the operator deletes the VIP itself rather than only withdrawing its AddressSpec: "never two
holders" needs the address *gone from the link* before our election key is deleted (resign) or
may expire, and before a restarted ex-holder lets the election move on (stale-key delete). A
withdrawn spec is applied by other controllers at their own pace — and not at all while machined
shuts down — so the operator removes the address and checks it stays gone, then resigns.
"""

from __future__ import annotations

import asyncio
import contextlib

from netd.kernel.rtnl import KernelError, Rtnl, delete_address
from netd.kernel.rtnl_codec import AddressRecord
from netd.netip import Prefix

STABLE_CHECKS = 2  # consecutive reads without the address that count as "gone"
CHECK_INTERVAL = 0.05  # seconds between reads
REMOVE_TIMEOUT = 2.0  # give up (log) after this long


async def link_mac(index: int) -> str:
    async with Rtnl() as rtnl:
        for link in await rtnl.links():
            if link.index == index:
                return link.hardware_addr
    return ""


async def has_address(index: int, address: Prefix) -> bool:
    async with Rtnl() as rtnl:
        return _present(await rtnl.addresses(), index, address)


def _present(records: list[AddressRecord], index: int, address: Prefix) -> bool:
    return any(
        r.index == index and r.ip == address.ip and r.prefixlen == address.network.prefixlen for r in records
    )


async def remove_address(index: int, address: Prefix) -> bool:
    """Delete ``address`` from link ``index`` until it has stayed away for STABLE_CHECKS reads
    (a controller still applying an older spec could put it back once); True once gone."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + REMOVE_TIMEOUT
    absent = 0
    async with Rtnl() as rtnl:
        while loop.time() < deadline:
            if _present(await rtnl.addresses(), index, address):
                absent = 0
                with contextlib.suppress(KernelError):  # gone meanwhile: the next read tells
                    await rtnl.write_one(delete_address(index, address))
            else:
                absent += 1
                if absent >= STABLE_CHECKS:
                    return True
            await asyncio.sleep(CHECK_INTERVAL)
    return False


async def wait_address(index: int, address: Prefix, timeout: float) -> bool:
    """Wait until ``address`` is on link ``index`` (the spec controllers applied it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with Rtnl() as rtnl:
        while loop.time() < deadline:
            if _present(await rtnl.addresses(), index, address):
                return True
            await asyncio.sleep(CHECK_INTERVAL)
    return False
