"""Equinix Metal VIP handler (operators.md §4.6): move the elastic IP's assignment to this device.

Base URL: tunable EQUINIX_API_URL (``https://api.equinix.com/metal/v1/``); headers
``X-Auth-Token: <apiToken>``, ``X-Consumer-Token: talos``.

acquire: ``GET /projects/<project>/ips``; for the reservation whose ``address`` is the VIP,
``DELETE /ips/<assignment id>`` for each of its ``assignments`` (id = last path segment of the
``href``); then ``POST /devices/<device>/ips {"address": VIP}`` and remember the new assignment id.
release: ``DELETE /ips/<that id>`` if one is remembered.
"""

from __future__ import annotations

import httpx

from netd import tunables
from netd.netip import Addr, format_addr
from netd.resources.operator import VIPEquinixMetalSpec

from .handler import ApiClient, HandlerError

PROVIDER = "equinixMetal"


class EquinixHandler:
    provider = PROVIDER

    def __init__(
        self, spec: VIPEquinixMetalSpec, vip: Addr, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.spec = spec
        self.vip = format_addr(vip)
        self.assignment_id = ""
        base = str(tunables.get("EQUINIX_API_URL"))
        headers = {"X-Auth-Token": spec.api_token, "X-Consumer-Token": "talos"}
        self.api = ApiClient(base, headers, transport=transport)

    async def acquire(self) -> None:
        ips = await self.api.request("GET", f"projects/{self.spec.project_id}/ips")
        for reservation in (ips or {}).get("ip_addresses", []):
            if reservation.get("address") != self.vip:
                continue
            for assignment in reservation.get("assignments", []):
                old = str(assignment.get("href", "")).rstrip("/").rsplit("/", 1)[-1]
                if old:
                    await self.api.request("DELETE", f"ips/{old}")
        created = await self.api.request("POST", f"devices/{self.spec.device_id}/ips", {"address": self.vip})
        new_id = (created or {}).get("id", "")
        if not new_id:
            raise HandlerError(f"equinix: assigning {self.vip} to {self.spec.device_id}: no assignment id")
        self.assignment_id = str(new_id)

    async def release(self) -> None:
        if not self.assignment_id:
            return
        assignment, self.assignment_id = self.assignment_id, ""
        await self.api.request("DELETE", f"ips/{assignment}")

    async def close(self) -> None:
        await self.api.close()
