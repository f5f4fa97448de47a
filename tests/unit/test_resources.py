"""netd.resources: spec shapes (keys, order, omitempty, text forms), round trips, definitions."""

from __future__ import annotations

import datetime as dt
import io
import ipaddress
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from ruamel.yaml import YAML

from cosi import State
from cosi.errors import AmbiguousTypeError
from cosi.resource import spec_dict
from netd.netip import parse_prefix
from netd.resources import (
    ALL_DEFINITIONS,
    CLUSTER,
    CONFIG,
    FILES,
    NETWORK,
    NETWORK_CONFIG,
    RUNTIME,
    AddressSpec,
    AddressStatus,
    BondMasterSpec,
    BridgeMasterSpec,
    BridgeSlave,
    DeviceConfigSpec,
    DevicesStatus,
    EtcFileSpec,
    EtcFileStatus,
    HardwareAddr,
    HostnameSpec,
    HostnameStatus,
    Identity,
    LinkRefresh,
    LinkSpec,
    LinkStatus,
    NetworkStatus,
    NfTablesChain,
    NfTablesRule,
    NodeAddress,
    NodeAddressFilter,
    OperatorSpec,
    ProbeSpec,
    ProbeStatus,
    ResolverSpec,
    ResolverStatus,
    RouteSpec,
    RouteStatus,
    Spec,
    STPSpec,
    TimeServerSpec,
    TimeServerStatus,
    VLANSpec,
    WireguardPeer,
    WireguardSpec,
    definition_for,
    register_all,
)
from netd.resources.base import format_go_duration, parse_go_duration
from netd.resources.enums import (
    AddressFlags,
    BondMode,
    ConfigLayer,
    Family,
    LinkFlags,
    LinkType,
    NfTablesVerdict,
    OperationalState,
    Operator,
    RoutingTable,
    Scope,
)
from netd.resources.hostname import parse_fqdn
from netd.resources.operator import DHCP4OperatorSpec, DHCP6OperatorSpec, VIPOperatorSpec
from netd.resources.operator_status import OperatorStatusSpec
from netd.resources.routing_rule import RoutingRuleSpec, RoutingRuleStatus

WG_PEER = {
    "publicKey": "peerPublicKey=",
    "presharedKey": "psk=",
    "endpoint": "10.0.0.2:51820",
    "persistentKeepaliveInterval": "25s",
    "allowedIPs": ["10.244.0.0/16", "fd00::/64"],
}
BOND_FULL = {
    "mode": "802.3ad",
    "xmitHashPolicy": "layer3+4",
    "lacpRate": "fast",
    "arpValidate": "active",
    "arpAllTargets": "all",
    "primary": 3,
    "primaryReselect": "better",
    "failOverMac": 2,
    "adSelect": "bandwidth",
    "miimon": 100,
    "updelay": 200,
    "downdelay": 200,
    "arpInterval": 1,
    "resendIgmp": 1,
    "minLinks": 1,
    "lpInterval": 1,
    "packetsPerSlave": 1,
    "numPeerNotif": 1,
    "tlbLogicalLb": 1,
    "allSlavesActive": 1,
    "useCarrier": True,
    "adActorSysPrio": 65535,
    "adUserPortKey": 1,
    "peerNotifyDelay": 1,
}
BOND_EMPTY = {
    "mode": "balance-rr",
    "xmitHashPolicy": "layer2",
    "lacpRate": "slow",
    "arpValidate": "none",
    "arpAllTargets": "any",
    "primaryReselect": "always",
    "failOverMac": 0,
}

