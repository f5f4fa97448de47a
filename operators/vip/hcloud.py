"""Hetzner Cloud VIP handler (operators.md §4.6): alias IP on a private network, or floating IP.

Base URL: tunable HCLOUD_API_URL (``https://api.hetzner.cloud/v1``); header
``Authorization: Bearer <apiToken>``. Lists are read page by page (``?page=N``, until
``meta.pagination.next_page`` is null).

Alias-IP mode (``networkID`` > 0):
  acquire: ``GET /servers`` (all pages); the first server whose ``private_net`` entry for the
  network lists the VIP in ``alias_ips`` gets ``POST /servers/<it>/actions/change_alias_ips
  {"network": N, "alias_ips": []}``; then ``POST /servers/<us>/actions/change_alias_ips
  {"network": N, "alias_ips": [VIP]}`` (this replaces all alias IPs of the server on that network,
  as the reference does; the action is not polled).
  release: ``POST /servers/<us>/actions/change_alias_ips {"network": N, "alias_ips": []}``.
Floating-IP mode (``networkID`` = 0):
  acquire: ``GET /floating_ips`` (all pages); the one whose ``ip`` is the VIP gets
  ``POST /floating_ips/<id>/actions/assign {"server": <us>}``; none: "floating IP is not found".
  release: ``GET /floating_ips/<id>`` (only logged: the next holder's assign moves it).
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from netd import tunables
from netd.netip import Addr, format_addr
from netd.resources.operator import VIPHCloudSpec

from .handler import ApiClient, HandlerError

log = logging.getLogger(__name__)

PROVIDER = "hcloud"


class HCloudHandler:
    provider = PROVIDER

    def __init__(
        self, spec: VIPHCloudSpec, vip: Addr, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.spec = spec
        self.vip = format_addr(vip)
        self.floating_ip_id = 0
        base = str(tunables.get("HCLOUD_API_URL"))
        self.api = ApiClient(base, {"Authorization": f"Bearer {spec.api_token}"}, transport=transport)

    async def _all(self, path: str, key: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page: int | None = 1
        while page:
            got = await self.api.request("GET", f"{path}?page={page}") or {}
            items.extend(got.get(key, []))
            page = ((got.get("meta") or {}).get("pagination") or {}).get("next_page")
        return items

    async def _alias_ips(self, server: int, ips: list[str]) -> None:
        body = {"network": self.spec.network_id, "alias_ips": ips}
        await self.api.request("POST", f"servers/{server}/actions/change_alias_ips", body)

    async def acquire(self) -> None:
        if self.spec.network_id > 0:
            for server in await self._all("servers", "servers"):
                nets = server.get("private_net") or []
                if any(n.get("network") == self.spec.network_id and self.vip in (n.get("alias_ips") or [])
                       for n in nets):  # fmt: skip
                    await self._alias_ips(int(server["id"]), [])
                    break
            await self._alias_ips(self.spec.device_id, [self.vip])
            return
        for fip in await self._all("floating_ips", "floating_ips"):
            if fip.get("ip") == self.vip:
                self.floating_ip_id = int(fip["id"])
                body = {"server": self.spec.device_id}
                await self.api.request("POST", f"floating_ips/{self.floating_ip_id}/actions/assign", body)
                return
        raise HandlerError(f"hcloud: floating IP is not found: {self.vip}")

    async def release(self) -> None:
        if self.spec.network_id > 0:
            await self._alias_ips(self.spec.device_id, [])
            return
        if self.floating_ip_id:
            fid, self.floating_ip_id = self.floating_ip_id, 0
            got = await self.api.request("GET", f"floating_ips/{fid}") or {}
            server = (got.get("floating_ip") or {}).get("server")
            log.info("hcloud: floating IP %s now on server %s (left for the next holder)", self.vip, server)

    async def close(self) -> None:
        await self.api.close()
