"""IP text like Go's net/netip (decisions.md "IP text")."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netd.netip import format_addr, format_prefix, masked, parse_addr, parse_prefix


@pytest.mark.parametrize("bad", ["", "1.2.3", "01.2.3.4", "1.2.3.256", "16909060", "1.2.3.4 ", "fe80::1%eth0",
                                 "::g", "1.2.3.4.5"])
def test_bad_addresses(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_addr(bad)


@pytest.mark.parametrize("bad", ["10.0.0.1/255.255.255.0", "10.0.0.1/024", "10.0.0.1/33", "10.0.0.1",
                                 "::1/129", "10.0.0.1/-1", "10.0.0.1/+8", "fe80::1%eth0/64", "10.0.0.1/ 8"])
def test_bad_prefixes(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_prefix(bad)


def test_formats_like_go() -> None:
    assert format_addr(parse_addr("::ffff:1.2.3.4")) == "::ffff:1.2.3.4"
    assert format_addr(parse_addr("2001:DB8:0:0:0:0:0:1")) == "2001:db8::1"
    assert format_prefix(parse_prefix("10.0.0.5/24")) == "10.0.0.5/24"
    assert format_prefix(masked(parse_prefix("10.0.0.5/24"))) == "10.0.0.0/24"
    assert format_prefix(parse_prefix("::ffff:10.0.0.1/128")) == "::ffff:10.0.0.1/128"


@given(st.ip_addresses())
def test_round_trip(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    text = format_addr(addr)
    assert parse_addr(text) == addr
    assert format_addr(parse_addr(text)) == text