# (model, fully populated document in emitted key order, document of the default instance)
CASES: list[tuple[type[Spec], dict[str, Any], dict[str, Any]]] = [
    (
        AddressSpec,
        {
            "address": "172.20.0.2/24",
            "linkName": "eth0",
            "family": "inet4",
            "scope": "global",
            "flags": "permanent",
            "announceWithARP": True,
            "layer": "operator",
            "validUntil": "2026-11-25T04:00:00Z",
            "preferredUntil": "2026-11-25T03:30:00Z",
        },
        {
            "address": "",
            "linkName": "",
            "family": "Family(0)",
            "scope": "global",
            "flags": "",
            "layer": "default",
        },
    ),
    (
        AddressStatus,
        {
            "address": "172.20.0.2/24",
            "local": "172.20.0.2",
            "broadcast": "172.20.0.255",
            "anycast": "172.20.0.3",
            "multicast": "224.0.0.1",
            "linkIndex": 4,
            "linkName": "eth0",
            "family": "inet4",
            "scope": "global",
            "flags": "permanent",
        },
        {
            "address": "",
            "linkIndex": 0,
            "linkName": "",
            "family": "Family(0)",
            "scope": "global",
            "flags": "",
        },
    ),
    (
        LinkSpec,
        {
            "name": "bond0",
            "logical": True,
            "up": True,
            "mtu": 9000,
            "kind": "bond",
            "type": "ether",
            "parentName": "eth0",
            "masterName": "br0",
            "slaveIndex": 1,
            "bridgeSlave": {"masterName": "br0"},
            "vlan": {"vlanID": 100, "vlanProtocol": "802.1q"},
            "bondMaster": BOND_FULL,
            "bridgeMaster": {"stp": {"enabled": True}},
            "wireguard": {
                "privateKey": "private=",
                "listenPort": 51820,
                "firewallMark": 1,
                "peers": [WG_PEER],
            },
            "layer": "configuration",
        },
        {
            "name": "",
            "logical": False,
            "up": False,
            "mtu": 0,
            "kind": "",
            "type": "netrom",
            "layer": "default",
        },
    ),
    (
        LinkStatus,
        {
            "index": 4,
            "type": "ether",
            "linkIndex": 2,
            "flags": "UP,BROADCAST,RUNNING,MULTICAST,LOWER_UP",
            "hardwareAddr": "52:54:00:12:34:56",
            "permanentAddr": "52:54:00:12:34:56",
            "broadcastAddr": "ff:ff:ff:ff:ff:ff",
            "mtu": 1500,
            "queueDisc": "fq_codel",
            "masterIndex": 7,
            "operationalState": "up",
            "kind": "wireguard",
            "slaveKind": "bond",
            "busPath": "0000:06:00.0",
            "pciID": "1969:E0B1",
            "driver": "e1000",
            "driverVersion": "7.3.21",
            "firmwareVersion": "N/A",
            "productID": "0x100e",
            "vendorID": "0x8086",
            "product": "82540EM Gigabit Ethernet Controller",
            "vendor": "Intel Corporation",
            "linkState": True,
            "speedMbit": 1000,
            "port": "TwistedPair",
            "duplex": "Full",
            "vlan": {"vlanID": 5, "vlanProtocol": "802.1ad"},
            "bridgeMaster": {"stp": {"enabled": False}},  # stp present but zero: omitted below
            "bondMaster": BOND_EMPTY | {"miimon": 100},
            "wireguard": {"publicKey": "public=", "listenPort": 51820, "firewallMark": 0, "peers": []},
        },
        {
            "index": 0,
            "type": "netrom",
            "linkIndex": 0,
            "flags": "",
            "hardwareAddr": "",
            "permanentAddr": "",
            "broadcastAddr": "",
            "mtu": 0,
            "queueDisc": "",
            "operationalState": "unknown",
            "kind": "",
            "slaveKind": "",
            "linkState": False,
            "port": "TwistedPair",
            "duplex": "Half",
        },
    ),
    (
        RouteSpec,
        {
            "family": "inet6",
            "dst": "2001:db8::/32",
            "src": "2001:db8::5",
            "gateway": "fe80::1",
            "outLinkName": "eth0",
            "table": "RoutingTable(180)",
            "priority": 1024,
            "scope": "global",
            "type": "unicast",
            "flags": "notify,cloned",
            "protocol": "static",
            "layer": "configuration",
            "mtu": 1400,
        },
        {
            "family": "Family(0)",
            "dst": "",
            "src": "",
            "gateway": "",
            "table": "unspec",
            "scope": "global",
            "type": "unspec",
            "flags": "",
            "protocol": "unspec",
            "layer": "default",
        },
    ),
    (
        RouteStatus,
        {
            "family": "inet4",
            "dst": "10.0.0.0/8",
            "src": "10.0.0.5",
            "gateway": "10.0.0.1",
            "outLinkIndex": 2,
            "outLinkName": "eth0",
            "table": "main",
            "priority": 100,
            "scope": "global",
            "type": "unicast",
            "flags": "",
            "protocol": "dhcp",
            "mtu": 1500,
        },
        {
            "family": "Family(0)",
            "dst": "",
            "src": "",
            "gateway": "",
            "table": "unspec",
            "priority": 0,
            "scope": "global",
            "type": "unspec",
            "flags": "",
            "protocol": "unspec",
        },
    ),
    (
        RoutingRuleSpec,
        {
            "family": "inet4",
            "src": "10.1.0.0/24",
            "dst": "192.168.0.0/16",
            "table": "RoutingTable(100)",
            "priority": 1000,
            "action": "unicast",
            "iifName": "eth0",
            "oifName": "eth1",
            "fwMark": 256,
            "fwMask": 65280,
            "layer": "configuration",
        },
        {"family": "inet4", "table": "unspec", "priority": 0, "action": "unicast", "layer": "default"},
    ),
    (
        RoutingRuleStatus,
        {
            "family": "inet4",
            "src": "10.1.0.0/24",
            "dst": "192.168.0.0/16",
            "table": "RoutingTable(100)",
            "priority": 1000,
            "action": "unicast",
            "iifName": "eth0",
            "oifName": "eth1",
            "fwMark": 256,
            "fwMask": 65280,
        },
        {"family": "inet4", "table": "unspec", "priority": 0, "action": "unicast"},
    ),
    (
        HostnameSpec,
        {"hostname": "talos-1", "domainname": "example.com", "layer": "platform"},
        {"hostname": "", "domainname": "", "layer": "default"},
    ),
    (
        HostnameStatus,
        {"hostname": "talos-1", "domainname": "example.com"},
        {"hostname": "", "domainname": ""},
    ),
    (
        ResolverSpec,
        {"dnsServers": ["1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"], "layer": "cmdline"},
        {"dnsServers": [], "layer": "default"},
    ),
    (ResolverStatus, {"dnsServers": ["1.1.1.1", "8.8.8.8"]}, {"dnsServers": []}),
    (
        TimeServerSpec,
        {"timeServers": ["pool.ntp.org", "10.0.0.1"], "layer": "default"},
        {"timeServers": [], "layer": "default"},
    ),
    (TimeServerStatus, {"timeServers": ["pool.ntp.org"]}, {"timeServers": []}),
    (
        OperatorSpec,
        {
            "operator": "vip",
            "linkName": "eth0",
            "requireUp": True,
            "dhcp4": {"routeMetric": 1024, "skipHostnameRequest": True},
            "dhcp6": {"DUID": "00:01:00:01", "routeMetric": 1024, "skipHostnameRequest": True},
            "vip": {
                "ip": "10.5.0.100",
                "gratuitousARP": True,
                "equinixMetal": {"projectID": "p", "deviceID": "d", "apiToken": "t"},
                "hcloud": {"deviceID": 1, "networkID": 2, "apiToken": "t"},
            },
            "layer": "configuration",
        },
        {"operator": "dhcp4", "linkName": "", "requireUp": False, "layer": "default"},
    ),
    (
        OperatorStatusSpec,
        {
            "operator": "dhcp4",
            "linkName": "eth0",
            "state": "bound",
            "server": "10.0.2.2",
            "address": "10.0.2.15/24",
            "leaseTime": 86400,
            "obtainedAt": "2026-12-05T10:00:00Z",
            "expiresAt": "2026-12-06T10:00:00Z",
            "t1": "2026-12-05T22:00:00Z",
            "t2": "2026-12-06T07:00:00Z",
        },
        {"operator": "", "linkName": "", "state": ""},
    ),
    (NodeAddress, {"addresses": ["172.20.0.2/24", "fd00::2/64"]}, {"addresses": []}),
    (
        NodeAddressFilter,
        {"includeSubnets": ["10.244.0.0/16"], "excludeSubnets": ["10.96.0.0/12"]},
        {"includeSubnets": [], "excludeSubnets": []},
    ),
    (
        NetworkStatus,
        {"addressReady": True, "connectivityReady": True, "hostnameReady": True, "etcFilesReady": True},
        {"addressReady": False, "connectivityReady": False, "hostnameReady": False, "etcFilesReady": False},
    ),
    (
        DeviceConfigSpec,  # the typed device, dumped with every key but unset sections
        {
            "device": {
                "interface": "eth0",
                "addresses": ["10.0.0.2/24"],
                "cidr": "",
                "routes": [
                    {"network": "0.0.0.0/0", "gateway": "10.0.0.1", "source": "", "metric": 1024, "mtu": 0}
                ],
                "vlans": [],
                "mtu": 1500,
                "dhcp": False,
                "ignore": False,
                "dummy": False,
            }
        },
        {
            "device": {
                "interface": "",
                "addresses": [],
                "cidr": "",
                "routes": [],
                "vlans": [],
                "mtu": 0,
                "dhcp": False,
                "ignore": False,
                "dummy": False,
            }
        },
    ),
    (
        HardwareAddr,
        {"name": "eth0", "hardwareAddr": "52:54:00:12:34:56"},
        {"name": "", "hardwareAddr": ""},
    ),
    (
        NfTablesChain,
        {
            "type": "filter",
            "hook": "input",
            "priority": "filter",
            "policy": "accept",
            "rules": [
                {
                    "matchIIfName": {"interfaceName": ["lo", "siderolink", "kubespan"], "operator": "=="},
                    "matchOIfName": {"interfaceName": ["eth0"], "operator": "!="},
                    "matchMark": {"mask": 255, "xor": 1, "value": 2},
                    "matchConntrackState": {"states": ["established", "related"]},
                    "matchSourceAddress": {
                        "includeSubnets": ["172.20.0.0/24"],
                        "excludeSubnets": ["172.20.0.3/32"],
                        "invert": True,
                    },
                    "matchDestinationAddress": {"includeSubnets": ["10.96.0.0/12"]},
                    "matchLayer4": {
                        "protocol": "tcp",
                        "matchSourcePort": {"ranges": [{"lo": 1024, "hi": 65535}]},
                        "matchDestinationPort": {"ranges": [{"lo": 10250, "hi": 10250}]},
                    },
                    "matchLimit": {"packetRatePerSecond": 5},
                    "clampMSS": {"mtu": 1420},
                    "setMark": {"mask": 4294967295, "xor": 32},
                    "anonymousCounter": True,
                    "verdict": "drop",
                },
                {"matchLayer4": {"protocol": "icmpv6"}, "verdict": "accept"},
                {"matchMark": {}, "matchLimit": {"packetRatePerSecond": 0}},
            ],
        },
        {"type": "", "hook": "prerouting", "priority": "filter", "policy": "drop", "rules": []},
    ),
    (
        ProbeSpec,
        {
            "interval": "1m30s",
            "failureThreshold": 3,
            "tcp": {"endpoint": "proxy.example.com:80", "timeout": "10s"},
            "layer": "platform",
        },
        {"interval": "0s", "failureThreshold": 0, "layer": "default"},
    ),
    (ProbeStatus, {"success": True, "lastError": "dial tcp: timeout"}, {"success": False, "lastError": ""}),
    (LinkRefresh, {"generation": 3}, {"generation": 0}),
    (
        EtcFileSpec,
        {"contents": "nameserver 1.1.1.1\nnameserver 8.8.8.8\n\nsearch example.com\n", "mode": 420},
        {"contents": "", "mode": 420},
    ),
    (EtcFileStatus, {"specVersion": "3"}, {"specVersion": ""}),
    (DevicesStatus, {"ready": True}, {"ready": False}),
    (Identity, {"nodeId": "OvDhUCgLYxgcwlmVvhSHOLZEyzsuKVGW3SZEq8K3kWa"}, {"nodeId": ""}),
]

