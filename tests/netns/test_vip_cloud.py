"""VIP cloud handlers over real HTTP (operators.md §4.6): a mock Equinix Metal / Hetzner Cloud API in
one namespace, the handler in another, base URLs through NETD_TUNABLES. The mock records every
request (method, path, body, auth headers) and answers the first request of each kind with a 503,
so every call is seen twice: the handler retried it.

This file also runs as the two processes (``python test_vip_cloud.py server|handler ...``).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

API_IP = "10.0.0.1"
PORT = 8080
VIP = "203.0.113.10"


def _server(log_path: str) -> None:  # pragma: no cover - runs inside a namespace
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: set[tuple[str, str]] = set()
    log: list[dict[str, Any]] = []

    def answer(method: str, path: str) -> tuple[int, Any]:
        if method == "GET" and path.endswith("/projects/P/ips"):
            return 200, {"ip_addresses": [{"address": VIP, "assignments": [{"href": "/metal/v1/ips/old1"}]}]}
        if method == "POST" and path.endswith("/devices/D/ips"):
            return 201, {"id": "new1"}
        if method == "GET" and path.startswith("/v1/servers"):
            servers = [{"id": 9, "private_net": [{"network": 5, "alias_ips": [VIP]}]}]
            return 200, {"servers": servers, "meta": {"pagination": {"next_page": None}}}
        if method == "POST" and "/change_alias_ips" in path:
            return 201, {"action": {"id": 1}}
        if method == "DELETE":
            return 204, None
        return 404, {"error": "unexpected"}

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(n)) if n else None
            headers = {k.lower(): v for k, v in self.headers.items()}
            first = (self.command, self.path) not in seen
            seen.add((self.command, self.path))
            status, payload = (503, {"error": "try again"}) if first else answer(self.command, self.path)
            log.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "body": body,
                    "headers": headers,
                    "status": status,
                }
            )
            with open(log_path, "w") as f:
                json.dump(log, f)
            data = json.dumps(payload).encode() if payload is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, *args: Any) -> None:
            pass

    ThreadingHTTPServer((API_IP, PORT), Handler).serve_forever()


def _handler(provider: str) -> None:  # pragma: no cover - runs inside a namespace
    import asyncio
    import ipaddress

    from netd.resources.operator import VIPEquinixMetalSpec, VIPHCloudSpec
    from operators.vip.equinix import EquinixHandler
    from operators.vip.handler import Handler
    from operators.vip.hcloud import HCloudHandler

    async def main() -> None:
        vip = ipaddress.ip_address(VIP)
        h: Handler
        if provider == "equinix":
            h = EquinixHandler(VIPEquinixMetalSpec(projectID="P", deviceID="D", apiToken="etok"), vip)
        else:
            h = HCloudHandler(VIPHCloudSpec(deviceID=42, networkID=5, apiToken="htok"), vip)
        await h.acquire()
        await h.release()
        await h.close()

    asyncio.run(main())


if __name__ == "__main__" and sys.argv[1:2] in (["server"], ["handler"]):
    (_server if sys.argv[1] == "server" else _handler)(sys.argv[2])
    sys.exit(0)


import pytest  # noqa: E402
from harness import Lab  # noqa: E402
from harness.daemons import listening  # noqa: E402
from harness.sysutil import wait_until  # noqa: E402


@pytest.mark.parametrize("provider", ["equinix", "hcloud"])
def test_cloud_handler_request_sequence_auth_and_retries(lab: Lab, provider: str) -> None:
    api, op = lab.node("api"), lab.node("op")
    lab.link(api, op)
    api.ip("addr", "add", f"{API_IP}/24", "dev", "eth0")
    op.ip("addr", "add", "10.0.0.2/24", "dev", "eth0")
    log_path = api.dir / "requests.json"
    api.popen([sys.executable, __file__, "server", str(log_path)])
    wait_until(lambda: listening(api, API_IP, PORT), timeout=15, what="mock API")
    tunables = lab.dir / "tunables.yaml"
    tunables.write_text(
        f"EQUINIX_API_URL: http://{API_IP}:{PORT}/metal/v1/\nHCLOUD_API_URL: http://{API_IP}:{PORT}/v1\n"
    )
    env = {**os.environ, "NETD_TUNABLES": str(tunables)}
    op.run([sys.executable, __file__, "handler", provider], env=env, timeout=60)
    log = json.loads(log_path.read_text())
    calls = [(r["method"], r["path"], r["body"]) for r in log if r["status"] != 503]
    retried = [(r["method"], r["path"]) for r in log if r["status"] == 503]
    if provider == "equinix":
        assert calls == [
            ("GET", "/metal/v1/projects/P/ips", None),
            ("DELETE", "/metal/v1/ips/old1", None),
            ("POST", "/metal/v1/devices/D/ips", {"address": VIP}),
            ("DELETE", "/metal/v1/ips/new1", None),
        ]
        assert all(r["headers"]["x-auth-token"] == "etok" for r in log)
        assert all(r["headers"]["x-consumer-token"] == "talos" for r in log)
    else:
        assert calls == [
            ("GET", "/v1/servers?page=1", None),
            ("POST", "/v1/servers/9/actions/change_alias_ips", {"network": 5, "alias_ips": []}),
            ("POST", "/v1/servers/42/actions/change_alias_ips", {"network": 5, "alias_ips": [VIP]}),
            # release (same method and path as the acquire: the mock 503s only the first)
            ("POST", "/v1/servers/42/actions/change_alias_ips", {"network": 5, "alias_ips": []}),
        ]
        assert all(r["headers"]["authorization"] == "Bearer htok" for r in log)
    # every distinct request was first answered 503 and then retried
    assert retried == list(dict.fromkeys((m, p) for m, p, _ in calls)), log
