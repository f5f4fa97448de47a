"""Every vector of cmdline-vectors.json through the pure parser."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Any

import pytest

from netd.config.cmdline import CmdlineNetworking, HostLink, parse_cmdline
from netd.controllers.link import cmdline_bond
from netd.netip import format_addr, format_prefix
from netd.resources.enums import FailOverMAC

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "data/cmdline-vectors.json").read_text())

BOND_KEYS = {
    "mode": "mode",
    "xmitHashPolicy": "xmit_hash_policy",
    "lacpRate": "lacp_rate",
    "arpValidate": "arp_validate",
    "arpAllTargets": "arp_all_targets",
    "primary": "primary",
    "primaryReselect": "primary_reselect",
    "failOverMac": "fail_over_mac",
    "adSelect": "ad_select",
    "miimon": "miimon",
    "updelay": "updelay",
    "downdelay": "downdelay",
    "arpInterval": "arp_interval",
    "resendIgmp": "resend_igmp",
    "minLinks": "min_links",
    "lpInterval": "lp_interval",
    "packetsPerSlave": "packets_per_slave",
    "numPeerNotif": "num_peer_notif",
    "tlbLogicalLb": "tlb_logical_lb",
    "allSlavesActive": "all_slaves_active",
    "useCarrier": "use_carrier",
    "adActorSysPrio": "ad_actor_sys_prio",
    "adUserPortKey": "ad_user_port_key",
    "peerNotifyDelay": "peer_notify_delay",
}


def bond_value(v: Any) -> Any:
    """Spec values in the vectors' terms: enum names, failOverMac by name."""
    if isinstance(v, FailOverMAC):
        return v.name.lower()
    if isinstance(v, enum.Enum):
        return str(v)
    return v


def host_links(vec: dict[str, Any]) -> list[HostLink]:
    ifaces = vec.get("interfaces", [{"name": "lo", "loopback": True}])
    return [
        HostLink(i["name"], i.get("mac", ""), i.get("loopback", False), n + 1) for n, i in enumerate(ifaces)
    ]


def as_expect(net: CmdlineNetworking) -> dict[str, Any]:
    links = []
    for link in net.links:
        d: dict[str, Any] = {"name": link.name, "up": link.up}
        if link.logical:
            d["logical"] = True
        if link.mtu:
            d["mtu"] = link.mtu
        if link.kind:
            d["kind"] = link.kind
        if link.type:
            d["type"] = link.type
        if link.parent:
            d["parent"] = link.parent
        if link.vlan_id:
            d["vlan"] = {"id": link.vlan_id, "protocol": link.vlan_protocol}
        if link.bond is not None:
            bond = cmdline_bond(link.bond)  # the spec the link config controller builds
            d["bond"] = {k: bond_value(getattr(bond, attr)) for k, attr in BOND_KEYS.items()}
        if link.master:
            d["bond_slave"] = {"master": link.master, "index": link.slave_index}
        links.append(d)
    routes = []
    for r in net.routes:
        d = {"link": r.link, "metric": r.metric, "family": r.family, "scope": r.scope}
        if r.gateway is not None:
            d["gateway"] = format_addr(r.gateway)
        if r.dst is not None:
            d["dst"] = format_prefix(r.dst)
        if r.src is not None:
            d["src"] = format_addr(r.src)
        routes.append(d)
    return {
        "hostname": net.hostname,
        "addresses": [
            {"address": format_prefix(a.prefix), "link": a.link, "family": a.family} for a in net.addresses
        ],
        "routes": routes,
        "resolvers": [format_addr(a) for a in net.resolvers],
        "time_servers": net.time_servers,
        "ignored_links": net.ignored_links,
        "dhcp_links": net.dhcp_links,
        "links": links,
    }


def canon(v: dict[str, Any]) -> dict[str, Any]:
    key = lambda x: json.dumps(x, sort_keys=True)  # noqa: E731
    out = dict(v)
    for k in ("addresses", "routes", "links"):
        out[k] = sorted(v[k], key=key)
    for k in ("ignored_links", "dhcp_links"):
        out[k] = sorted(v[k])
    return out


@pytest.mark.parametrize("vec", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector(vec: dict[str, Any]) -> None:
    result = parse_cmdline(vec["cmdline"], host_links(vec))
    exp = vec["expect"]
    if "error" in exp:
        assert result.networking is None
        assert result.error is not None and result.error.startswith(exp["error"]), result.error
        partial = vec.get("partial", {})
        assert sorted(result.ignored_links) == sorted(partial.get("ignored_links", []))
        assert sorted(result.dhcp_links) == sorted(partial.get("dhcp_links", []))
        return
    assert result.error is None, result.error
    assert result.networking is not None
    assert canon(as_expect(result.networking)) == canon(exp)


# ---- never raises -------------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FUZZ_LINKS = [HostLink("lo", loopback=True, index=1), HostLink("eth0", "52:54:00:12:34:56", index=2)]
PIECES = st.sampled_from(
    [
        *"ip=bondvlan:[],.0123456789abcdef/ ",
        *("ip=", "bond=", "vlan=", "talos.hostname=", "talos.network.interface.ignore="),
        *("enx525400123456", "dhcp", "::", "255.255.255.0", "mode=", "primary=eth0", "miimon="),
        *("use_carrier=", "=", "\t", "\u00e9", "\u00b2", "\u0663", "[ffff::]", "2001:db8::1"),
    ]
)


@settings(max_examples=2000, deadline=None)
@given(st.lists(PIECES, max_size=40).map("".join))
def test_arbitrary_command_lines_never_raise(cmdline: str) -> None:
    r = parse_cmdline(cmdline, FUZZ_LINKS)
    assert (r.networking is None) == (r.error is not None)


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_arbitrary_text_never_raises(cmdline: str) -> None:
    parse_cmdline(cmdline, FUZZ_LINKS)


def test_vlan_naming_rule() -> None:
    from netd.config.names import vlan_link_name

    assert vlan_link_name("eth0", 100) == "eth0.100"
    assert vlan_link_name("enp0s3", 4094) == "enp0s3.4094"
    assert vlan_link_name("enx78e7d1ea46da", 100) == "enx7f8ca75.100"
    assert vlan_link_name("enp1s0f0np0", 42) == "enp1837f68.42"
