"""RoutingRuleConfig and LinkConfig (routing-rules.md §1, §2, §5): loading, every
validation rule with a rejected example, specs, ids, merge, and LinkConfig ≡ interfaces[]."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import pytest

from cosi.resource import spec_dict
from netd.config import ConfigError, load_config
from netd.config.loader import LoadedConfig
from netd.controllers.merge import merge_routing_rules
from netd.controllers.routing_rule import config_rule, config_rules, rule_families
from netd.controllers.sources import layered
from netd.plan import PlanResult, plan
from netd.resources.enums import ConfigLayer, Family, LinkType, RoutingRuleAction, RoutingTable
from netd.resources.link import LinkStatus
from netd.resources.machine_config import MachineConfigSpec
from netd.resources.routing_rule import RoutingRuleSpec

RULE = "apiVersion: v1alpha1\nkind: RoutingRuleConfig\n"
LINK = "apiVersion: v1alpha1\nkind: LinkConfig\n"
V1 = "version: v1alpha1\nmachine:\n  type: worker\n"


def rule(body: str) -> str:
    return RULE + body


def errors_of(*docs: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config("---\n".join(docs))
    return [str(p) for p in info.value.errors]


def rule_errors(body: str) -> list[str]:
    return errors_of(rule(body))


# ------------------------------------------------------------------------------------ loading


def test_a_full_rule_loads_with_yaml_ints_and_hex() -> None:
    loaded = load_config(
        rule(
            "name: 1000\nsrc: 10.0.0.0/8\ndst: 192.168.0.0/16\ntable: 100\naction: unicast\n"
            "iifName: eth0\noifName: eth1\nfwMark: 0x100\nfwMask: 0xff00\n"
        )
    )
    (r,) = loaded.routing_rules
    assert (r.name, r.priority, r.table, r.fw_mark, r.fw_mask) == ("1000", 1000, "100", 0x100, 0xFF00)
    assert (r.src, r.dst, r.iif_name, r.oif_name, r.action) == (
        "10.0.0.0/8",
        "192.168.0.0/16",
        "eth0",
        "eth1",
        "unicast",
    )
    assert loaded.config is None and not loaded.empty


def test_rules_and_links_reach_the_machine_config_resource() -> None:
    loaded = load_config(
        V1 + "---\n" + rule('name: "1000"\ntable: main\n') + "---\n" + LINK + "name: eth1\nmtu: 9000\n"
    )
    mc = MachineConfigSpec.from_loaded(loaded)
    assert [r.name for r in mc.routing_rules] == ["1000"]
    assert [lc.name for lc in mc.link_configs] == ["eth1"]
    assert mc.config is loaded.config


def test_non_unicast_needs_no_table() -> None:
    for action in ("blackhole", "unreachable", "prohibit"):
        (r,) = load_config(rule(f'name: "5"\naction: {action}\n')).routing_rules
        assert r.action == action


# --------------------------------------------------------------- §1: every rule has a rejected example


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("table: main\n", 'RoutingRuleConfig/: name: name is required: the rule priority, e.g. "1000"'),
        (
            "name: web\ntable: main\n",
            'RoutingRuleConfig/web: name: invalid rule priority "web": must be a decimal number 1-32765',
        ),
        (
            'name: "-5"\ntable: main\n',
            'RoutingRuleConfig/-5: name: invalid rule priority "-5": must be a decimal number 1-32765',
        ),
        (
            "name: 4294967296\ntable: main\n",
            'RoutingRuleConfig/4294967296: name: invalid rule priority "4294967296": '
            "must be a decimal number 1-32765",
        ),
        (
            "name: 0\ntable: main\n",
            "RoutingRuleConfig/0: name: priority 0 is reserved (the kernel's local table rule)",
        ),
        (
            "name: 32500\ntable: main\n",
            "RoutingRuleConfig/32500: name: priority 32500 is reserved (KubeSpan's rules)",
        ),
        (
            "name: 32766\ntable: main\n",
            "RoutingRuleConfig/32766: name: priority 32766 is reserved (the kernel's main table rule)",
        ),
        (
            "name: 32767\ntable: main\n",
            "RoutingRuleConfig/32767: name: priority 32767 is reserved (the kernel's default table rule)",
        ),
        (
            "name: 40000\ntable: main\n",
            "RoutingRuleConfig/40000: name: priority 40000 is out of range: must be 1-32765",
        ),
        (
            "name: 1\n",
            "RoutingRuleConfig/1: table: table is required for a unicast rule: "
            "main, local, default or a number 1-4294967295",
        ),
        (
            "name: 1\ntable: main2\n",
            'RoutingRuleConfig/1: table: invalid table "main2": must be main, local, default or a number '
            "1-4294967295",
        ),
        (
            "name: 1\ntable: 0\n",
            'RoutingRuleConfig/1: table: invalid table "0": must be main, local, default or a number '
            "1-4294967295",
        ),
        (
            "name: 1\ntable: 4294967296\n",
            'RoutingRuleConfig/1: table: invalid table "4294967296": '
            "must be main, local, default or a number 1-4294967295",
        ),
        (
            "name: 1\ntable: unspec\n",
            'RoutingRuleConfig/1: table: invalid table "unspec": '
            "must be main, local, default or a number 1-4294967295",
        ),
        ("name: 1\ntable: main\nfwMask: 0xff\n", "RoutingRuleConfig/1: fwMask: fwMask needs fwMark"),
        (
            "name: 1\ntable: main\nsrc: 10.0.0.0/33\n",
            'RoutingRuleConfig/1: src: invalid prefix "10.0.0.0/33" (must be a CIDR, e.g. 10.0.0.0/8)',
        ),
        (
            "name: 1\ntable: main\nsrc: 10.0.0.1\n",
            'RoutingRuleConfig/1: src: invalid prefix "10.0.0.1" (must be a CIDR, e.g. 10.0.0.0/8)',
        ),
        (
            "name: 1\ntable: main\ndst: 10.0.0.0/255.0.0.0\n",
            'RoutingRuleConfig/1: dst: invalid prefix "10.0.0.0/255.0.0.0" (must be a CIDR, e.g. 10.0.0.0/8)',
        ),
        (
            "name: 1\ntable: main\nsrc: 10.0.0.0/8\ndst: fd00::/8\n",
            'RoutingRuleConfig/1: dst: "fd00::/8" is IPv6 but src "10.0.0.0/8" is IPv4: a rule has one '
            "family",
        ),
        ("name: 1\ntable: main\ntabel: 5\n", "RoutingRuleConfig/1: tabel: unknown key"),
        (
            "name: 1\ntable: main\naction: drop\n",
            'RoutingRuleConfig/1: action: unknown action "drop" (one of unicast, blackhole, unreachable, '
            "prohibit)",
        ),
        (
            "name: 1\ntable: main\nfwMark: -1\n",
            "RoutingRuleConfig/1: fwMark: must be between 0 and 4294967295",
        ),
        (
            "name: 1\ntable: main\nfwMark: 0x100000000\n",
            "RoutingRuleConfig/1: fwMark: must be between 0 and 4294967295",
        ),
        ('name: 1\ntable: main\nfwMark: "0x100"\n', "RoutingRuleConfig/1: fwMark: must be an integer"),
        (
            "name: 1\ntable: main\nfwMark: 1\nfwMask: 4294967296\n",
            "RoutingRuleConfig/1: fwMask: must be between 0 and 4294967295",
        ),
        (
            "name: 1\ntable: main\niifName: averyveryverylongname\n",
            'RoutingRuleConfig/1: iifName: invalid interface name "averyveryverylongname": longer than 15 '
            "bytes",
        ),
        (
            "name: 1\ntable: main\noifName: a/b\n",
            'RoutingRuleConfig/1: oifName: invalid interface name "a/b"',
        ),
    ],
)
def test_rejected(body: str, error: str) -> None:
    assert rule_errors(body) == [error]


def test_wrong_api_version() -> None:
    assert errors_of('apiVersion: v1\nkind: RoutingRuleConfig\nname: "1"\ntable: main\n') == [
        'RoutingRuleConfig/1: apiVersion: unknown apiVersion "v1" for kind RoutingRuleConfig (want v1alpha1)'
    ]


def test_names_are_unique_across_documents() -> None:
    assert errors_of(rule('name: "1000"\ntable: main\n'), rule('name: "1000"\ntable: 100\n')) == [
        "RoutingRuleConfig/1000: duplicate document: RoutingRuleConfig/1000"
    ]
    # the same priority spelled two ways is the same rule key
    assert errors_of(rule('name: "1000"\ntable: main\n'), rule('name: "01000"\ntable: 100\n')) == [
        "RoutingRuleConfig/01000: name: priority 1000 is also used by RoutingRuleConfig/1000"
    ]


def test_a_batch_of_bad_documents_reports_every_error() -> None:
    assert errors_of(
        V1 + "  network:\n    interfaces:\n      - interface: eth1\n        addresses: [10.1.0.2/24]\n",
        rule("name: 32766\nsrc: 10.0.0.0/8\ndst: fd00::/8\nfwMask: 1\nbogus: true\n"),
        rule("name: x\ntable: nope\naction: drop\n"),
        rule("name: 7\nfwMark: -1\n"),
        rule("name: 7\ntable: main\n"),
        LINK + "name: eth1\naddresses: [{address: 0.0.0.0/0}]\nroutes: [{gateway: '::', table: x}]\n",
    ) == [
        "RoutingRuleConfig/32766: bogus: unknown key",
        "RoutingRuleConfig/32766: name: priority 32766 is reserved (the kernel's main table rule)",
        "RoutingRuleConfig/32766: table: table is required for a unicast rule: "
        "main, local, default or a number 1-4294967295",
        "RoutingRuleConfig/32766: fwMask: fwMask needs fwMark",
        'RoutingRuleConfig/32766: dst: "fd00::/8" is IPv6 but src "10.0.0.0/8" is IPv4: a rule has one '
        "family",
        'RoutingRuleConfig/x: name: invalid rule priority "x": must be a decimal number 1-32765',
        'RoutingRuleConfig/x: action: unknown action "drop" (one of unicast, blackhole, unreachable, '
        "prohibit)",
        'RoutingRuleConfig/x: table: invalid table "nope": must be main, local, default or a number '
        "1-4294967295",
        "RoutingRuleConfig/7: fwMark: must be between 0 and 4294967295",
        "RoutingRuleConfig/7: table: table is required for a unicast rule: "
        "main, local, default or a number 1-4294967295",
        "RoutingRuleConfig/7: duplicate document: RoutingRuleConfig/7",
        'LinkConfig/eth1: addresses[0].address: address "0.0.0.0/0" is unspecified',
        'LinkConfig/eth1: routes[0].gateway: gateway "::" is unspecified',
        'LinkConfig/eth1: routes[0].table: invalid table "x": must be main, local, default or a number '
        "1-4294967295",
        "LinkConfig/eth1: name: link eth1 is also configured by v1alpha1 machine.network.interfaces[0]: "
        "configure it in one place",
    ]


# --------------------------------------------------------------- §5: LinkConfig validation


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("mtu: 1500\n", "LinkConfig/: name: name is required: the link name, e.g. eth1"),
        (
            "name: a-very-long-link-name\n",
            "LinkConfig/a-very-long-link-name: name: invalid interface name "
            '"a-very-long-link-name": longer than 15 bytes',
        ),
        (
            "name: eth1\naddresses: [{routePriority: 5}]\n",
            "LinkConfig/eth1: addresses[0].address: address is required",
        ),
        (
            "name: eth1\naddresses: [{address: 10.0.0.2}]\n",
            'LinkConfig/eth1: addresses[0].address: invalid address "10.0.0.2" (must be a prefix, e.g. '
            "10.0.0.2/24)",
        ),
        (
            "name: eth1\naddresses: [{address: '::/64'}]\n",
            'LinkConfig/eth1: addresses[0].address: address "::/64" is unspecified',
        ),
        (
            "name: eth1\nroutes: [{destination: 10.0.0.0}]\n",
            'LinkConfig/eth1: routes[0].destination: invalid destination "10.0.0.0" (must be a CIDR)',
        ),
        (
            "name: eth1\nroutes: [{gateway: 0.0.0.0}]\n",
            'LinkConfig/eth1: routes[0].gateway: gateway "0.0.0.0" is unspecified',
        ),
        (
            "name: eth1\nroutes: [{gateway: 10.0.0.256}]\n",
            'LinkConfig/eth1: routes[0].gateway: invalid gateway "10.0.0.256"',
        ),
        (
            "name: eth1\nroutes: [{source: nope}]\n",
            'LinkConfig/eth1: routes[0].source: invalid source "nope"',
        ),
        (
            "name: eth1\nroutes: [{source: '::'}]\n",
            'LinkConfig/eth1: routes[0].source: source "::" is unspecified',
        ),
        (
            "name: eth1\nroutes: [{destination: 10.0.0.0/8, gateway: 'fd00::1'}]\n",
            'LinkConfig/eth1: routes[0].gateway: gateway "fd00::1" is IPv6 but destination "10.0.0.0/8" is '
            "IPv4",
        ),
        (
            "name: eth1\nroutes: [{gateway: 10.0.0.1, table: 0}]\n",
            'LinkConfig/eth1: routes[0].table: invalid table "0": must be main, local, default or a number '
            "1-4294967295",
        ),
        ("name: eth1\nmtu: -1\n", "LinkConfig/eth1: mtu: must be between 0 and 4294967295"),
        ("name: eth1\nup: maybe\n", "LinkConfig/eth1: up: must be a boolean (true/false, yes/no, on/off)"),
        ("name: eth1\nlinkName: x\n", "LinkConfig/eth1: linkName: unknown key"),
        (
            "name: eth1\naddresses: [{address: 10.0.0.2/24, prio: 1}]\n",
            "LinkConfig/eth1: addresses[0].prio: unknown key",
        ),
        ("name: eth1\nroutes: [{network: 10.0.0.0/8}]\n", "LinkConfig/eth1: routes[0].network: unknown key"),
    ],
)
def test_link_config_rejected(body: str, error: str) -> None:
    assert errors_of(LINK + body) == [error]


def test_link_config_names_are_unique_and_not_also_in_interfaces() -> None:
    assert errors_of(LINK + "name: eth1\n", LINK + "name: eth1\nmtu: 9000\n") == [
        "LinkConfig/eth1: duplicate document: LinkConfig/eth1"
    ]
    assert errors_of(
        V1 + "  network:\n    interfaces:\n      - interface: eth0\n      - interface: eth1\n",
        LINK + "name: eth1\n",
    ) == [
        "LinkConfig/eth1: name: link eth1 is also configured by v1alpha1 machine.network.interfaces[1]: "
        "configure it in one place"
    ]


def test_v16_routes_have_no_table() -> None:
    assert errors_of(
        V1 + "  network:\n    interfaces:\n      - interface: eth0\n"
        "        routes: [{network: 10.0.0.0/8, gateway: 10.0.0.1, table: '100'}]\n"
    ) == ["v1alpha1: machine.network.interfaces[0].routes[0].table: unknown key"]


def test_every_link_setting_is_applied_no_warnings() -> None:
    loaded = load_config(
        LINK + "name: eth1\nmulticast: true\naddresses: [{address: 10.0.0.2/24, routePriority: 5}]\n"
    )
    assert [str(w) for w in loaded.warnings] == []


def test_link_config_multicast_is_the_link_spec_flag() -> None:
    on = by_type(run_plan(load_config(LINK + "name: eth1\nmulticast: false\n")))["LinkSpecs"]["eth1"]
    assert on["multicast"] is False
    unset = by_type(run_plan(load_config(LINK + "name: eth1\n")))["LinkSpecs"]["eth1"]
    assert "multicast" not in unset  # None: left as the kernel has it


# --------------------------------------------------------------- §2: specs and ids


def one_rule(body: str) -> Any:
    (r,) = load_config(rule(body)).routing_rules
    return r


def test_families() -> None:
    assert rule_families(one_rule("name: 1\ntable: main\n")) == [Family.INET4, Family.INET6]
    assert rule_families(one_rule("name: 1\ntable: main\nsrc: 10.0.0.0/8\n")) == [Family.INET4]
    assert rule_families(one_rule("name: 1\ntable: main\ndst: 10.0.0.0/8\n")) == [Family.INET4]
    assert rule_families(one_rule("name: 1\ntable: main\ndst: 'fd00::/8'\n")) == [Family.INET6]
    assert rule_families(one_rule("name: 1\ntable: main\nsrc: 'fd00::/8'\ndst: '::/0'\n")) == [Family.INET6]


def test_spec_fields() -> None:
    r = one_rule(
        "name: 1000\nsrc: 10.1.0.7/24\ntable: '100'\niifName: eth0\noifName: eth1\nfwMark: 0x100\nfwMask: "
        "0xff00\n"
    )
    assert config_rule(r, Family.INET4) == RoutingRuleSpec(
        family=Family.INET4,
        src=ipaddress.ip_interface("10.1.0.0/24"),  # host bits cleared: the kernel matches addr & mask
        table=RoutingTable(100),
        priority=1000,
        action=RoutingRuleAction.UNICAST,
        iif_name="eth0",
        oif_name="eth1",
        fw_mark=0x100,
        fw_mask=0xFF00,
        layer=ConfigLayer.CONFIGURATION,
    )
    assert config_rule(one_rule("name: 5\ntable: local\n"), Family.INET6).table == RoutingTable.LOCAL
    assert config_rule(one_rule("name: 5\ntable: default\n"), Family.INET6).table == RoutingTable.DEFAULT
    blackhole = config_rule(one_rule("name: 5\naction: prohibit\ntable: '100'\n"), Family.INET4)
    assert (blackhole.action, blackhole.table) == (RoutingRuleAction.PROHIBIT, RoutingTable.UNSPEC)


def test_ids_are_layered_family_and_padded_priority() -> None:
    loaded = load_config(
        rule("name: 1000\ntable: '100'\nsrc: 10.1.0.0/24\n")
        + "---\n"
        + rule("name: 5\ntable: main\n")
        + "---\n"
        + rule("name: 32765\naction: unreachable\ndst: 'fd00::/8'\n")
    )
    want = layered(config_rules(loaded.routing_rules), "configuration")
    assert sorted(want) == [
        "configuration/inet4/00005",
        "configuration/inet4/01000",
        "configuration/inet6/00005",
        "configuration/inet6/32765",
    ]


def test_merge_higher_layer_wins_per_id() -> None:
    """Layers rank default < cmdline < platform < operator < configuration (netd.md §4.3)."""
    cfg = RoutingRuleSpec(
        family=Family.INET4, priority=1000, table=RoutingTable(100), layer=ConfigLayer.CONFIGURATION
    )
    op = cfg.model_copy(update={"table": RoutingTable(180), "layer": ConfigLayer.OPERATOR})
    other = op.model_copy(update={"family": Family.INET6})
    items = [
        ("configuration/inet4/01000", cfg),
        ("operator/inet4/01000", op),
        ("operator/inet6/01000", other),
    ]
    for order in (items, list(reversed(items))):
        assert merge_routing_rules(order) == {"inet4/01000": cfg, "inet6/01000": other}
    default = cfg.model_copy(update={"layer": ConfigLayer.DEFAULT, "table": RoutingTable.MAIN})
    assert merge_routing_rules([("default/inet4/01000", default), ("operator/inet4/01000", op)]) == {
        "inet4/01000": op
    }


# --------------------------------------------------------------- through the controllers (netd.plan)

LINKS = {
    "lo": LinkStatus(index=1, type=LinkType.LOOPBACK),
    "eth0": LinkStatus(index=2, type=LinkType.ETHER, hardware_addr="52:54:00:00:00:01"),
    "eth1": LinkStatus(index=3, type=LinkType.ETHER, hardware_addr="52:54:00:00:00:02"),
}


def run_plan(loaded: LoadedConfig, ns: str = "network") -> PlanResult:
    return asyncio.run(plan(loaded, "", None, ns, kernel=(LINKS, [])))


def by_type(result: PlanResult) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in result.resources():
        out.setdefault(r.md.type.split(".")[0], {})[r.id] = spec_dict(r.spec)
    return out


def test_plan_shows_the_rule_specs() -> None:
    loaded = load_config(
        rule("name: 1000\ntable: '100'\nsrc: 10.1.0.0/24\n") + "---\n" + rule("name: 7\ntable: main\n")
    )
    merged = by_type(run_plan(loaded))["RoutingRuleSpecs"]
    assert set(merged) == {"inet4/01000", "inet4/00007", "inet6/00007"}
    assert merged["inet4/01000"] == {
        "family": "inet4",
        "src": "10.1.0.0/24",
        "table": "RoutingTable(100)",
        "priority": 1000,
        "action": "unicast",
        "layer": "configuration",
    }
    layers = by_type(run_plan(loaded, "network-config"))["RoutingRuleSpecs"]
    assert set(layers) == {
        "configuration/inet4/01000",
        "configuration/inet4/00007",
        "configuration/inet6/00007",
    }


IFACE = """  network:
    interfaces:
      - interface: eth1
        mtu: 9000
        addresses: [10.91.0.2/24, 'fd91::2/64']
        routes:
          - network: 0.0.0.0/0
            gateway: 10.91.0.1
          - network: 10.50.0.0/16
            gateway: 10.91.0.254
            source: 10.91.0.2
            metric: 50
            mtu: 1400
