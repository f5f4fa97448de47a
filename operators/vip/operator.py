"""The VIP operator (operators.md §4): campaign in the etcd election, hold the address while leader.

One campaign (:meth:`VIPOperator._campaign`), repeated for as long as the operator runs:

1. wait for the link; remove a VIP this node left on it (a crash, or the previous term: see
   ``kernel.py``), so the node never holds it unless it wins now;
2. grant a lease (TTL VIP_LEASE_TTL) with keep-alive (``election.Session``), delete our stale
   leader key of an earlier run, put our candidate key and wait for the older ones to go;
3. won: the provider handler's ``acquire()`` (Equinix Metal / Hetzner Cloud; none for a layer-2
   VIP), publish the AddressSpec (operator layer, /32 or /128, scope global, permanent,
   ``announceWithARP`` = gratuitousARP for IPv4), and once the address is on the link announce it
   (VIP_GARP_COUNT gratuitous ARPs / unsolicited NAs, VIP_GARP_INTERVAL apart);
4. hold until our key goes or the session is lost (no keep-alive answer for TTL minus
   VIP_STEPDOWN_MARGIN, counted from the *send* time of the last answered keep-alive);
5. step down: ``release()``, withdraw the spec, take the address off the link, *then* resign
   (delete our key) and revoke the lease. A cancelled operator (SIGTERM, spec gone) steps down the
   same way at once, shielded from the cancellation, each etcd step bounded by VIP_RESIGN_TIMEOUT.

An error anywhere (etcd unreachable, acquire failed) is logged and the next campaign starts after
VIP_CAMPAIGN_RETRY; a lost session or a lost leadership starts the next one at once (operators.md
§4.7 V3). The node's identity in the election is its hostname (``gethostname()`` in machined's UTS
namespace): every node needs its own (operators.md §4.3).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from etcd_client import EtcdClient
from netd import tunables
from netd.netip import Addr, Prefix, format_addr
from netd.resources.address import AddressSpec
from netd.resources.enums import ConfigLayer
from netd.resources.operator import OperatorSpec
from netd.resources.operator_status import OperatorStatusSpec
from operators.base import Operator, OperatorHost, OperatorOutput

from . import kernel
from .announce import announce
from .election import Election, Session, SessionLost, election_prefix
from .handler import Handler, NoopHandler

log = logging.getLogger(__name__)

ANNOUNCE_WAIT = 10.0  # seconds to wait for the published address to reach the link


def make_handler(spec: OperatorSpec, vip: Addr) -> Handler:
    """The provider handler the spec asks for (operators.md §4.6): an API token selects it."""
    if spec.vip.equinix_metal.api_token:
        from .equinix import EquinixHandler

        return EquinixHandler(spec.vip.equinix_metal, vip)
    if spec.vip.hcloud.api_token:
        from .hcloud import HCloudHandler

        return HCloudHandler(spec.vip.hcloud, vip)
    return NoopHandler()


class VIPOperator(Operator):
    def __init__(
        self,
        spec: OperatorSpec,
        etcd_endpoints: list[str],
        *,
        etcd_ca: Path | None = None,
        etcd_cert: Path | None = None,
        etcd_key: Path | None = None,
        hostname: Callable[[], str] = socket.gethostname,
    ) -> None:
        if spec.vip.ip is None:
            raise ValueError(f"operator {spec.id()}: no VIP address")
        self.spec = spec
        self.endpoints = list(etcd_endpoints) or ["http://127.0.0.1:2379"]
        self.tls = {"ca": etcd_ca, "cert": etcd_cert, "key": etcd_key}
        self.hostname = hostname
        self.vip: Addr = spec.vip.ip
        bits = 32 if isinstance(self.vip, ipaddress.IPv4Address) else 128
        self.prefix: Prefix = ipaddress.ip_interface((self.vip, bits))
        self.address = AddressSpec.configured(
            self.prefix, spec.link_name, ConfigLayer.OPERATOR,
            announce_with_arp=spec.vip.gratuitous_arp and bits == 32,
        )  # fmt: skip
        self.handler: Handler = make_handler(spec, self.vip)
        self.ttl = tunables.seconds("VIP_LEASE_TTL")
        self.margin = tunables.seconds("VIP_STEPDOWN_MARGIN")
        self.retry = tunables.seconds("VIP_CAMPAIGN_RETRY")
        self.resign_timeout = tunables.seconds("VIP_RESIGN_TIMEOUT")
        self.dial_timeout = tunables.seconds("VIP_DIAL_TIMEOUT")
        self._status = OperatorStatusSpec(
            operator="vip", link_name=spec.link_name, state="starting", address=self.prefix,
            provider=self.handler.provider,
        )  # fmt: skip

    # ---- status ----------------------------------------------------------------------------

    def _set_status(self, host: OperatorHost, **changes: Any) -> None:
        self._status = self._status.model_copy(update=changes)
        host.set_status(self._status)

    # ---- the loop --------------------------------------------------------------------------

    async def run(self, host: OperatorHost) -> None:
        host.publish(OperatorOutput())  # nothing until we win
        self._set_status(host, state="starting", holder=False)
        try:
            while True:
                try:
                    await self._campaign(host)
                except SessionLost:
                    continue  # lost session / leadership: the next campaign starts at once
                except Exception as e:  # any failure: retry after VIP_CAMPAIGN_RETRY
                    log.warning("VIP %s on %s: %s", format_addr(self.vip), self.spec.link_name, e)
                    self._set_status(host, state="retrying", holder=False, error=str(e))
                    await asyncio.sleep(self.retry)
        finally:
            await _shielded(self.handler.close())

    async def _campaign(self, host: OperatorHost) -> None:
        # Not ours unless we win: a leftover of a crash goes before anything else, even while the
        # link is down (it must not come back up holding the VIP), and again once it is up.
        early = host.link_index()
        if early is not None:
            await kernel.remove_address(early, self.prefix)
        index = await host.wait_link_up()
        if index != early:
            await kernel.remove_address(index, self.prefix)
        name = self.hostname()
        if not name:
            raise RuntimeError("no hostname: the election needs the node's (unique) hostname")
        self._set_status(host, state="connecting")
        client = EtcdClient(self.endpoints, timeout=self.dial_timeout, **self.tls)
        session: Session | None = None
        election: Election | None = None
        holding = False
        announcer: asyncio.Task[None] | None = None
        try:
            session = await Session(client, self.ttl, self.margin, retry=self.retry).start()
            election = Election(client, election_prefix(self.vip), name.encode())
            term = f"{session.lease_id:x}"
            self._set_status(host, state="campaigning", term=term, error="")
            await session.until_lost(election.delete_stale())
            await session.until_lost(election.campaign(session.lease_id))
            try:
                await session.until_lost(self.handler.acquire())
            except SessionLost:
                raise
            except Exception as e:
                # operators.md §4.7 V2: acquire failed → resign (below), no release, retry.
                raise RuntimeError(f"{self.handler.provider} acquire failed: {e}") from e
            holding = True
            host.publish(OperatorOutput(addresses={self.address.id(): self.address}))
            since = dt.datetime.now(dt.UTC)
            self._set_status(host, state="holder", holder=True, since=since, error="")
            log.info("VIP %s: this node (%s) holds it, lease %s", format_addr(self.vip), name, term)
            announcer = asyncio.create_task(self._announce(index))
            reason = await session.until_lost(election.hold())
            log.warning("VIP %s: stepping down: %s", format_addr(self.vip), reason)
        except SessionLost as e:
            if holding:
                log.warning("VIP %s: stepping down: etcd session lost: %s", format_addr(self.vip), e)
            raise
        finally:
            if announcer is not None:
                announcer.cancel()
            await _shielded(self._step_down(host, index, client, session, election, holding))

    async def _announce(self, index: int) -> None:
        if not await kernel.wait_address(index, self.prefix, ANNOUNCE_WAIT):
            log.warning(
                "VIP %s: not on %s after %gs", format_addr(self.vip), self.spec.link_name, ANNOUNCE_WAIT
            )
            return
        mac = await kernel.link_mac(index)
        count = int(tunables.get("VIP_GARP_COUNT") or 0)
        await announce(self.spec.link_name, mac, self.vip, count, tunables.seconds("VIP_GARP_INTERVAL"))

    async def _step_down(
        self,
        host: OperatorHost,
        index: int,
        client: EtcdClient,
        session: Session | None,
        election: Election | None,
        holding: bool,
    ) -> None:
        """operators.md §4.3 step 6, with the address off the link before the key goes."""
        t = self.resign_timeout
        if holding:
            await _bounded(self.handler.release(), t, f"{self.handler.provider} release")
        host.publish(OperatorOutput())
        if holding:
            if not await kernel.remove_address(index, self.prefix):
                log.error("VIP %s: could not remove it from %s", format_addr(self.vip), self.spec.link_name)
            self._set_status(host, state="stepped down", holder=False, since=None)
        lost = session is None or session.lost.is_set()
        if election is not None and not lost:
            # A lost session's key is gone or about to be, and etcd is likely unreachable.
            await _bounded(election.resign(), t, "resign")
        if session is not None:
            await session.close(t)
        await client.close()

    async def leave(self, host: OperatorHost) -> None:
        """Leaving is a cancellation as far as the VIP goes: run() resigns when cancelled."""
        return None


async def _bounded(aw: Awaitable[Any], timeout: float, what: str) -> None:
    try:
        await asyncio.wait_for(aw, timeout)
    except Exception as e:  # the step-down goes on whatever fails
        log.warning("VIP step-down: %s failed: %s", what, e or type(e).__name__)


async def _shielded(aw: Awaitable[None]) -> None:
    """Run ``aw`` to its end even if we are cancelled meanwhile (the step-down must finish:
    the address off the link, then the resign); re-raise the cancellation afterwards."""
    task = asyncio.ensure_future(aw)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    with contextlib.suppress(asyncio.CancelledError):
        task.result()
