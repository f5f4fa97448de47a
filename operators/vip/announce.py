"""Announcing a VIP that moved here: gratuitous ARP (IPv4) and unsolicited neighbour advertisement (IPv6).

operators.md §0: a few (VIP_GARP_COUNT, default 3) at VIP_GARP_INTERVAL (1 s), so that neighbours
point their cache entry at the new holder's MAC at once instead of after their entry goes stale.
Linux updates an *existing* ARP entry on a gratuitous request, and an existing neighbour entry on
an unsolicited NA with the Override flag (RFC 4861 §7.2.5); neither creates one.

Frames are built here (pure functions, checked against scapy in the unit tests) and sent on an
AF_PACKET socket bound to the link, so nothing depends on the address being usable yet (an IPv6
address is still tentative during DAD).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct

from netd.netip import Addr

log = logging.getLogger(__name__)

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
BROADCAST_MAC = b"\xff" * 6
ALL_NODES = ipaddress.IPv6Address("ff02::1")
ICMPV6_NEIGHBOR_ADVERT = 136
NA_FLAG_OVERRIDE = 0x20000000  # RFC 4861 §4.4: R=0x80000000, S=0x40000000, O=0x20000000
ND_OPT_TARGET_LL_ADDR = 2
IPPROTO_ICMPV6 = 58


def mac_bytes(mac: str) -> bytes:
    hw = bytes.fromhex(mac.replace(":", ""))
    if len(hw) != 6:
        raise ValueError(f"not a 6-byte MAC: {mac!r}")
    return hw


def gratuitous_arp(mac: str, vip: ipaddress.IPv4Address) -> bytes:
    """Ethernet broadcast ARP *request* for the VIP (operators.md §4.4): sender = target = VIP,
    sender MAC = target MAC = ours. tcpdump: ``Request who-has VIP (MAC) tell VIP``."""
    hw = mac_bytes(mac)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + hw + vip.packed + hw + vip.packed
    return BROADCAST_MAC + hw + struct.pack("!H", ETH_P_ARP) + arp


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def unsolicited_na(mac: str, vip: ipaddress.IPv6Address) -> bytes:
    """RFC 4861 §7.2.6 unsolicited Neighbour Advertisement: to ff02::1 (Ethernet 33:33:00:00:00:01),
    hop limit 255, flags Override only (not Solicited, not Router), target = VIP, option Target
    Link-Layer Address = our MAC. The IPv6 source is the VIP itself (an address of the link)."""
    hw = mac_bytes(mac)
    option = struct.pack("!BB", ND_OPT_TARGET_LL_ADDR, 1) + hw
    body = struct.pack("!I", NA_FLAG_OVERRIDE) + vip.packed + option
    length = 4 + len(body)  # type, code, checksum + body
    pseudo = vip.packed + ALL_NODES.packed + struct.pack("!I3xB", length, IPPROTO_ICMPV6)
    csum = _checksum(pseudo + struct.pack("!BBH", ICMPV6_NEIGHBOR_ADVERT, 0, 0) + body)
    icmp = struct.pack("!BBH", ICMPV6_NEIGHBOR_ADVERT, 0, csum) + body
    ip6 = struct.pack("!IHBB", 6 << 28, length, IPPROTO_ICMPV6, 255) + vip.packed + ALL_NODES.packed
    dst_mac = b"\x33\x33" + ALL_NODES.packed[-4:]
    return dst_mac + hw + struct.pack("!H", ETH_P_IPV6) + ip6 + icmp


def announcement(mac: str, vip: Addr) -> tuple[int, bytes]:
    """(EtherType, frame) announcing ``vip`` from ``mac``."""
    if isinstance(vip, ipaddress.IPv4Address):
        return ETH_P_ARP, gratuitous_arp(mac, vip)
    return ETH_P_IPV6, unsolicited_na(mac, vip)


def send_frame(ifname: str, ethertype: int, frame: bytes) -> None:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype)) as s:
        s.bind((ifname, ethertype))
        s.send(frame)


async def announce(ifname: str, mac: str, vip: Addr, count: int, interval: float) -> None:
    """Send ``count`` announcements ``interval`` apart; a failed send is only logged (a link
    without a 6-byte MAC, e.g. a WireGuard or tun link, gets none)."""
    try:
        ethertype, frame = announcement(mac, vip)
    except ValueError as e:
        log.info("VIP %s: not announced on %s: %s", vip, ifname, e)
        return
    for i in range(count):
        if i:
            await asyncio.sleep(interval)
        try:
            send_frame(ifname, ethertype, frame)
        except OSError as e:
            log.warning("VIP %s: announcement on %s failed: %s", vip, ifname, e)
    log.info("VIP %s: announced %d time(s) on %s from %s", vip, count, ifname, mac)