# Keys that the full document above contains but that are omitted on dump (zero under omitempty).
DROPPED = {LinkStatus: {"bridgeMaster"}}


def _expected(model: type[Spec], doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in DROPPED.get(model, set())}


def test_every_definition_has_a_case() -> None:
    assert {d.spec_model for d in ALL_DEFINITIONS} == {m for m, _, _ in CASES}


@pytest.mark.parametrize(("model", "full", "empty"), CASES, ids=lambda x: getattr(x, "__name__", ""))
def test_shapes_and_round_trip(model: type[Spec], full: dict[str, Any], empty: dict[str, Any]) -> None:
    spec = model.model_validate(full)
    out = spec_dict(spec)
    expected = _expected(model, full)
    assert out == expected
    assert list(out) == list(expected)  # emitted key order
    # JSON text and back; python-mode dump (field names) and back
    assert model.model_validate_json(json.dumps(out)) == spec
    assert model.model_validate(spec.model_dump()) == spec
    assert model.model_validate(json.loads(spec.model_dump_json(by_alias=True))) == spec

    default = model()
    assert spec_dict(default) == empty
    assert list(spec_dict(default)) == list(empty)
    assert model.model_validate(empty) == default
    assert model.model_validate({}) == default


@pytest.mark.parametrize("model", [m for m, _, _ in CASES], ids=lambda m: m.__name__)
def test_unknown_keys_are_errors(model: type[Spec]) -> None:
    with pytest.raises(ValidationError):
        model.model_validate({"noSuchKey": 1})


