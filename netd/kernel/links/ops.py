"""Thin async rtnetlink operations on links: the one place the link spec controller's
requests meet pyroute2 (AsyncIPRoute builds the per-kind IFLA_INFO_DATA of bonds,
VLANs and bridges from the link-kind adapters' keyword arguments).

One :class:`LinkOps` per task (pyroute2 sockets are not shared between tasks).
pyroute2's NetlinkError becomes :class:`netd.kernel.rtnl.KernelError` (``.code`` =
errno), as for every other kernel write, and the controller turns it into a
per-spec retry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netd.kernel.links.base import KernelLink, kernel_link
from netd.kernel.rtnl import kernel_error
from netd.resources.enums import LinkFlags

T = TypeVar("T")


@contextlib.contextmanager
def _errors(what: str) -> Iterator[None]:
    try:
        yield
    except NetlinkError as e:
        raise kernel_error(e.code, what, str(e)) from e


class LinkOps:
    """Use as ``async with LinkOps() as ops`` (opens the socket in the calling task)."""

    def __init__(self) -> None:
        self.ipr: AsyncIPRoute | None = None

    async def __aenter__(self) -> LinkOps:
        self.ipr = AsyncIPRoute()
        await self.ipr.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.ipr is not None:
            await self.ipr.__aexit__(None, None, None)
            self.ipr = None

    async def _call(self, what: str, call: Awaitable[T]) -> T:
        with _errors(what):
            return await call

    def _ipr(self) -> AsyncIPRoute:
        assert self.ipr is not None, "LinkOps used outside its context"
        return self.ipr

    async def dump(self) -> dict[str, KernelLink]:
        links: dict[str, KernelLink] = {}
        with _errors("dump links"):
            async for msg in await self._ipr().link("dump"):
                link = kernel_link(msg)
                links[link.name] = link
        return links

    async def add(self, name: str, kind: str, **kwargs: Any) -> None:
        await self._call(f"add link {name}", self._ipr().link("add", ifname=name, kind=kind, **kwargs))

    async def delete(self, index: int) -> None:
        await self._call(f"delete link {index}", self._ipr().link("del", index=index))

    async def set_up(self, index: int, up: bool) -> None:
        state = "up" if up else "down"
        await self._call(f"set link {index} {state}", self._ipr().link("set", index=index, state=state))

    async def set_mtu(self, index: int, mtu: int) -> None:
        await self._call(f"set link {index} mtu", self._ipr().link("set", index=index, mtu=mtu))

    async def set_multicast(self, index: int, on: bool) -> None:
        """IFF_MULTICAST on or off (``change`` is the mask of the flags to set)."""
        flag = int(LinkFlags.MULTICAST)
        call = self._ipr().link("set", index=index, flags=flag if on else 0, change=flag)
        await self._call(f"set link {index} multicast", call)

    async def set_master(self, index: int, master: int) -> None:
        """Enslave to ``master`` (an ifindex), or detach with 0."""
        await self._call(f"set link {index} master", self._ipr().link("set", index=index, master=master))

    async def set_kind_data(self, index: int, kind: str, **kwargs: Any) -> None:
        """Change IFLA_INFO_DATA attributes (pyroute2 names, e.g. ``br_stp_state``)."""
        if kwargs:
            call = self._ipr().link("set", index=index, kind=kind, **kwargs)
            await self._call(f"set link {index} {kind}", call)
