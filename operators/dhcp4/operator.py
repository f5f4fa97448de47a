"""The DHCPv4 operator: the RFC 2131 machine (``machine.py``) on the link's sockets
(``socket.py``), its leases published as specs (``lease.py``) and persisted in the state dir.

Loop: wait for a reply or the machine's next deadline, feed it, perform the actions (send,
bind = persist + publish + status, unbind = withdraw + forget). Nothing a server sends can raise
out of here: undecodable packets and replies that do not answer us are dropped and counted
(:attr:`DHCP4Operator.dropped`).

Hostname (operators.md §2.4, send it or request it, never both): an exchange *requests* the
hostname (12 in the PRL, the ACK's 12/15 become the HostnameSpec) unless
``skipHostnameRequest``, or the node's applied hostname is set and is not the one DHCP gave us;
then it *sends* the applied name as option 12 (and keeps the HostnameSpec it had). The first
exchange of an instance always requests. Reacting to a hostname change with a new DORA at once
is not done: the next exchange (renewal) uses the new mode.

Restarts (decisions.md "Restarts"): the lease file brings INIT-REBOOT, whose specs are published
before the REQUEST goes out (the same specs from the same ACK), so the kernel objects are
adopted as they are. No DHCPRELEASE on a stop; only :meth:`DHCP4Operator.leave` sends one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import socket as pysocket
import time
from typing import Any

from netd import tunables
from netd.resources.hostname import HostnameSpec
from netd.resources.operator import OperatorSpec
from netd.resources.operator_status import OperatorStatusSpec
from operators.base import Operator, OperatorHost, OperatorOutput

from . import options as o
from .lease import Lease, hostname_spec, lease_output
from .machine import Bind, Machine, Send, Unbind
from .packet import DecodeError, Message, MessageType, decode, encode
from .socket import ClientSockets

log = logging.getLogger("operators.dhcp4")


def _time(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(epoch), dt.UTC)


def _mac(ifname: str) -> bytes:
    with open(f"/sys/class/net/{ifname}/address", encoding="ascii") as f:
        return bytes.fromhex(f.read().strip().replace(":", ""))


class DHCP4Operator(Operator):
    def __init__(self, spec: OperatorSpec, clock: Any = time.time) -> None:
        self.spec = spec
        self.link = spec.link_name
        self.metric = spec.dhcp4.route_metric
        self.skip_hostname = spec.dhcp4.skip_hostname_request
        self.clock = clock
        self.machine: Machine | None = None
        self.dropped: dict[str, int] = {}
        self.hostname: HostnameSpec | None = None  # the DHCP hostname we publish
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._first_exchange = True
        self._status: OperatorStatusSpec | None = None

    # ---- hostname rule (§2.4) ---------------------------------------------------------------

    def _request_mode(self) -> bool:
        if self.skip_hostname:
            return False
        if self._first_exchange:
            return True
        current = pysocket.gethostname().split(".", 1)[0]
        return not current or (self.hostname is not None and current == self.hostname.hostname)

    def _client_options(self) -> dict[int, bytes]:
        request = self._request_mode()
        prl = [*o.PRL_BASE, o.INTERFACE_MTU] + ([o.HOSTNAME] if request else [])
        opts = {
            o.PARAMETER_REQUEST_LIST: bytes(prl),
            o.MAX_MESSAGE_SIZE: o.OUR_MAX_MESSAGE_SIZE.to_bytes(2, "big"),
        }
        if not request:
            host, _, domain = pysocket.gethostname().partition(".")
            if host:
                opts[o.HOSTNAME] = host.encode("ascii", "replace")
            if domain:
                opts[o.DOMAIN_NAME] = domain.encode("ascii", "replace")
        return opts

    # ---- packets in ---------------------------------------------------------------------------

    def _drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        log.debug("DHCP on %s: dropped a packet: %s", self.link, reason)

    def _on_payload(self, payload: bytes) -> None:
        self._queue.put_nowait(payload)

    # ---- the loop -------------------------------------------------------------------------------

    async def run(self, host: OperatorHost) -> None:
        await host.wait_link_up()
        mac = _mac(self.link)
        m = Machine(
            mac=mac,
            default_lease=tunables.seconds("DHCP_DEFAULT_LEASE"),
            min_t1=tunables.seconds("DHCP_MIN_INTERVAL"),
        )
        self.machine = m
        socks = ClientSockets(self.link, self._on_payload, self._drop)
        socks.open()
        try:
            stored = Lease.load(host.state_dir, m.default_lease, m.min_t1)
            if stored is not None and stored.ack.chaddr != mac:
                stored = None  # another NIC's lease (the MAC changed)
            m.client_options = self._client_options()
            self._perform(host, socks, m.start(self.clock(), stored), None)
            while True:
                deadline = m.next_deadline()
                timeout = None if deadline is None else max(0.0, deadline - self.clock())
                try:
                    payload = await asyncio.wait_for(self._queue.get(), timeout)
                except TimeoutError:
                    m.client_options = self._client_options()
                    sent = m.sent
                    self._perform(host, socks, m.tick(self.clock()), sent)
                    continue
                try:
                    msg = decode(payload)
                except DecodeError as e:
                    self._drop(f"decode: {e}")
                    continue
                before = dict(m.dropped)
                sent = m.sent
                m.client_options = self._client_options()
                try:
                    actions = m.receive(msg, self.clock())
                except Exception as e:  # a reply the machine chokes on must not end the operator
                    log.exception("DHCP on %s: reply not handled", self.link)
                    self._drop(f"internal: {e}")
                    continue
                for k, v in m.dropped.items():
                    if v != before.get(k):
                        self._drop(k)
                self._perform(host, socks, actions, sent)
        finally:
            socks.close()

    def _perform(
        self, host: OperatorHost, socks: ClientSockets, actions: list[Any], sent: Message | None
    ) -> None:
        for a in actions:
            if isinstance(a, Send):
                self._send(socks, a)
            elif isinstance(a, Bind):
                self._bind(host, a.lease, sent)
            elif isinstance(a, Unbind):
                log.info("DHCP on %s: lease dropped (%s)", self.link, a.reason)
                self.hostname = None
                host.publish(OperatorOutput())
                Lease.forget(host.state_dir)
        self._report(host)

    def _send(self, socks: ClientSockets, a: Send) -> None:
        data = encode(a.message)
        kind = a.message.type.name if a.message.type else "?"
        try:
            if a.from_lease:
                socks.send_udp(data, a.unicast)
            else:
                socks.send_broadcast(data)
            log.debug(
                "DHCP on %s: sent %s xid %08x to %s", self.link, kind, a.message.xid, a.unicast or "broadcast"
            )
        except OSError as e:  # the retransmission timer tries again
            log.warning("DHCP on %s: sending %s failed: %s", self.link, kind, e)

    def _bind(self, host: OperatorHost, lease: Lease, sent: Message | None) -> None:
        request_mode = not self.skip_hostname and (
            sent is None or o.HOSTNAME in (sent.options.get(o.PARAMETER_REQUEST_LIST) or b"")
        )
        if request_mode:
            self.hostname = hostname_spec(lease.ack)
        self._first_exchange = False
        try:
            lease.save(host.state_dir)
        except OSError as e:
            log.warning("DHCP on %s: cannot persist the lease: %s", self.link, e)
        log.info(
            "DHCP on %s: bound to %s from %s, lease %ss",
            self.link,
            lease.prefix(),
            lease.server,
            int(lease.lease_time),
        )
        host.publish(lease_output(lease, self.link, self.metric, self.hostname))

    def _report(self, host: OperatorHost) -> None:
        m = self.machine
        if m is None:
            return
        lease = m.lease
        st = OperatorStatusSpec(operator="dhcp4", link_name=self.link, state=str(m.state))
        if lease is not None:
            st = st.model_copy(
                update={
                    "server": lease.server,
                    "address": lease.prefix(),
                    "lease_time": int(min(lease.lease_time, 0xFFFFFFFF)),
                    "obtained_at": _time(lease.obtained),
                    "expires_at": None if lease.infinite else _time(lease.expires),
                    "t1": _time(lease.renew_at),
                    "t2": _time(lease.rebind_at),
                }
            )
        if st != self._status:
            self._status = st
            host.set_status(st)

    # ---- leave ----------------------------------------------------------------------------------

    async def leave(self, host: OperatorHost) -> None:
        """DHCPRELEASE, unicast to the server identifier with ciaddr = the leased address
        (RFC 2131 §4.4.6; operators.md §6), then the lease file goes."""
        lease = self.machine.lease if self.machine is not None else None
        if lease is None:
            lease = Lease.load(host.state_dir, 1800.0)
        if lease is None or lease.server is None or lease.expires <= self.clock():
            return
        msg = Message(
            xid=random.getrandbits(32),
            chaddr=lease.ack.chaddr,
            ciaddr=lease.address,
            options={
                o.MESSAGE_TYPE: bytes((MessageType.RELEASE,)),
                o.SERVER_ID: lease.server.packed,
            },
        )
        s = pysocket.socket(pysocket.AF_INET, pysocket.SOCK_DGRAM)
        try:
            s.setsockopt(pysocket.SOL_SOCKET, pysocket.SO_REUSEADDR, 1)
            s.setsockopt(pysocket.SOL_SOCKET, pysocket.SO_BINDTODEVICE, self.link.encode())
            s.bind((str(lease.address), 68))
            s.sendto(encode(msg), (str(lease.server), 67))
            log.info("DHCP on %s: released %s to %s", self.link, lease.address, lease.server)
        except OSError as e:
            log.warning("DHCP on %s: DHCPRELEASE failed: %s", self.link, e)
        finally:
            s.close()
        Lease.forget(host.state_dir)