def test_fields_accept_python_names() -> None:
    a = AddressSpec(address="10.0.0.1/8", link_name="eth0", family=Family.INET4, announce_with_arp=True)
    assert a == AddressSpec.model_validate({"address": "10.0.0.1/8", "linkName": "eth0", "family": "inet4",
                                            "announceWithARP": True})  # fmt: skip
    assert a.address == ipaddress.IPv4Interface("10.0.0.1/8")
    assert a.id() == "eth0/10.0.0.1/8"


def test_yaml_shape_of_the_address_status_example() -> None:
    spec = AddressStatus(
        address="172.20.0.2/24",
        link_index=4,
        link_name="eth0",
        family="inet4",
        scope="global",
        flags="permanent",
    )
    yaml = YAML()
    yaml.indent(mapping=4, sequence=4, offset=0)
    buf = io.StringIO()
    yaml.dump({"spec": spec_dict(spec)}, buf)
    assert buf.getvalue() == (
        "spec:\n"
        "    address: 172.20.0.2/24\n"
        "    linkIndex: 4\n"
        "    linkName: eth0\n"
        "    family: inet4\n"
        "    scope: global\n"
        "    flags: permanent\n"
    )


def test_ip_text_is_go_like() -> None:
    r = ResolverStatus(dns_servers=["::ffff:1.2.3.4", "2001:DB8::1"])
    assert spec_dict(r) == {"dnsServers": ["::ffff:1.2.3.4", "2001:db8::1"]}
    a = AddressStatus(address="::ffff:10.0.0.1/128", link_name="eth0")
    assert spec_dict(a)["address"] == "::ffff:10.0.0.1/128"
    assert a.id() == "eth0/::ffff:10.0.0.1/128"
    for bad in ("10.0.0.1/255.0.0.0", "10.0.0.1/024", "010.0.0.1/8", "10.0.0.1"):
        with pytest.raises(ValidationError):
            AddressSpec(address=bad)
    with pytest.raises(ValidationError):
        ResolverSpec(dns_servers=[""])
    assert AddressSpec(address="").address is None


def test_omitempty_zero_nested_structs_and_pointers() -> None:
    # value structs: omitted when all their fields are zero
    ls = LinkSpec(name="eth0", vlan=VLANSpec(), bridge_master=BridgeMasterSpec(stp=STPSpec(enabled=False)))
    assert "vlan" not in spec_dict(ls) and "bridgeMaster" not in spec_dict(ls)
    ls = LinkSpec(name="br0", bridge_master=BridgeMasterSpec(stp=STPSpec(enabled=True)))
    assert spec_dict(ls)["bridgeMaster"] == {"stp": {"enabled": True}}
    assert spec_dict(LinkSpec(bridge_slave=BridgeSlave(master_name="br0")))["bridgeSlave"] == {
        "masterName": "br0"
    }
    # a wireguard spec with only an (always emitted) zero listen port is zero
    assert WireguardSpec().is_zero()
    assert "wireguard" not in spec_dict(LinkSpec(wireguard=WireguardSpec(listen_port=0)))
    # pointers: emitted when present, even if zero
    rule = NfTablesRule(verdict=NfTablesVerdict.DROP)
    assert spec_dict(rule) == {"verdict": "drop"}
    assert spec_dict(NfTablesRule()) == {}
    # OperatorSpec sub-specs are omitted unless used
    op = OperatorSpec(
        operator=Operator.DHCP4, link_name="eth0", require_up=True, dhcp4=DHCP4OperatorSpec(route_metric=1024)
    )
    assert spec_dict(op) == {
        "operator": "dhcp4",
        "linkName": "eth0",
        "requireUp": True,
        "dhcp4": {"routeMetric": 1024},
        "layer": "default",
    }
    assert spec_dict(DHCP6OperatorSpec(route_metric=1)) == {"routeMetric": 1}
    assert spec_dict(VIPOperatorSpec()) == {"ip": "", "gratuitousARP": False}


def test_exclude_and_python_mode_dumps() -> None:
    op = OperatorSpec(link_name="eth0", layer=ConfigLayer.CMDLINE)
    assert "layer" not in op.model_dump(mode="json", by_alias=True, exclude={"layer"})
    assert op.model_dump()["link_name"] == "eth0"
    assert op.model_dump()["layer"] is ConfigLayer.CMDLINE


# ---- documented rules ---------------------------------------------------------------------


def test_route_normalization() -> None:
    r = RouteSpec(
        family="inet4", dst="0.0.0.0/0", gateway="10.0.0.1", src="0.0.0.0", scope="host"
    ).normalized()
    assert (r.dst, r.src, r.scope) == (None, None, Scope.GLOBAL)
    r = RouteSpec(family="inet6", dst="::/0", gateway="::").normalized()
    assert (r.dst, r.gateway, r.scope) == (None, None, Scope.LINK)
    r = RouteSpec(dst="127.0.0.0/8", gateway="10.0.0.1").normalized()
    assert r.scope == Scope.HOST
    r = RouteSpec(dst="10.0.0.0/0", gateway="10.0.0.1").normalized()  # not unspecified: kept
    assert r.dst is not None


def test_route_ids_from_specs() -> None:
    r = RouteSpec(family="inet4", gateway="172.20.0.1", out_link_name="eth0", table="main", priority=1024)
    assert r.id() == "inet4/172.20.0.1//1024"
    s = RouteStatus(family="inet6", dst="::1/128", out_link_name="lo", table="local")
    assert s.id() == "local/lo/inet6//::1/128/0"
    k = RouteSpec(family="inet4", dst="10.244.0.0/16", out_link_name="kubespan", table=180, priority=1)
    assert k.id() == "RoutingTable(180)/inet4//10.244.0.0/16/1"