"""
LINKCFG = """name: eth1
mtu: 9000
addresses:
  - address: 10.91.0.2/24
  - address: fd91::2/64
routes:
  - destination: 0.0.0.0/0
    gateway: 10.91.0.1{table}
  - destination: 10.50.0.0/16
    gateway: 10.91.0.254
    source: 10.91.0.2
    metric: 50
    mtu: 1400
"""
FAMILIES = ("LinkSpecs", "AddressSpecs", "RouteSpecs", "OperatorSpecs")


def test_link_config_is_the_same_as_an_interfaces_entry() -> None:
    for ns in ("network-config", "network"):
        via_iface = by_type(run_plan(load_config(V1 + IFACE), ns))
        via_link = by_type(run_plan(load_config(V1 + "---\n" + LINK + LINKCFG.format(table="")), ns))
        for family in FAMILIES:
            assert via_link.get(family) == via_iface.get(family), (ns, family)
    assert set(via_iface["RouteSpecs"]) == {"inet4/10.91.0.1//1024", "inet4/10.91.0.254/10.50.0.0/16/50"}


def test_link_config_route_table() -> None:
    got = by_type(run_plan(load_config(LINK + LINKCFG.format(table="\n    table: '100'")), "network-config"))
    routes = got["RouteSpecs"]
    assert "configuration/RoutingTable(100)/inet4/10.91.0.1//1024" in routes
    assert routes["configuration/RoutingTable(100)/inet4/10.91.0.1//1024"]["table"] == "RoutingTable(100)"
    assert routes["configuration/inet4/10.91.0.254/10.50.0.0/16/50"]["table"] == "main"
    local = by_type(
        run_plan(load_config(LINK + "name: eth1\nroutes: [{gateway: 10.91.0.1, table: local}]\n"))
    )
    assert [r["table"] for r in local["RouteSpecs"].values() if r.get("outLinkName") == "eth1"] == ["local"]


def test_link_config_route_priority_is_the_address_spec_priority() -> None:
    doc = LINK + "name: eth1\naddresses: [{address: 10.91.0.2/24, routePriority: 5}, {address: fd91::2/64}]\n"
    got = by_type(run_plan(load_config(doc)))["AddressSpecs"]
    assert got["eth1/10.91.0.2/24"]["priority"] == 5
    assert "priority" not in got["eth1/fd91::2/64"]  # omitted when unset


def test_link_config_up_false_and_defaults() -> None:
    got = by_type(run_plan(load_config(LINK + "name: eth1\nup: false\n"), "network-config"))
    assert got["LinkSpecs"]["configuration/eth1"]["up"] is False
    assert "default/eth1" not in got["LinkSpecs"]  # configured: the default layer leaves it alone
    merged = by_type(run_plan(load_config(LINK + "name: eth1\nup: false\n")))
    assert "dhcp4/eth1" not in merged["OperatorSpecs"]  # like a static interfaces[] entry
    assert "dhcp4/eth0" in merged["OperatorSpecs"]  # an unconfigured link keeps its default DHCP
    devices = merged["DeviceConfigSpecs"]
    assert set(devices) == {"eth1/000"}
    assert devices["eth1/000"]["device"]["up"] is False
