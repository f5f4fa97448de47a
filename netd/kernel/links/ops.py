"""Thin async rtnetlink operations on links (pyroute2 AsyncIPRoute).

One :class:`LinkOps` per task (pyroute2 sockets are not shared between
tasks). Errors are pyroute2's NetlinkError (with ``.code`` = errno); the
controller turns them into per-spec retries.
"""

from __future__ import annotations

from typing import Any

from pyroute2 import AsyncIPRoute

from netd.kernel.links.base import KernelLink, kernel_link


class LinkOps:
    def __init__(self, ipr: AsyncIPRoute) -> None:
        self.ipr = ipr

    async def dump(self) -> dict[str, KernelLink]:
        links: dict[str, KernelLink] = {}
        async for msg in await self.ipr.link("dump"):
            link = kernel_link(msg)
            links[link.name] = link
        return links

    async def add(self, name: str, kind: str, **kwargs: Any) -> None:
        await self.ipr.link("add", ifname=name, kind=kind, **kwargs)

    async def delete(self, index: int) -> None:
        await self.ipr.link("del", index=index)

    async def set_up(self, index: int, up: bool) -> None:
        await self.ipr.link("set", index=index, state="up" if up else "down")

    async def set_mtu(self, index: int, mtu: int) -> None:
        await self.ipr.link("set", index=index, mtu=mtu)

    async def set_master(self, index: int, master: int) -> None:
        """Enslave to ``master`` (an ifindex), or detach with 0."""
        await self.ipr.link("set", index=index, master=master)

    async def set_kind_data(self, index: int, kind: str, **kwargs: Any) -> None:
        """Change IFLA_INFO_DATA attributes (pyroute2 names, e.g. ``br_stp_state``)."""
        if kwargs:
            await self.ipr.link("set", index=index, kind=kind, **kwargs)
