"""A read-only snapshot of the links and addresses of the current network namespace.

Used by ``netctl plan`` (which must touch nothing): two dumps through the lean codec.
"""

from __future__ import annotations

from netd.kernel.netlink import AF_BRIDGE, RTM_GETADDR, RTM_GETLINK
from netd.kernel.rtnl_batch import RtnlBatch
from netd.kernel.rtnl_codec import AddressRecord, LinkRecord, address_status
from netd.kernel.rtnl_decode import link_status
from netd.resources.address import AddressStatus
from netd.resources.link import LinkStatus


async def read_links_and_addresses() -> tuple[dict[str, LinkStatus], list[AddressStatus]]:
    with RtnlBatch() as batch:
        link_recs: list[LinkRecord] = await batch.dump_async(RTM_GETLINK)
        addr_recs: list[AddressRecord] = await batch.dump_async(RTM_GETADDR)
    links: dict[str, LinkStatus] = {}
    names: dict[int, str] = {}
    for rec in link_recs:
        if rec.family == AF_BRIDGE:
            continue
        name, status = link_status(rec)
        links[name] = status
        names[status.index] = name
    addresses = [address_status(a, names.get(a.index, "")) for a in addr_recs if a.ip is not None]
    return links, addresses