def test_bond_defaults() -> None:
    b = BondMasterSpec(mode=BondMode.IEEE8023AD).with_defaults()
    assert (b.resend_igmp, b.lp_interval, b.packets_per_slave, b.num_peer_notif) == (1, 1, 1, 1)
    assert (b.tlb_logical_lb, b.ad_actor_sys_prio) == (1, 65535)
    b = BondMasterSpec(mode=BondMode.BALANCE_TLB, resend_igmp=5).with_defaults()
    assert (b.resend_igmp, b.tlb_logical_lb, b.ad_actor_sys_prio) == (5, 0, 0)


def test_wireguard_matching_and_merge() -> None:
    peer = WireguardPeer.model_validate(WG_PEER)
    want = WireguardSpec(private_key="k", listen_port=0, peers=[peer.model_copy(update={"endpoint": ""})])
    have = WireguardSpec(
        private_key="k",
        listen_port=51820,
        peers=[peer.model_copy(update={"allowed_ips": list(reversed(peer.allowed_ips))})],
    )
    assert want.matches(have)
    assert not want.model_copy(update={"listen_port": 1}).matches(have)
    assert not want.model_copy(update={"firewall_mark": 1}).matches(have)
    assert not WireguardSpec(private_key="k", peers=[peer]).matches(have.model_copy(update={"peers": []}))
    other = WireguardPeer(public_key="other")
    merged = WireguardSpec(private_key="a", listen_port=1, peers=[peer]).merged(
        WireguardSpec(listen_port=2, peers=[peer, other])
    )
    assert (merged.private_key, merged.listen_port, [p.public_key for p in merged.peers]) == (
        "a",
        2,
        ["peerPublicKey=", "other"],
    )
    assert WireguardSpec().merged(WireguardSpec(listen_port=3)).listen_port == 3
    assert WireguardSpec(listen_port=3).merged(WireguardSpec()).listen_port == 3


def test_link_status_physical() -> None:
    assert LinkStatus(type=LinkType.ETHER).physical()
    assert not LinkStatus(type=LinkType.ETHER, kind="bond").physical()
    assert not LinkStatus(type=LinkType.LOOPBACK).physical()
    s = LinkStatus(operational_state="lowerLayerDown", flags=LinkFlags.UP | LinkFlags.LOWER_UP)
    assert s.operational_state is OperationalState.LOWER_LAYER_DOWN
    assert spec_dict(s)["flags"] == "UP,LOWER_UP"


def test_hostname_fqdn() -> None:
    assert parse_fqdn("talos-1.example.com") == ("talos-1", "example.com")
    assert HostnameSpec.from_fqdn("node").fqdn() == "node"
    assert HostnameStatus(hostname="a", domainname="b.c").fqdn() == "a.b.c"
    for bad in ("", ".example.com", "a" * 64, "a." + "b" * 252):
        with pytest.raises(ValueError):
            parse_fqdn(bad)


def test_node_address_filter() -> None:
    f = NodeAddressFilter(include_subnets=["10.0.0.0/8"], exclude_subnets=["10.96.0.0/12"])
    got = f.apply([parse_prefix(p) for p in ("10.1.0.1/16", "10.96.0.1/12", "192.168.1.1/24", "fd00::1/64")])
    assert [str(p) for p in got] == ["10.1.0.1/16"]
    assert NodeAddressFilter(exclude_subnets=["fd00::/8"]).accepts(ipaddress.ip_address("10.0.0.1"))
    assert NodeAddress(addresses=["172.20.0.2/24"]).ips() == [ipaddress.ip_address("172.20.0.2")]


def test_operator_equality_ignores_layer() -> None:
    a = OperatorSpec(link_name="eth0", layer=ConfigLayer.DEFAULT)
    assert a.same_operator(a.model_copy(update={"layer": ConfigLayer.CONFIGURATION}))
    assert not a.same_operator(a.model_copy(update={"require_up": True}))
    assert a.id() == "dhcp4/eth0"
    assert ProbeSpec.model_validate({"tcp": {"endpoint": "h:80"}}).id() == "tcp:h:80"


def test_address_lifetimes() -> None:
    now = dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.UTC)
    a = AddressSpec(valid_until="2026-11-25T04:00:00Z", preferred_until=now - dt.timedelta(minutes=1))
    assert a.lifetimes(now) == (3600, 0)
    assert AddressSpec().lifetimes(now) == (None, None)
    # non-UTC input is normalised to UTC, to the second
    b = AddressSpec(valid_until="2026-11-25T05:00:00.7+01:00")
    assert spec_dict(b)["validUntil"] == "2026-11-25T04:00:00Z"
    with pytest.raises(ValidationError):
        AddressSpec(valid_until="2026-11-25T04:00:00")  # no zone


def test_etc_file_contents() -> None:
    f = EtcFileSpec(contents=b"127.0.0.1 localhost\n")
    assert f.contents == b"127.0.0.1 localhost\n"
    assert spec_dict(f) == {"contents": "127.0.0.1 localhost\n", "mode": 0o644}


# ---- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0s", dt.timedelta(0)),
        ("25s", dt.timedelta(seconds=25)),
        ("1m30s", dt.timedelta(seconds=90)),
        ("1h0m0s", dt.timedelta(hours=1)),
        ("26h3m4s", dt.timedelta(hours=26, minutes=3, seconds=4)),
        ("1.5s", dt.timedelta(seconds=1.5)),
        ("500ms", dt.timedelta(milliseconds=500)),
        ("1.5ms", dt.timedelta(microseconds=1500)),
        ("1µs", dt.timedelta(microseconds=1)),
        ("-2s", dt.timedelta(seconds=-2)),
    ],
)
def test_go_durations(text: str, value: dt.timedelta) -> None:
    assert format_go_duration(value) == text
    assert parse_go_duration(text) == value


