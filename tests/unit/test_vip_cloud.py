"""VIP cloud handlers (operators.md §4.6, §7 T22) against a mock HTTP transport: request sequence,
auth headers, retries on 5xx, no retry on 4xx. The same over real HTTP: tests/netns/test_vip_cloud.py."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from netd.resources.operator import VIPEquinixMetalSpec, VIPHCloudSpec
from operators.vip.equinix import EquinixHandler
from operators.vip.handler import HandlerError
from operators.vip.hcloud import HCloudHandler

VIP = ipaddress.ip_address("203.0.113.10")
Route = Callable[[httpx.Request], tuple[int, Any]]


class Recorder:
    """A mock API: records (method, path, body, headers) and answers from ``route``."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self.calls: list[tuple[str, str, Any]] = []
        self.headers: list[httpx.Headers] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        path = request.url.path + (f"?{request.url.query.decode()}" if request.url.query else "")
        self.calls.append((request.method, path, body))
        self.headers.append(request.headers)
        status, payload = self.route(request)
        return httpx.Response(status, json=payload)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def equinix(rec: Recorder) -> EquinixHandler:
    spec = VIPEquinixMetalSpec(projectID="P", deviceID="D", apiToken="tok")
    h = EquinixHandler(spec, VIP, transport=rec.transport)
    h.api.backoff = 0.01
    return h


def hcloud(rec: Recorder, network: int) -> HCloudHandler:
    spec = VIPHCloudSpec(deviceID=42, networkID=network, apiToken="tok")
    h = HCloudHandler(spec, VIP, transport=rec.transport)
    h.api.backoff = 0.01
    return h


async def test_equinix_moves_the_assignment() -> None:
    def route(r: httpx.Request) -> tuple[int, Any]:
        if r.method == "GET":
            ips = [
                {"address": "198.51.100.1", "assignments": [{"href": "/metal/v1/ips/other"}]},
                {"address": str(VIP), "assignments": [{"href": "/metal/v1/ips/old1"}, {"href": "/ips/old2"}]},
            ]
            return 200, {"ip_addresses": ips}
        if r.method == "POST":
            return 201, {"id": "new1"}
        return 204, None

    rec = Recorder(route)
    h = equinix(rec)
    await h.acquire()
    assert rec.calls == [
        ("GET", "/metal/v1/projects/P/ips", None),
        ("DELETE", "/metal/v1/ips/old1", None),
        ("DELETE", "/metal/v1/ips/old2", None),
        ("POST", "/metal/v1/devices/D/ips", {"address": str(VIP)}),
    ]
    assert all(hd["x-auth-token"] == "tok" and hd["x-consumer-token"] == "talos" for hd in rec.headers)
    await h.release()
    assert rec.calls[-1] == ("DELETE", "/metal/v1/ips/new1", None)
    await h.release()  # nothing remembered any more: no call
    assert len(rec.calls) == 5
    await h.close()


async def test_equinix_retries_5xx_then_fails() -> None:
    rec = Recorder(lambda r: (503, {"error": "busy"}))
    h = equinix(rec)
    with pytest.raises(HandlerError, match="HTTP 503"):
        await h.acquire()
    assert [c[0] for c in rec.calls] == ["GET", "GET", "GET"]  # HTTP_RETRIES attempts
    await h.close()


async def test_equinix_5xx_once_is_retried_4xx_is_not() -> None:
    answers = iter([(500, {}), (200, {"ip_addresses": []}), (422, {"errors": ["no"]})])
    rec = Recorder(lambda r: next(answers))
    h = equinix(rec)
    with pytest.raises(HandlerError, match="HTTP 422"):
        await h.acquire()
    assert [c[:2] for c in rec.calls] == [
        ("GET", "/metal/v1/projects/P/ips"),
        ("GET", "/metal/v1/projects/P/ips"),
        ("POST", "/metal/v1/devices/D/ips"),
    ]
    await h.close()


async def test_hcloud_alias_mode_takes_the_alias_from_its_old_server() -> None:
    def route(r: httpx.Request) -> tuple[int, Any]:
        if r.method == "GET":
            page = int(r.url.params.get("page", "1"))
            servers = {
                1: [{"id": 7, "private_net": [{"network": 5, "alias_ips": []}]}],
                2: [{"id": 9, "private_net": [{"network": 5, "alias_ips": [str(VIP)]}]}],
            }[page]
            return 200, {"servers": servers, "meta": {"pagination": {"next_page": 2 if page == 1 else None}}}
        return 201, {"action": {"id": 1}}

    rec = Recorder(route)
    h = hcloud(rec, network=5)
    await h.acquire()
    assert rec.calls == [
        ("GET", "/v1/servers?page=1", None),
        ("GET", "/v1/servers?page=2", None),
        ("POST", "/v1/servers/9/actions/change_alias_ips", {"network": 5, "alias_ips": []}),
        ("POST", "/v1/servers/42/actions/change_alias_ips", {"network": 5, "alias_ips": [str(VIP)]}),
    ]
    assert all(hd["authorization"] == "Bearer tok" for hd in rec.headers)
    await h.release()
    assert rec.calls[-1] == (
        "POST",
        "/v1/servers/42/actions/change_alias_ips",
        {"network": 5, "alias_ips": []},
    )
    await h.close()


async def test_hcloud_floating_ip_mode_assigns_and_never_unassigns() -> None:
    def route(r: httpx.Request) -> tuple[int, Any]:
        if r.method == "GET" and r.url.path == "/v1/floating_ips":
            fips = [{"id": 3, "ip": "198.51.100.9"}, {"id": 4, "ip": str(VIP)}]
            return 200, {"floating_ips": fips, "meta": {"pagination": {"next_page": None}}}
        if r.method == "GET":
            return 200, {"floating_ip": {"id": 4, "server": 43}}
        return 201, {"action": {"id": 1}}

    rec = Recorder(route)
    h = hcloud(rec, network=0)
    await h.acquire()
    assert rec.calls[-1] == ("POST", "/v1/floating_ips/4/actions/assign", {"server": 42})
    await h.release()
    assert rec.calls[-1] == ("GET", "/v1/floating_ips/4", None)
    assert not any("unassign" in c[1] for c in rec.calls)
    await h.close()


async def test_hcloud_floating_ip_not_found() -> None:
    rec = Recorder(lambda r: (200, {"floating_ips": [], "meta": {"pagination": {"next_page": None}}}))
    h = hcloud(rec, network=0)
    with pytest.raises(HandlerError, match="floating IP is not found"):
        await h.acquire()
    await h.close()
