"""What a VIP winner asks its platform before the address is usable (operators.md §4.6).

A plain layer-2 VIP needs nothing (:class:`NoopHandler`); on Equinix Metal and Hetzner Cloud the
address must be routed to this machine through the provider's API (``equinix.py``, ``hcloud.py``).
``acquire()`` runs after winning and before the address is published (a failure: resign and retry
after VIP_CAMPAIGN_RETRY); ``release()`` runs first thing on stepping down (a failure is only logged).

The HTTP helper retries a request that got a 5xx answer or no answer (HTTP_RETRIES attempts,
HTTP_RETRY_BACKOFF doubling): the APIs are idempotent for what we call (assign, delete, change
alias IPs), and a 5xx is the provider's transient trouble; a 4xx is an answer and fails at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import httpx

log = logging.getLogger(__name__)

HTTP_TIMEOUT = 10.0  # seconds per request
HTTP_RETRIES = 3  # attempts of one request on 5xx / transport errors
HTTP_RETRY_BACKOFF = 0.5  # seconds before the 2nd attempt, doubled after


class HandlerError(Exception):
    """A provider API call failed (the message names the call)."""


class Handler(Protocol):
    provider: str  # OperatorStatus.provider: "", "equinixMetal", "hcloud"

    async def acquire(self) -> None: ...

    async def release(self) -> None: ...

    async def close(self) -> None: ...


class NoopHandler:
    provider = ""

    async def acquire(self) -> None:
        return None

    async def release(self) -> None:
        return None

    async def close(self) -> None:
        return None


class ApiClient:
    """One provider API: base URL, auth headers, JSON, retries on 5xx."""

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        retries: int = HTTP_RETRIES,
        backoff: float = HTTP_RETRY_BACKOFF,
    ) -> None:
        self.base = base_url.rstrip("/")
        self.retries = max(1, retries)
        self.backoff = backoff
        self.http = httpx.AsyncClient(headers=headers, timeout=HTTP_TIMEOUT, transport=transport)

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        """The decoded JSON answer (None for an empty body); HandlerError after the last attempt."""
        url = f"{self.base}/{path.lstrip('/')}"
        what = f"{method} {url}"
        delay = self.backoff
        for attempt in range(1, self.retries + 1):
            try:
                resp = await self.http.request(method, url, json=body)
            except httpx.HTTPError as e:
                failure = f"{what}: {type(e).__name__}: {e}"
            else:
                if resp.status_code < 400:
                    return resp.json() if resp.content else None
                failure = f"{what}: HTTP {resp.status_code}: {resp.text[:200]}"
                if resp.status_code < 500:
                    raise HandlerError(failure)
            if attempt < self.retries:
                log.info("%s (attempt %d/%d, retrying in %gs)", failure, attempt, self.retries, delay)
                await asyncio.sleep(delay)
                delay *= 2
        raise HandlerError(failure)

    async def close(self) -> None:
        await self.http.aclose()
