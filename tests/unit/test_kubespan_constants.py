"""kubespan/constants.py: the numbers of kubespan.md §8 (and the §9.8 mark arithmetic they imply)."""

from __future__ import annotations

from kubespan import constants as c


def test_numbers_table() -> None:
    assert (c.LINK_NAME, c.LINK_KIND, c.LISTEN_PORT) == ("kubespan", "wireguard", 51820)
    assert (c.DEFAULT_MTU, c.MIN_MTU) == (1420, 1280)
    assert (c.FWMARK, c.MARK, c.MASK) == (0x20, 0x40, 0x60)
    assert c.SET_MARK_AND == 0xFFFFFF9F  # §11: not the docs' 0xffffffdf
    assert (c.ROUTING_TABLE, c.RULE_PRIORITY, c.ROUTE_METRIC) == (180, 32500, 1)
    assert (c.MSS_OVERHEAD_IPV4, c.MSS_OVERHEAD_IPV6) == (40, 60)
    assert c.ADDRESS_PREFIX_LEN == 64


def test_timers() -> None:
    assert c.ENDPOINT_CONNECTION_TIMEOUT == 15.0
    assert c.PEER_DOWN_INTERVAL == 180 + 5 + 90
    assert c.KUBESPAN_RECONCILE_INTERVAL == 30.0
    assert c.KEEPALIVE == 25.0


def test_marks_do_not_overlap() -> None:
    # WireGuard's mark and ours are the two bits of the mask and nothing else (§7.4).
    assert c.FWMARK & c.MARK == 0
    assert c.FWMARK | c.MARK == c.MASK


def test_nft_names() -> None:
    assert (c.NFT_FAMILY, c.NFT_TABLE) == ("inet", "talos_kubespan")
    assert (c.NFT_SET_IPV4, c.NFT_SET_IPV6) == ("kubespan_targets_ipv4", "kubespan_targets_ipv6")
    assert (c.NFT_CHAIN_PREROUTING, c.NFT_CHAIN_OUTGOING) == ("kubespan_prerouting", "kubespan_outgoing")