def test_go_duration_parse_forms() -> None:
    assert parse_go_duration("0") == dt.timedelta(0)
    assert parse_go_duration("1h30m") == dt.timedelta(minutes=90)
    assert parse_go_duration("2us") == dt.timedelta(microseconds=2)
    assert parse_go_duration(".5s") == dt.timedelta(milliseconds=500)
    for bad in ("", "1", "s", "1x", "1.s.", "--1s"):
        with pytest.raises(ValueError):
            parse_go_duration(bad)


@given(st.integers(-(10**15), 10**15))
def test_go_duration_round_trip(us: int) -> None:
    d = dt.timedelta(microseconds=us)
    assert parse_go_duration(format_go_duration(d)) == d


# ---- hypothesis round trips ---------------------------------------------------------------------

v4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
v6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)
addrs = v4 | v6
prefixes = st.one_of(
    st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)).map(ipaddress.IPv4Interface),
    st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 128)).map(ipaddress.IPv6Interface),
)
u32 = st.integers(0, 2**32 - 1)
names = st.text("abcdefghijklmnopqrstuvwxyz0123456789.-_", max_size=15)


@given(
    st.builds(
        AddressSpec,
        address=st.none() | prefixes,
        link_name=names,
        family=st.sampled_from(list(Family)) | st.integers(0, 255),
        scope=st.sampled_from(list(Scope)) | st.integers(0, 255),
        flags=st.integers(0, 0xFFF),
        announce_with_arp=st.booleans(),
        layer=st.sampled_from(list(ConfigLayer)),
        valid_until=st.none() | st.datetimes(timezones=st.just(dt.UTC)),
    )
)
def test_address_spec_round_trip(spec: AddressSpec) -> None:
    out = spec_dict(spec)
    assert AddressSpec.model_validate_json(json.dumps(out)) == spec
    assert ("announceWithARP" in out) == spec.announce_with_arp
    assert out["address"] == ("" if spec.address is None else out["address"])


@given(
    st.builds(
        RouteSpec,
        family=st.sampled_from(list(Family)),
        dst=st.none() | prefixes,
        src=st.none() | addrs,
        gateway=st.none() | addrs,
        out_link_name=names,
        table=st.sampled_from(list(RoutingTable)) | st.integers(0, 2**32 - 1),
        priority=u32,
        scope=st.sampled_from(list(Scope)),
        flags=st.integers(0, 0xFF).map(lambda x: x << 8),  # known bits only: others are not named
        protocol=st.integers(0, 255),
        type=st.integers(0, 11),
        layer=st.sampled_from(list(ConfigLayer)),
        mtu=u32,
    )
)
def test_route_spec_round_trip(spec: RouteSpec) -> None:
    out = spec_dict(spec)
    back = RouteSpec.model_validate_json(json.dumps(out))
    assert back == spec
    assert back.id() == spec.id()
    assert ("priority" in out) == (spec.priority != 0)


@given(
    st.builds(
        AddressStatus,
        address=st.none() | prefixes,
        local=st.none() | addrs,
        broadcast=st.none() | addrs,
        link_index=u32,
        link_name=names,
        family=st.sampled_from(list(Family)),
        flags=st.integers(0, 0xFFF).map(AddressFlags),
    ),
    st.builds(
        LinkSpec,
        name=names,
        vlan=st.builds(
            VLANSpec, vlan_id=st.integers(0, 4094), vlan_protocol=st.sampled_from([0x8100, 0x88A8])
        ),
        wireguard=st.builds(
            WireguardSpec,
            private_key=st.text(max_size=3),
            peers=st.lists(
                st.builds(
                    WireguardPeer,
                    public_key=st.text(max_size=3),
                    persistent_keepalive_interval=st.timedeltas(
                        min_value=dt.timedelta(0), max_value=dt.timedelta(days=2)
                    ),
                    allowed_ips=st.lists(prefixes, max_size=3),
                ),
                max_size=2,
            ),
        ),
    ),
)
def test_status_and_link_round_trip(status: AddressStatus, link: LinkSpec) -> None:
    for spec in (status, link):
        assert type(spec).model_validate_json(json.dumps(spec_dict(spec))) == spec


# ---- definitions ----------------------------------------------------------------------------

