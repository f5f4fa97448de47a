"""The DHCPv6 client's link: its UDP socket, its link-local address, its MAC (operators.md §3.2, §3.3).

The socket is bound to ``[<link-local>%<link>]:546`` and to the device (SO_BINDTODEVICE, so two
clients on two links never see each other's replies), sends to ff02::1:2 port 547 out of that
link, and reads replies (servers answer the link-local source). Everything here reads the network
namespace of the calling process, which is machined's.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import socket
import struct
import time
from ipaddress import IPv6Address
from pathlib import Path

from .machine import ALL_SERVERS

log = logging.getLogger(__name__)

CLIENT_PORT = 546
SERVER_PORT = 547
MAX_DATAGRAM = 65535
LINK_LOCAL_POLL = 0.1  # operators.md §3.2: poll every 100 ms

IF_INET6 = Path("/proc/net/if_inet6")
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
SCOPE_LINK = 0x20
SIOCGIFHWADDR = 0x8927


def link_local(ifindex: int) -> tuple[IPv6Address | None, bool]:
    """(the link's first link-local address that is not tentative, whether it failed DAD), from
    /proc/net/if_inet6 (one line per address: addr, ifindex, plen, scope, flags, name; hex)."""
    try:
        lines = IF_INET6.read_text().splitlines()
    except OSError:
        return None, False
    for line in lines:
        f = line.split()
        if len(f) < 6 or int(f[1], 16) != ifindex or int(f[3], 16) != SCOPE_LINK:
            continue
        flags = int(f[4], 16)
        if flags & IFA_F_TENTATIVE and not flags & IFA_F_DADFAILED:
            continue
        return IPv6Address(bytes.fromhex(f[0])), bool(flags & IFA_F_DADFAILED)
    return None, False


async def wait_link_local(link: str, ifindex: int, timeout: float) -> IPv6Address | None:
    """Poll for a usable link-local address for at most ``timeout`` (DHCP6_LINK_LOCAL_WAIT); an
    address that failed DAD is taken with a warning (§3.2)."""
    deadline = time.monotonic() + timeout
    while True:
        addr, dad_failed = link_local(ifindex)
        if addr is not None:
            if dad_failed:
                log.warning("dhcp6 %s: link-local %s failed DAD, using it anyway", link, addr)
            return addr
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(LINK_LOCAL_POLL)


def hardware_address(link: str) -> bytes:
    """The link's MAC (SIOCGIFHWADDR: ifreq = 16-byte name, then a sockaddr whose data is the MAC)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16s16s", link.encode()[:15], b"")
        out = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, ifreq)
    return out[18:24]


def set_accept_ra(link: str) -> None:
    """``net.ipv6.conf.<link>.accept_ra = 2`` (operators.md §3.1): DHCPv6 gives no route, the IPv6
    default route comes from Router Advertisements, and a node with forwarding on (Talos turns it
    on) takes RAs only with accept_ra 2; with forwarding off 2 behaves as 1."""
    path = Path("/proc/sys/net/ipv6/conf") / link / "accept_ra"  # a dot in a VLAN name stays a dot
    try:
        if path.read_text().strip() != "2":
            path.write_text("2\n")
    except OSError as e:
        log.warning("dhcp6 %s: cannot set accept_ra=2: %s", link, e)


class ClientSocket:
    """One UDP socket on the link; :meth:`recv` gives (datagram, source address, source port)."""

    def __init__(self, link: str, ifindex: int, source: IPv6Address) -> None:
        self.link, self.ifindex, self.source = link, ifindex, source
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, link.encode())
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            s.setblocking(False)
            s.bind((str(source), CLIENT_PORT, 0, ifindex))
        except BaseException:
            s.close()
            raise
        self.sock = s

    def send(self, data: bytes, destination: IPv6Address = ALL_SERVERS) -> None:
        self.sock.sendto(data, (str(destination), SERVER_PORT, 0, self.ifindex))

    async def recv(self) -> tuple[bytes, IPv6Address | None, int]:
        data, addr = await asyncio.get_running_loop().sock_recvfrom(self.sock, MAX_DATAGRAM)
        try:
            source: IPv6Address | None = IPv6Address(str(addr[0]).split("%", 1)[0])
        except ValueError:
            source = None
        return data, source, int(addr[1])

    def close(self) -> None:
        self.sock.close()
