"""The DHCPv4 client's sockets on one link (operators.md §2.2).

* A packet socket (``AF_PACKET``/``SOCK_DGRAM``, EtherType IPv4) bound to the link, with a
  classic BPF filter for UDP destination port 68: it receives every reply, whatever its
  destination IP (a unicast OFFER/ACK to an address the link does not have yet), and sends the
  broadcasts of a client without an address (0.0.0.0:68 → 255.255.255.255:67, IP/UDP built by
  :func:`.packet.frame_ip_udp`).
* A UDP socket bound to 0.0.0.0:68 on the link (``SO_BINDTODEVICE``): it sends once the lease's
  address is on the link (RENEWING unicast to the server, REBINDING broadcast, RELEASE), the
  kernel choosing that address as the source. Whatever it receives is drained: the replies are
  read from the packet socket, and this socket exists so that the kernel does not answer a
  unicast reply with an ICMP port unreachable.
"""

from __future__ import annotations

import asyncio
import ctypes
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable

from .packet import CLIENT_PORT, SERVER_PORT, DecodeError, frame_ip_udp, parse_ip_udp

log = logging.getLogger("operators.dhcp4")

ETH_P_IP = 0x0800
SO_ATTACH_FILTER = 26
BROADCAST_MAC = b"\xff" * 6
BROADCAST = ipaddress.IPv4Address("255.255.255.255")

# Classic BPF over the IPv4 header (SOCK_DGRAM packet sockets start at the network header):
# UDP, not a fragment, destination port 68 → accept, else drop.
_BPF = [
    (0x30, 0, 0, 9),  # ldb [9]             protocol
    (0x15, 0, 6, 17),  # jeq #17 ? : drop
    (0x28, 0, 0, 6),  # ldh [6]             flags/fragment offset
    (0x45, 4, 0, 0x1FFF),  # jset #0x1fff ? drop :
    (0xB1, 0, 0, 0),  # ldxb 4*([0]&0xf)    IP header length
    (0x48, 0, 0, 2),  # ldh [x+2]           UDP destination port
    (0x15, 0, 1, CLIENT_PORT),  # jeq #68 ? accept : drop
    (0x06, 0, 0, 0xFFFF),  # ret #65535
    (0x06, 0, 0, 0),  # ret #0
]


def _attach_filter(sock: socket.socket) -> None:
    insns = b"".join(struct.pack("HBBI", *i) for i in _BPF)
    buf = ctypes.create_string_buffer(insns)
    prog = struct.pack("HL", len(_BPF), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)


class ClientSockets:
    """Both sockets of one link; ``on_payload`` gets each UDP payload to port 68."""

    def __init__(
        self, ifname: str, on_payload: Callable[[bytes], None], on_bad: Callable[[str], None]
    ) -> None:
        self.ifname = ifname
        self.on_payload = on_payload
        self.on_bad = on_bad
        self.raw: socket.socket | None = None
        self.udp: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
        try:
            _attach_filter(raw)
            raw.bind((self.ifname, ETH_P_IP))
            raw.setblocking(False)
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                udp.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                udp.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.ifname.encode())
                udp.bind(("0.0.0.0", CLIENT_PORT))
                udp.setblocking(False)
            except OSError:
                udp.close()
                raise
        except OSError:
            raw.close()
            raise
        self.raw, self.udp = raw, udp
        self._loop.add_reader(raw.fileno(), self._read_raw)
        self._loop.add_reader(udp.fileno(), self._drain_udp)

    def close(self) -> None:
        for s in (self.raw, self.udp):
            if s is not None:
                if self._loop is not None:
                    self._loop.remove_reader(s.fileno())
                s.close()
        self.raw = self.udp = None

    def _read_raw(self) -> None:
        assert self.raw is not None
        for _ in range(64):
            try:
                data = self.raw.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.warning("DHCP on %s: receive failed: %s", self.ifname, e)
                return
            try:
                d = parse_ip_udp(data)
            except DecodeError as e:
                self.on_bad(f"ip/udp: {e}")
                continue
            if d.dport != CLIENT_PORT or d.sport != SERVER_PORT:
                self.on_bad("ports")
                continue
            self.on_payload(d.payload)

    def _drain_udp(self) -> None:
        assert self.udp is not None
        for _ in range(64):
            try:
                self.udp.recv(65535)
            except OSError:
                return

    def send_broadcast(self, payload: bytes) -> None:
        """From 0.0.0.0:68 to 255.255.255.255:67 in an Ethernet broadcast (no address needed)."""
        assert self.raw is not None
        self.raw.sendto(frame_ip_udp(payload), (self.ifname, ETH_P_IP, 0, 0, BROADCAST_MAC))

    def send_udp(self, payload: bytes, dst: ipaddress.IPv4Address | None) -> None:
        """From the link's address (the lease) to ``dst``:67, or broadcast when None."""
        assert self.udp is not None
        self.udp.sendto(payload, (str(dst or BROADCAST), SERVER_PORT))