TYPES = {
    "AddressSpecs.net.talos.dev": ("AddressSpec", NETWORK, (), False, ()),
    "AddressStatuses.net.talos.dev": (
        "AddressStatus",
        NETWORK,
        ("address", "addresses"),
        False,
        (("ADDRESS", "{.address}"), ("LINK", "{.linkName}")),
    ),
    "LinkSpecs.net.talos.dev": ("LinkSpec", NETWORK, (), True, ()),
    "LinkStatuses.net.talos.dev": (
        "LinkStatus",
        NETWORK,
        ("link", "links"),
        False,
        (
            ("TYPE", "{.type}"),
            ("KIND", "{.kind}"),
            ("HW ADDR", "{.hardwareAddr}"),
            ("OPER STATE", "{.operationalState}"),
            ("LINK STATE", "{.linkState}"),
        ),
    ),
    "RouteSpecs.net.talos.dev": ("RouteSpec", NETWORK, (), False, ()),
    "RouteStatuses.net.talos.dev": (
        "RouteStatus",
        NETWORK,
        ("route", "routes"),
        False,
        (
            ("DESTINATION", "{.dst}"),
            ("GATEWAY", "{.gateway}"),
            ("LINK", "{.outLinkName}"),
            ("METRIC", "{.priority}"),
        ),
    ),
    "RoutingRuleSpecs.net.talos.dev": (
        "RoutingRuleSpec",
        NETWORK,
        ("routingrulespec", "routingrulespecs", "rulespec", "rulespecs"),
        False,
        (
            ("PRIORITY", "{.priority}"),
            ("SRC", "{.src}"),
            ("DST", "{.dst}"),
            ("TABLE", "{.table}"),
            ("ACTION", "{.action}"),
        ),
    ),
    "RoutingRuleStatuses.net.talos.dev": (
        "RoutingRuleStatus",
        NETWORK,
        ("routingrule", "routingrules", "routingrulestatus", "routingrulestatuses", "rule", "rules"),
        False,
        (
            ("PRIORITY", "{.priority}"),
            ("SRC", "{.src}"),
            ("DST", "{.dst}"),
            ("TABLE", "{.table}"),
            ("ACTION", "{.action}"),
        ),
    ),
    "HostnameSpecs.net.talos.dev": ("HostnameSpec", NETWORK, (), False, ()),
    "HostnameStatuses.net.talos.dev": (
        "HostnameStatus",
        NETWORK,
        ("hostname",),
        False,
        (("HOSTNAME", "{.hostname}"), ("DOMAINNAME", "{.domainname}")),
    ),
    "ResolverSpecs.net.talos.dev": ("ResolverSpec", NETWORK, (), False, ()),
    "ResolverStatuses.net.talos.dev": (
        "ResolverStatus",
        NETWORK,
        ("resolvers",),
        False,
        (("RESOLVERS", "{.dnsServers}"),),
    ),
    "TimeServerSpecs.net.talos.dev": ("TimeServerSpec", NETWORK, (), False, ()),
    "TimeServerStatuses.net.talos.dev": (
        "TimeServerStatus",
        NETWORK,
        ("timeserver", "timeservers"),
        False,
        (("TIMESERVERS", "{.timeServers}"),),
    ),
    "OperatorSpecs.net.talos.dev": ("OperatorSpec", NETWORK, ("os",), True, ()),
    "OperatorStatuses.net.talos.dev": (
        "OperatorStatus",
        NETWORK,
        ("operatorstatuses", "operators"),
        False,
        (
            ("STATE", "{.state}"),
            ("ADDRESS", "{.address}"),
            ("SERVER", "{.server}"),
            ("EXPIRES", "{.expiresAt}"),
            ("HOLDER", "{.holder}"),
        ),
    ),
    "NodeAddresses.net.talos.dev": ("NodeAddress", NETWORK, (), False, (("ADDRESSES", "{.addresses}"),)),
    "NodeAddressFilters.net.talos.dev": (
        "NodeAddressFilter",
        NETWORK,
        (),
        False,
        (("INCLUDE SUBNETS", "{.includeSubnets}"), ("EXCLUDE SUBNETS", "{.excludeSubnets}")),
    ),
    "NetworkStatuses.net.talos.dev": (
        "NetworkStatus",
        NETWORK,
        ("netstatus", "netstatuses"),
        False,
        (
            ("ADDRESS", "{.addressReady}"),
            ("CONNECTIVITY", "{.connectivityReady}"),
            ("HOSTNAME", "{.hostnameReady}"),
            ("ETC", "{.etcFilesReady}"),
        ),
    ),
    "DeviceConfigSpecs.net.talos.dev": ("DeviceConfigSpec", NETWORK, (), True, ()),
    "HardwareAddresses.net.talos.dev": ("HardwareAddress", NETWORK, (), False, ()),
    "NfTablesChains.net.talos.dev": (
        "NfTablesChain",
        NETWORK,
        ("chain", "chains"),
        False,
        (("TYPE", "{.type}"), ("HOOK", "{.hook}"), ("PRIORITY", "{.priority}"), ("POLICY", "{.policy}")),
    ),
    "ProbeSpecs.net.talos.dev": ("ProbeSpec", NETWORK, (), False, ()),
    "ProbeStatuses.net.talos.dev": (
        "ProbeStatus",
        NETWORK,
        ("probe", "probes"),
        False,
        (("SUCCESS", "{.success}"),),
    ),
    "LinkRefreshes.net.talos.dev": ("LinkRefresh", NETWORK, (), False, ()),
    "EtcFileSpecs.files.talos.dev": ("EtcFileSpec", FILES, (), False, ()),
    "EtcFileStatuses.files.talos.dev": ("EtcFileStatus", FILES, (), False, ()),
    "DevicesStatuses.runtime.talos.dev": ("DevicesStatus", RUNTIME, (), False, (("Ready", "{.ready}"),)),
    "Identities.cluster.talos.dev": ("Identity", CLUSTER, (), False, (("ID", "{.nodeId}"),)),
}


def test_definitions_match_the_summary_table() -> None:
    got = {
        d.type: (d.display_type, d.default_namespace, d.aliases, d.sensitive, d.print_columns)
        for d in ALL_DEFINITIONS
    }
    assert got == TYPES
    assert list(got) == list(TYPES)  # §2.1 order
    assert definition_for(AddressStatus).type == "AddressStatuses.net.talos.dev"


@pytest.fixture
def state() -> State:
    s = State()
    register_all(s)
    return s


