"""The config sources, device expansion and merges run together (netd.plan) over a stated link set."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cosi.resource import spec_dict
from netd.config import load_config, load_config_file
from netd.config.loader import LoadedConfig
from netd.plan import PlanResult, plan
from netd.resources.address import AddressStatus
from netd.resources.enums import LinkType, OperationalState, Scope
from netd.resources.link import LinkStatus

DATA = Path(__file__).resolve().parents[1] / "data"


def eth(index: int, mac: str, driver: str = "") -> LinkStatus:
    return LinkStatus(
        index=index,
        type=LinkType.ETHER,
        hardware_addr=mac,
        driver=driver,
        operational_state=OperationalState.UP,
        link_state=True,
    )


A20_LINKS = {
    "lo": LinkStatus(index=1, type=LinkType.LOOPBACK),
    "enp1s0": eth(2, "52:54:00:00:00:01"),
    "enp2s0": eth(3, "52:54:00:00:00:02"),
    "enp3s0": eth(4, "52:54:00:00:00:03"),
    "eth9": eth(5, "52:54:00:00:00:09"),
    "ens5": eth(6, "52:54:00:12:34:56", "virtio_net"),  # matches the selector
    "ens6": eth(7, "52:54:00:12:34:57", "virtio_net"),  # matches the selector
    "ens7": eth(8, "52:54:00:12:34:58", "e1000"),  # MAC matches, driver does not
    "eth0": eth(9, "aa:00:00:00:00:00"),  # unconfigured: default up + DHCP
}


def run_plan(
    loaded: LoadedConfig,
    ns: str = "network",
    cmdline: str = "",
    platform: str | None = None,
    links: dict[str, LinkStatus] | None = None,
    addresses: list[AddressStatus] | None = None,
) -> PlanResult:
    return asyncio.run(plan(loaded, cmdline, platform, ns, kernel=(links or A20_LINKS, addresses or [])))


def by_type(result: PlanResult) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in result.resources():
        out.setdefault(r.md.type.split(".")[0], {})[r.id] = spec_dict(r.spec)
    return out


def test_complete_example_gives_the_documented_specs() -> None:
    got = by_type(run_plan(load_config_file(DATA / "config-a20.yaml")))
    links = got["LinkSpecs"]
    assert set(links) == {
        "bond0",
        "bond0.100",
        "bond0.200",
        "br0",
        "dummy0",
        "enp1s0",
        "enp2s0",
        "enp3s0",
        "ens5",
        "ens6",
        "ens7",
        "eth0",
        "lo",
        "wg0",
    }
    bond = links["bond0"]
    assert (bond["logical"], bond["up"], bond["kind"], bond["type"], bond["mtu"]) == (
        True,
        True,
        "bond",
        "ether",
        9000,
    )
    assert bond["bondMaster"] == {
        "mode": "802.3ad",
        "xmitHashPolicy": "layer3+4",
        "lacpRate": "fast",
        "arpValidate": "none",
        "arpAllTargets": "any",
        "primaryReselect": "always",
        "failOverMac": 0,
        "miimon": 100,
        "updelay": 200,
        "downdelay": 200,
        "resendIgmp": 1,
        "lpInterval": 1,
        "packetsPerSlave": 1,
        "numPeerNotif": 1,
        "tlbLogicalLb": 1,
        "useCarrier": True,
        "adActorSysPrio": 65535,
    }
    assert links["enp1s0"]["masterName"] == "bond0" and "slaveIndex" not in links["enp1s0"]
    assert (links["enp2s0"]["masterName"], links["enp2s0"]["slaveIndex"]) == ("bond0", 1)
    for vid, mtu in ((100, 1500), (200, 0)):
        v = links[f"bond0.{vid}"]
        assert (v["kind"], v["parentName"], v["vlan"], v["mtu"]) == (
            "vlan",
            "bond0",
            {"vlanID": vid, "vlanProtocol": "802.1q"},
            mtu,
        )
    assert (links["dummy0"]["kind"], links["dummy0"]["type"]) == ("dummy", "ether")
    assert (links["wg0"]["kind"], links["wg0"]["type"], links["wg0"]["mtu"]) == ("wireguard", "nohdr", 1420)
    assert links["wg0"]["wireguard"]["peers"][0]["persistentKeepaliveInterval"] == "25s"
    assert links["br0"]["kind"] == "bridge" and "bridgeMaster" not in links["br0"]  # stp disabled = zero
    assert links["enp3s0"]["bridgeSlave"] == {"masterName": "br0"}
    assert links["ens5"]["layer"] == "configuration" and links["eth0"]["layer"] == "default"
    assert "eth9" not in links

    assert set(got["AddressSpecs"]) == {
        "bond0/10.0.0.11/24",
        "bond0.100/192.168.100.11/24",
        "dummy0/169.254.10.1/32",
        "wg0/10.200.0.1/24",
        "lo/127.0.0.1/8",
    }
    assert got["AddressSpecs"]["lo/127.0.0.1/8"]["scope"] == "host"
    routes = got["RouteSpecs"]
    assert set(routes) == {
        "inet4/10.0.0.1//1024",
        "inet4/10.0.0.254/172.16.0.0/12/2048",
        "inet4/192.168.100.1/192.168.200.0/24/1024",
    }
    assert all(
        (r["table"], r["protocol"], r["scope"]) == ("main", "static", "global") for r in routes.values()
    )
    assert routes["inet4/192.168.100.1/192.168.200.0/24/1024"]["outLinkName"] == "bond0.100"

    ops = got["OperatorSpecs"]
    assert set(ops) == {
        "dhcp4/bond0.200",
        "dhcp6/bond0.200",
        "dhcp4/ens5",
        "dhcp4/ens6",
        "dhcp4/br0",
        "vip/bond0",
        "dhcp4/ens7",
        "dhcp4/eth0",
    }
    assert ops["dhcp4/bond0.200"]["dhcp4"]["routeMetric"] == 2048
    assert ops["dhcp6/bond0.200"]["dhcp6"]["routeMetric"] == 2048
    assert ops["dhcp4/ens5"]["dhcp4"]["routeMetric"] == 512
    assert ops["dhcp4/br0"]["dhcp4"]["routeMetric"] == 1024
    assert ops["vip/bond0"]["vip"] == {"ip": "10.0.0.10", "gratuitousARP": True}
    assert ops["dhcp4/eth0"]["layer"] == "default"

    assert got["HostnameSpecs"]["hostname"] == {
        "hostname": "cp1",
        "domainname": "example.org",
        "layer": "configuration",
    }
    assert got["ResolverSpecs"]["resolvers"]["dnsServers"] == ["10.0.0.53", "1.1.1.1"]
    assert got["TimeServerSpecs"]["timeservers"]["timeServers"] == ["time.cloudflare.com"]
    assert set(got["DeviceConfigSpecs"]) == {
        "bond0/000",
        "ens5/001/000",
        "ens6/001/001",
        "eth9/002",
        "dummy0/003",
        "wg0/004",
        "br0/005",
    }


def test_no_config_means_dhcp_on_every_physical_link() -> None:
    got = by_type(run_plan(LoadedConfig()))
    physical = {n for n, s in A20_LINKS.items() if s.physical()}
    assert set(got["OperatorSpecs"]) == {f"dhcp4/{n}" for n in physical}
    assert set(got["LinkSpecs"]) == physical | {"lo"}
    assert "HostnameSpecs" not in got  # the default hostname needs a machine config
    assert got["ResolverSpecs"]["resolvers"]["dnsServers"] == ["1.1.1.1", "8.8.8.8"]
    assert got["TimeServerSpecs"]["timeservers"]["timeServers"] == ["pool.ntp.org"]


def test_default_hostname_from_the_default_address() -> None:
    cfg = load_config("version: v1alpha1\nmachine:\n  type: worker\n")
    addrs = [
        AddressStatus(address="172.20.0.2/24", link_name="eth0", link_index=9, scope=Scope.GLOBAL, family=2),
        AddressStatus(address="10.9.0.1/8", link_name="enp1s0", link_index=2, scope=Scope.GLOBAL, family=2),
    ]
    got = by_type(run_plan(cfg, ns="network-config", addresses=addrs))
    # the alphabetically smallest link name wins: enp1s0
    assert got["HostnameSpecs"]["default/hostname"]["hostname"] == "talos-10-9-0-1"


def test_layers_cmdline_platform_configuration(tmp_path: Path) -> None:
    platform = tmp_path / "platform.yaml"
    platform.write_text(
        "hostnames:\n  - {hostname: plat, domainname: p.example}\n"
        "resolvers:\n  - dnsServers: [9.9.9.9]\n"
        "addresses:\n  - {address: 192.0.2.10/24, linkName: eth0, family: inet4, scope: global,"
        " flags: permanent, unknownKey: ignored}\n"
        "links:\n  - {name: eth0, up: true, mtu: 1400}\n"
    )
    cfg = load_config(
        "version: v1alpha1\nmachine:\n  type: worker\n  network:\n    nameservers: [10.0.0.53]\n"
    )
    cmdline = "ip=172.20.0.2::172.20.0.1:255.255.255.0:cmdhost:eth0:::: talos.hostname=boot.example"
    layered = by_type(run_plan(cfg, "network-config", cmdline, str(platform)))
    hostnames = layered["HostnameSpecs"]
    assert set(hostnames) == {"default/hostname", "cmdline/hostname", "platform/hostname"}
    assert hostnames["default/hostname"]["hostname"] == ""  # no node address yet: empty, ignored by merge
    assert set(layered["ResolverSpecs"]) == {
        "default/resolvers",
        "platform/resolvers",
        "configuration/resolvers",
    }
    assert "platform/eth0/192.0.2.10/24" in layered["AddressSpecs"]
    assert "cmdline/eth0/172.20.0.2/24" in layered["AddressSpecs"]
    merged = by_type(run_plan(cfg, "network", cmdline, str(platform)))
    assert merged["HostnameSpecs"]["hostname"]["hostname"] == "plat"  # platform > cmdline
    assert merged["ResolverSpecs"]["resolvers"]["dnsServers"] == ["10.0.0.53"]  # configuration > platform
    eth0 = merged["LinkSpecs"]["eth0"]
    assert (eth0["mtu"], eth0["up"], eth0["layer"]) == (1400, True, "platform")  # fields folded across layers
    assert {"eth0/192.0.2.10/24", "eth0/172.20.0.2/24"} <= set(merged["AddressSpecs"])
    # eth0 is configured by cmdline and platform: no default DHCP on it
    assert "dhcp4/eth0" not in merged["OperatorSpecs"]


def test_cmdline_error_drops_cmdline_specs_but_keeps_partial_dhcp(caplog: pytest.LogCaptureFixture) -> None:
    cmdline = "ip=enp1s0:dhcp talos.network.interface.ignore=eth0 ip=bogus::"
    layered = by_type(run_plan(LoadedConfig(), "network-config", cmdline))
    assert "cmdline address parse failure" in caplog.text
    cmd = {t: [i for i in ids if i.startswith("cmdline/")] for t, ids in layered.items()}
    assert cmd["OperatorSpecs"] == ["cmdline/dhcp4/enp1s0"]
    assert all(not v for t, v in cmd.items() if t != "OperatorSpecs")
    assert "default/dhcp4/eth0" not in layered["OperatorSpecs"]  # the ignore list still counts for DHCP
    assert "default/dhcp4/enp2s0" in layered["OperatorSpecs"]


def test_broken_platform_file_contributes_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    platform = tmp_path / "platform.yaml"
    platform.write_text("addresses:\n  - {address: not-an-ip, linkName: eth0}\n")
    layered = by_type(run_plan(LoadedConfig(), "network-config", platform=str(platform)))
    assert not any(i.startswith("platform/") for ids in layered.values() for i in ids)
    assert "platform network config ignored: addresses[0]" in caplog.text


def test_plan_shows_routing_rule_specs() -> None:
    from netd.plan import planned
    from netd.resources.routing_rule import ROUTING_RULE_SPEC_DEFINITION, ROUTING_RULE_STATUS_DEFINITION

    assert planned(ROUTING_RULE_SPEC_DEFINITION) and not planned(ROUTING_RULE_STATUS_DEFINITION)
    cfg = load_config('apiVersion: v1alpha1\nkind: RoutingRuleConfig\nname: "100"\ntable: main\n')
    got = by_type(run_plan(cfg))
    assert set(got["RoutingRuleSpecs"]) == {"inet4/00100", "inet6/00100"}
