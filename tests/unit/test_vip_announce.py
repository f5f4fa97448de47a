"""VIP announcements: frame bytes of the gratuitous ARP and the unsolicited NA, cross-checked with scapy."""

from __future__ import annotations

import ipaddress

import pytest

from operators.vip.announce import ETH_P_ARP, ETH_P_IPV6, announcement, gratuitous_arp, unsolicited_na

scapy_all = pytest.importorskip("scapy.all")
MAC = "02:00:00:00:00:0a"


def test_gratuitous_arp_is_a_request_from_and_for_the_vip() -> None:
    vip = ipaddress.IPv4Address("10.0.0.50")
    frame = gratuitous_arp(MAC, vip)
    assert len(frame) == 42
    pkt = scapy_all.Ether(frame)
    assert pkt.dst == "ff:ff:ff:ff:ff:ff" and pkt.src == MAC and pkt.type == ETH_P_ARP
    arp = pkt[scapy_all.ARP]
    assert (arp.hwtype, arp.ptype, arp.hwlen, arp.plen, arp.op) == (1, 0x0800, 6, 4, 1)
    # operators.md §4.4: sender = target = VIP, sender MAC = target MAC = ours
    assert (arp.hwsrc, arp.psrc, arp.hwdst, arp.pdst) == (MAC, "10.0.0.50", MAC, "10.0.0.50")
    ours = scapy_all.Ether(dst="ff:ff:ff:ff:ff:ff", src=MAC) / scapy_all.ARP(
        op=1, hwsrc=MAC, psrc="10.0.0.50", hwdst=MAC, pdst="10.0.0.50"
    )
    assert bytes(ours) == frame


def test_unsolicited_na_matches_scapy_checksum_and_flags() -> None:
    vip = ipaddress.IPv6Address("fd00::50")
    frame = unsolicited_na(MAC, vip)
    pkt = scapy_all.Ether(frame)
    assert pkt.dst == "33:33:00:00:00:01" and pkt.src == MAC and pkt.type == ETH_P_IPV6
    ip6 = pkt[scapy_all.IPv6]
    assert (ip6.src, ip6.dst, ip6.hlim, ip6.nh) == ("fd00::50", "ff02::1", 255, 58)
    na = pkt[scapy_all.ICMPv6ND_NA]
    assert (na.R, na.S, na.O, na.tgt) == (0, 0, 1, "fd00::50")
    assert pkt[scapy_all.ICMPv6NDOptDstLLAddr].lladdr == MAC
    # scapy computes the ICMPv6 checksum itself: the same packet built by scapy is byte-equal
    ref = (
        scapy_all.Ether(dst="33:33:00:00:00:01", src=MAC)
        / scapy_all.IPv6(src="fd00::50", dst="ff02::1", hlim=255)
        / scapy_all.ICMPv6ND_NA(R=0, S=0, O=1, tgt="fd00::50")
        / scapy_all.ICMPv6NDOptDstLLAddr(lladdr=MAC)
    )
    assert bytes(ref) == frame


def test_announcement_picks_the_family_and_refuses_odd_macs() -> None:
    assert announcement(MAC, ipaddress.IPv4Address("192.0.2.1"))[0] == ETH_P_ARP
    assert announcement(MAC, ipaddress.IPv6Address("2001:db8::1"))[0] == ETH_P_IPV6
    with pytest.raises(ValueError, match="6-byte"):
        announcement("", ipaddress.IPv4Address("192.0.2.1"))
