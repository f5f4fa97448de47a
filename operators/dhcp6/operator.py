"""The DHCPv6 operator (operators.md §0, §3): one IA_NA address and its options for one link.

The protocol is :class:`~operators.dhcp6.machine.Client6`; this adapter feeds it datagrams and
timer ticks and carries out its actions:

- ``Send``: encode and send on the link's socket (``socket.py``);
- ``Bound``: publish the lease (§3.6): the IAADDR as an operator-layer /128 AddressSpec with
  ``validUntil``/``preferredUntil`` from its lifetimes (§0: the kernel withdraws it at lease end
  even if machined is down), DNS servers (23) as ResolverSpec ``resolvers``, NTP servers (56
  sub-option 1, else SNTP 31) as TimeServerSpec ``timeservers``, the server's Client FQDN (39)
  as HostnameSpec ``hostname`` unless ``skipHostnameRequest``; and save it in the state dir;
- ``Expired``: withdraw the AddressSpec (the other lists stay, §1.4: only a successful exchange
  changes them).

A restarted operator publishes its saved lease at once (same specs: nothing flaps, decisions.md
"Restarts") and confirms it with a REBIND. A datagram that does not decode, or that the machine
rejects, is dropped and counted (``dropped``), never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import logging
import math
import time
from collections import Counter
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

from netd import tunables
from netd.kernel.files import replace_file
from netd.resources.address import AddressSpec
from netd.resources.enums import ConfigLayer
from netd.resources.hostname import HostnameSpec
from netd.resources.operator import OperatorSpec
from netd.resources.operator_status import OperatorStatusSpec
from netd.resources.resolver import ResolverSpec
from netd.resources.timeserver import TimeServerSpec
from operators.base import Operator, OperatorHost, OperatorOutput

from . import packet
from .duid import client_duid, iaid_of
from .machine import Bound, Client6, Expired, Lease, Send, State
from .socket import SERVER_PORT, ClientSocket, hardware_address, set_accept_ra, wait_link_local

log = logging.getLogger(__name__)

LEASE_FILE = "lease6.json"


class Clock:
    """Monotonic seconds for the machine; wall-clock times (UTC, whole seconds) for specs, the
    status and the lease file, from one anchor so a given instant always maps to the same time
    (a published ``validUntil`` only changes with the lease)."""

    def __init__(self) -> None:
        self.anchor_wall, self.anchor = time.time(), time.monotonic()

    def now(self) -> float:
        return time.monotonic()

    def epoch(self, t: float) -> float:
        return self.anchor_wall + (t - self.anchor)

    def wall(self, t: float) -> dt.datetime | None:
        """The UTC time of monotonic ``t`` (None for infinity)."""
        if t == math.inf:
            return None
        return dt.datetime.fromtimestamp(int(self.epoch(t)), dt.UTC)

    def from_wall(self, epoch: float) -> float:
        return self.anchor + (epoch - self.anchor_wall)


def lease_output(lease: Lease, link: str, clock: Clock, *, skip_hostname: bool) -> OperatorOutput:
    """The specs of a lease (operators.md §3.6, §0 lifetimes)."""
    out = OperatorOutput()
    address = AddressSpec.configured(ipaddress.ip_interface((lease.address, 128)), link, ConfigLayer.OPERATOR)
    address = address.model_copy(
        update={"valid_until": clock.wall(lease.valid_at), "preferred_until": clock.wall(lease.preferred_at)}
    )
    out.addresses[address.id()] = address
    if lease.dns_servers:
        out.resolvers["resolvers"] = ResolverSpec(
            dns_servers=list(lease.dns_servers), layer=ConfigLayer.OPERATOR
        )
    if lease.ntp_servers:
        out.timeservers["timeservers"] = TimeServerSpec(
            time_servers=list(lease.ntp_servers), layer=ConfigLayer.OPERATOR
        )
    if lease.fqdn and not skip_hostname:
        try:
            out.hostnames["hostname"] = HostnameSpec.from_fqdn(lease.fqdn.rstrip("."), ConfigLayer.OPERATOR)
        except ValueError as e:
            log.warning("dhcp6 %s: server's FQDN %r ignored: %s", link, lease.fqdn, e)
    return out


# ---- the lease file (state dir) ------------------------------------------------------------------


def save_lease(path: Path, lease: Lease, duid: bytes, iaid: int, clock: Clock) -> None:
    doc = {
        "duid": duid.hex(),
        "iaid": iaid,
        "address": str(lease.address),
        "preferred": lease.preferred,
        "valid": lease.valid,
        "t1": lease.t1,
        "t2": lease.t2,
        "obtained": clock.epoch(lease.obtained),
        "serverID": lease.server_id.hex(),
        "server": str(lease.server) if lease.server else "",
        "unicast": str(lease.unicast) if lease.unicast else "",
        "dnsServers": [str(a) for a in lease.dns_servers],
        "domains": list(lease.domains),
        "ntpServers": list(lease.ntp_servers),
        "fqdn": lease.fqdn,
    }
    try:
        replace_file(path, (json.dumps(doc, indent=1) + "\n").encode())
    except OSError as e:
        log.warning("dhcp6: cannot save the lease in %s: %s", path, e)


def load_lease(path: Path, duid: bytes, iaid: int, clock: Clock) -> Lease | None:
    """The saved lease if it belongs to this DUID and IAID (another identity: another binding)."""
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
        if doc["duid"] != duid.hex() or doc["iaid"] != iaid:
            return None

        def addr(text: str) -> IPv6Address | None:
            return IPv6Address(text) if text else None

        return Lease(
            address=IPv6Address(doc["address"]), preferred=float(doc["preferred"]),
            valid=float(doc["valid"]), t1=float(doc["t1"]), t2=float(doc["t2"]),
            obtained=clock.from_wall(float(doc["obtained"])), server_id=bytes.fromhex(doc["serverID"]),
            server=addr(doc["server"]), unicast=addr(doc["unicast"]),
            dns_servers=tuple(IPv6Address(a) for a in doc["dnsServers"]), domains=tuple(doc["domains"]),
            ntp_servers=tuple(doc["ntpServers"]), fqdn=str(doc["fqdn"]),
        )  # fmt: skip
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("dhcp6: ignoring the saved lease %s: %s", path, e)
        return None


# ---- the operator ------------------------------------------------------------------------------------


class DHCP6Operator(Operator):
    def __init__(self, spec: OperatorSpec, *, clock: Clock | None = None) -> None:
        self.spec = spec
        self.link = spec.link_name
        self.clock = clock or Clock()
        self.dropped: Counter[str] = Counter()  # datagrams dropped, by reason (machine's included)
        self.client: Client6 | None = None
        self._status = OperatorStatusSpec(operator="dhcp6", link_name=self.link, state=State.INIT.value)
        self._output = OperatorOutput()
        self._lease_path: Path | None = None

    async def run(self, host: OperatorHost) -> None:
        ifindex = await host.wait_link_up()
        set_accept_ra(self.link)
        mac = hardware_address(self.link)
        duid = client_duid(self.spec.dhcp6.duid, host.state_dir, mac)
        iaid = iaid_of(mac)
        self._lease_path = host.state_dir / LEASE_FILE
        saved = load_lease(self._lease_path, duid, iaid, self.clock)
        if saved is not None and self.clock.now() < saved.valid_at:
            self._publish_lease(host, saved)  # republished before anything else: no flap
        wait = tunables.seconds("DHCP6_LINK_LOCAL_WAIT")
        source = await wait_link_local(self.link, ifindex, wait)
        while source is None:  # §3.2: go on, but an attempt needs a link-local source (§3.3)
            log.warning("dhcp6 %s: no usable link-local address after %.0f s", self.link, wait)
            self._set_status(host, error="no link-local address")
            source = await wait_link_local(self.link, ifindex, wait)
        sock = ClientSocket(self.link, ifindex, source)
        try:
            client = self.client = Client6(duid, iaid, min_t1=tunables.seconds("DHCP_MIN_INTERVAL"))
            self._apply(host, sock, client.start(self.clock.now(), saved))
            while True:
                deadline = client.deadline
                timeout = None if deadline is None else max(0.0, deadline - self.clock.now())
                try:
                    data, src, port = await asyncio.wait_for(sock.recv(), timeout)
                except TimeoutError:
                    self._apply(host, sock, client.timer(self.clock.now()))
                    continue
                self._apply(host, sock, self._receive(client, data, src, port))
        finally:
            sock.close()

    def _receive(self, client: Client6, data: bytes, src: IPv6Address | None, port: int) -> list[Any]:
        """A datagram → the machine's actions; anything malformed or unwanted is counted."""
        if port != SERVER_PORT:
            self._drop("source port", src)
            return []
        try:
            msg = packet.decode(data)
        except packet.DecodeError as e:
            self._drop("malformed", src, str(e))
            return []
        before = sum(client.dropped.values())
        actions = client.receive(self.clock.now(), msg, src)
        if sum(client.dropped.values()) != before:
            self._drop(client.last_drop, src, msg.name)  # counted by the machine too
        return actions

    def _drop(self, reason: str, src: IPv6Address | None, detail: str = "") -> None:
        self.dropped[reason] += 1
        log.debug("dhcp6 %s: dropped a datagram from %s (%s) %s", self.link, src, reason, detail)

    def _apply(self, host: OperatorHost, sock: ClientSocket, actions: list[Any]) -> None:
        for action in actions:
            if isinstance(action, Send):
                msg = action.message
                log.debug("dhcp6 %s: %s xid %06x to %s", self.link, msg.name, msg.xid, action.destination)
                try:
                    sock.send(packet.encode(msg), action.destination)
                except OSError as e:  # link going away: the machine retransmits on its own
                    log.warning("dhcp6 %s: sending %s: %s", self.link, msg.name, e)
            elif isinstance(action, Bound):
                lease = action.lease
                log.info(
                    "dhcp6 %s: bound %s/128 from %s (valid %s s, T1 %s s)",
                    self.link, lease.address, lease.server, lease.valid, lease.t1,
                )  # fmt: skip
                self._publish_lease(host, lease)
                if self._lease_path is not None and self.client is not None:
                    save_lease(self._lease_path, lease, self.client.duid, self.client.iaid, self.clock)
            elif isinstance(action, Expired):
                log.warning("dhcp6 %s: lease of %s ended: address withdrawn", self.link, action.lease.address)
                self._output = OperatorOutput(
                    resolvers=self._output.resolvers, timeservers=self._output.timeservers,
                    hostnames=self._output.hostnames,
                )  # fmt: skip
                host.publish(self._output)
                if self._lease_path is not None:
                    with contextlib.suppress(OSError):
                        self._lease_path.unlink()
        self._update_status(host)

    def _publish_lease(self, host: OperatorHost, lease: Lease) -> None:
        self._output = lease_output(
            lease, self.link, self.clock, skip_hostname=self.spec.dhcp6.skip_hostname_request
        )
        host.publish(self._output)
        self._update_status(host, lease)

    def _update_status(self, host: OperatorHost, lease: Lease | None = None) -> None:
        client = self.client
        state = client.state.value if client is not None else State.INIT.value
        lease = lease or (client.lease if client is not None else None)
        if lease is None:
            self._set_status(host, state=state, server=None, address=None, lease_time=0,
                             obtained_at=None, expires_at=None, t1=None, t2=None)  # fmt: skip
            return
        w = self.clock.wall
        self._set_status(
            host, state=state, server=lease.server, address=ipaddress.ip_interface((lease.address, 128)),
            lease_time=packet.INFINITY if lease.valid == math.inf else int(lease.valid),
            obtained_at=w(lease.obtained), expires_at=w(lease.valid_at), t1=w(lease.t1_at), t2=w(lease.t2_at),
            error="",
        )  # fmt: skip

    def _set_status(self, host: OperatorHost, **changes: Any) -> None:
        status = self._status.model_copy(update=changes)
        if status != self._status or not changes:
            self._status = status
            host.set_status(status)