@pytest.mark.parametrize(
    ("word", "type_"),
    [
        ("addresses", "AddressStatuses.net.talos.dev"),
        ("address", "AddressStatuses.net.talos.dev"),
        ("AddressStatus", "AddressStatuses.net.talos.dev"),
        ("addressstatuses.net.talos", "AddressStatuses.net.talos.dev"),
        ("addressspecs", "AddressSpecs.net.talos.dev"),
        ("links", "LinkStatuses.net.talos.dev"),
        ("routes", "RouteStatuses.net.talos.dev"),
        ("routingrules", "RoutingRuleStatuses.net.talos.dev"),
        ("rules", "RoutingRuleStatuses.net.talos.dev"),
        ("routingrulespecs", "RoutingRuleSpecs.net.talos.dev"),
        ("rulespecs", "RoutingRuleSpecs.net.talos.dev"),
        ("netstatus", "NetworkStatuses.net.talos.dev"),
        ("networkstatus", "NetworkStatuses.net.talos.dev"),
        ("chains", "NfTablesChains.net.talos.dev"),
        ("nftableschains", "NfTablesChains.net.talos.dev"),
        ("ntc", "NfTablesChains.net.talos.dev"),
        ("na", "NodeAddresses.net.talos.dev"),
        ("nas", "NodeAddresses.net.talos.dev"),
        ("naf", "NodeAddressFilters.net.talos.dev"),
        ("nodeaddresses", "NodeAddresses.net.talos.dev"),
        ("hostname", "HostnameStatuses.net.talos.dev"),
        ("resolvers", "ResolverStatuses.net.talos.dev"),
        ("timeservers", "TimeServerStatuses.net.talos.dev"),
        ("operatorspecs", "OperatorSpecs.net.talos.dev"),
        ("os", "OperatorSpecs.net.talos.dev"),
        ("operators", "OperatorStatuses.net.talos.dev"),
        ("dcs", "DeviceConfigSpecs.net.talos.dev"),
        ("ha", "HardwareAddresses.net.talos.dev"),
        ("hardwareaddress", "HardwareAddresses.net.talos.dev"),
        ("lr", "LinkRefreshes.net.talos.dev"),
        ("probes", "ProbeStatuses.net.talos.dev"),
        ("identities", "Identities.cluster.talos.dev"),
        ("devicesstatus", "DevicesStatuses.runtime.talos.dev"),
        ("etcfilespecs", "EtcFileSpecs.files.talos.dev"),
        ("ns", "Namespaces.meta.cosi.dev"),  # a name beats NetworkStatuses' initials
    ],
)
def test_alias_resolution(state: State, word: str, type_: str) -> None:
    assert state.registry.resolve(word).type == type_


@pytest.mark.parametrize("word", ["as", "rs", "ls", "hs", "tss", "ps", "efs"])
def test_shared_initials_are_ambiguous(state: State, word: str) -> None:
    with pytest.raises(AmbiguousTypeError):
        state.registry.resolve(word)


def test_register_all_adds_namespaces_and_definitions(state: State) -> None:
    ns = {r.id for r in state.list("meta", "Namespaces.meta.cosi.dev")}
    assert {NETWORK, NETWORK_CONFIG, FILES, RUNTIME, CLUSTER, CONFIG} <= ns
    rds = {r.id for r in state.list("meta", "ResourceDefinitions.meta.cosi.dev")}
    assert {d.id for d in ALL_DEFINITIONS} <= rds
    rd = state.must_get("meta", "ResourceDefinitions.meta.cosi.dev", "linkspecs.net.talos.dev")
    assert spec_dict(rd.spec)["sensitivity"] == 1
    register_all(State())  # a fresh state works too


def test_resources_store_in_state(state: State) -> None:
    spec = AddressStatus(
        address="172.20.0.2/24", link_index=4, link_name="eth0", family="inet4", flags="permanent"
    )
    r = state.put(
        NETWORK, "AddressStatuses.net.talos.dev", spec.id(), spec, owner="network.AddressStatusController"
    )
    assert r.id == "eth0/172.20.0.2/24"
    again = state.put(
        NETWORK,
        "AddressStatuses.net.talos.dev",
        spec.id(),
        spec.model_copy(),
        owner="network.AddressStatusController",
    )
    assert again.md.version == 1  # equal spec: no write


def test_configured_address() -> None:
    a = AddressSpec.configured(parse_prefix("fd00::2/64"), "eth0", ConfigLayer.CONFIGURATION)
    assert spec_dict(a) == {
        "address": "fd00::2/64",
        "linkName": "eth0",
        "family": "inet6",
        "scope": "global",
        "flags": "permanent",
        "layer": "configuration",
    }
    assert AddressSpec.configured(
        parse_prefix("10.5.0.100/32"), "eth0", ConfigLayer.OPERATOR, announce_with_arp=True
    )
    assert a.id() == "eth0/fd00::2/64"


def test_config_route_family_and_type() -> None:
    from netd.netip import parse_addr
    from netd.resources.enums import RouteType
    from netd.resources.route import config_route_family, config_route_type

    assert config_route_family(None, parse_addr("fe80::1")) is Family.INET6
    assert config_route_family(parse_prefix("fd00::/8"), None) is Family.INET6
    assert config_route_family(None, None) is Family.INET4  # ::/0 normalized away: v1.6.8 quirk
    assert config_route_family(parse_prefix("10.0.0.0/8"), parse_addr("10.0.0.1")) is Family.INET4
    assert config_route_type(parse_prefix("224.0.0.0/4")) is RouteType.MULTICAST
    assert config_route_type(None) is RouteType.UNICAST


def test_link_spec_merge() -> None:
    low = LinkSpec(
        name="eth0", up=True, mtu=1500, master_name="bond0", slave_index=1, layer=ConfigLayer.DEFAULT
    )
    high = LinkSpec(name="eth0", up=False, mtu=0, kind="", vlan=VLANSpec(vlan_id=5, vlan_protocol=0x8100),
                    layer=ConfigLayer.CONFIGURATION)  # fmt: skip
    m = low.merged(high)
    assert (m.up, m.mtu, m.master_name, m.slave_index) == (True, 1500, "bond0", 1)  # zero can't undo
    assert m.vlan.vlan_id == 5 and m.layer is ConfigLayer.CONFIGURATION
    m2 = m.merged(LinkSpec(name="eth0", master_name="bond1", layer=ConfigLayer.CONFIGURATION))
    assert (m2.master_name, m2.slave_index) == ("bond1", 0)  # the bond-slave pair is one unit


def test_format_hardware_addr() -> None:
    from netd.resources.link import format_hardware_addr

    assert format_hardware_addr(bytes.fromhex("525400ABCDEF")) == "52:54:00:ab:cd:ef"
    assert format_hardware_addr(b"") == ""
