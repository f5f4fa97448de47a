"""Loading real configs, the models' defaults and accessors, YAML 1.2 behaviour, the allow-list."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from netd.config import ConfigError, LoadedConfig, PortRange, load_config, load_config_file
from netd.config.allowlist import unknown_keys
from netd.config.models import (
    BEYOND_V16,
    Bond,
    ClusterNetworkConfig,
    Device,
    DeviceVIPConfig,
    DeviceWireguardConfig,
    DeviceWireguardPeer,
    DHCPOptions,
    ExtraHost,
    KubeSpanFilters,
    NetworkConfig,
    NetworkDeviceSelector,
    NetworkKubeSpan,
    Route,
    Vlan,
)
from netd.config.v16_schema import TYPES
from netd.config.validate import is_dns_name, parse_go_duration
from netd.config.yaml import MAX_NODES, QuotedStr, YamlInt, load_documents

CONFIGS = Path(__file__).parent / "configs"


def load(text: str) -> LoadedConfig:
    return load_config(text)


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(text)
    return [str(p) for p in info.value.errors]


# ------------------------------------------------------------------------- real configs


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_sample_configs_load(path: Path) -> None:
    loaded = load_config_file(path)
    assert loaded.config is not None
    assert not [w for w in loaded.warnings if "cidr" not in w.message]


def test_spec_a20_example() -> None:
    loaded = load_config_file(CONFIGS / "spec-a20-example.yaml")
    cfg = loaded.config
    assert cfg is not None and cfg.has_machine and cfg.has_cluster
    assert loaded.warnings == []
    net = cfg.network
    assert net.hostname == "cp1.example.org"
    assert net.nameservers == ["10.0.0.53", "1.1.1.1"]
    assert net.extra_host_entries == [
        ExtraHost(ip="10.0.0.100", aliases=["registry", "registry.example.org"])
    ]
    bond0 = net.interfaces[0]
    assert bond0.interface == "bond0" and bond0.mtu == 9000 and bond0.addresses == ["10.0.0.11/24"]
    assert [(r.network, r.gateway, r.metric) for r in bond0.routes] == [
        ("0.0.0.0/0", "10.0.0.1", 1024),
        ("172.16.0.0/12", "10.0.0.254", 2048),
    ]
    assert bond0.bond is not None
    assert bond0.bond.interfaces == ["enp1s0", "enp2s0"]
    assert (bond0.bond.mode, bond0.bond.lacp_rate, bond0.bond.xmit_hash_policy) == (
        "802.3ad",
        "fast",
        "layer3+4",
    )
    assert (bond0.bond.miimon, bond0.bond.updelay, bond0.bond.downdelay) == (100, 200, 200)
    assert bond0.bond.use_carrier is True
    assert bond0.vip == DeviceVIPConfig(ip="10.0.0.10") and bond0.vip.gratuitous_arp
    v100, v200 = bond0.vlans
    assert (v100.vlan_id, v100.mtu, v100.addresses) == (100, 1500, ["192.168.100.11/24"])
    assert v100.routes == [Route(network="192.168.200.0/24", gateway="192.168.100.1")]
    assert v200.dhcp and v200.dhcp_options == DHCPOptions(route_metric=2048, ipv6=True)
    assert v200.dhcp_options.ipv4 is True
    sel = net.interfaces[1]
    assert sel.device_selector == NetworkDeviceSelector(hardware_addr="52:54:00:12:34:*", driver="virtio_net")
    assert sel.dhcp and sel.dhcp_options is not None and sel.dhcp_options.route_metric == 512
    assert net.interfaces[2].ignore
    assert net.interfaces[3].dummy and net.interfaces[3].addresses == ["169.254.10.1/32"]
    wg = net.interfaces[4].wireguard
    assert wg is not None and wg.listen_port == 51111 and wg.firewall_mark == 0
    assert wg.private_key == "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    peer = wg.peers[0]
    assert (peer.endpoint, peer.allowed_ips, peer.keepalive_seconds) == (
        "203.0.113.5:51111",
        ["10.200.0.0/24"],
        25.0,
    )
    br0 = net.interfaces[5]
    assert br0.bridge is not None and br0.bridge.interfaces == ["enp3s0"] and br0.bridge.stp.enabled is False
    ks = net.kubespan
    assert ks.enabled and ks.mtu == 1420 and ks.harvest_extra_endpoints and ks.force_routing
    assert ks.filters.endpoints == ["0.0.0.0/0", "!192.168.0.0/16", "::/0"]
    assert cfg.machine.time.servers == ["time.cloudflare.com"]
    assert cfg.machine.is_control_plane
    cl = cfg.cluster
    assert cl.id == "YGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn8=" and cl.secret.startswith("QEFC")
    assert cl.network.pod_subnets == ["10.244.0.0/16"] and cl.network.dns_domain == "cluster.local"
    assert cl.discovery.enabled and not cl.discovery.kubernetes_registry_enabled
    assert cl.discovery.service_registry_enabled
    assert cl.discovery.registries.service.endpoint == "https://discovery.talos.dev/"
    assert loaded.ingress_default == "block"
    assert [r.name for r in loaded.rules] == ["apid-ingress", "kubelet-ingress"]
    kubelet = loaded.rules[1]
    assert kubelet.port_selector.ports == [PortRange(10250, 10250), PortRange(10260, 10270)]
    assert kubelet.port_selector.protocol == "tcp"
    assert kubelet.ingress[0].subnet == "10.0.0.0/24" and kubelet.ingress[0].except_ == "10.0.0.1/32"


def test_worker_sample_details() -> None:
    loaded = load_config_file(CONFIGS / "talos-v1.6-worker.yaml")
    cfg = loaded.config
    assert cfg is not None and cfg.has_machine
    dev = cfg.network.interfaces[0]
    assert dev.device_selector == NetworkDeviceSelector(bus_path="0*")
    assert dev.dhcp_options is not None and dev.dhcp_options.ipv6 is True  # `on`
    assert cfg.machine.features.stable_hostname is True  # `yes`
    assert loaded.ingress_default == "accept"
    assert [(d.kind, d.name) for d in loaded.other_documents] == [("KmsgLogConfig", "remote-log")]


# ------------------------------------------------------------------------- defaults


def test_defaults() -> None:
    assert Route(gateway="10.0.0.1").metric == 1024
    assert Route(gateway="10.0.0.1", metric=0).metric == 1024
    assert DHCPOptions() == DHCPOptions(route_metric=1024, ipv4=True, ipv6=False, duidv6="")
    assert NetworkKubeSpan().mtu == 1420 and NetworkKubeSpan(mtu=0).mtu == 1420
    assert NetworkKubeSpan().harvest_extra_endpoints is True
    assert KubeSpanFilters().endpoints == []
    b = Bond()
    assert (b.mode, b.effective_mode, b.use_carrier, b.resend_igmp, b.interfaces) == (
        "",
        "balance-rr",
        True,
        0,
        [],
    )
    assert Bond(mode="nope").effective_mode == "balance-rr"
    cn = ClusterNetworkConfig()
    assert (cn.dns_domain, cn.pod_subnets, cn.service_subnets) == (
        "cluster.local",
        ["10.244.0.0/16"],
        ["10.96.0.0/12"],
    )
    d = Device()
    assert (d.interface, d.mtu, d.dhcp, d.ignore, d.vlans, d.bond, d.vip) == (
        "",
        0,
        False,
        False,
        [],
        None,
        None,
    )
    assert Vlan().vlan_id == 0
    assert DeviceWireguardConfig().peers == []
    assert DeviceWireguardPeer().keepalive_seconds == 0.0
    assert NetworkConfig().kubespan == NetworkKubeSpan()


def test_no_machine_network_means_defaults() -> None:
    loaded = load("version: v1alpha1\nmachine:\n  type: worker\n")
    assert loaded.config is not None
    assert loaded.config.network == NetworkConfig()
    assert loaded.default_action is None and loaded.ingress_default == "accept" and loaded.rules == []


def test_null_values_mean_unset() -> None:
    loaded = load(
        "machine:\n  type: controlplane\n  network:\n    interfaces:\n"
        "      - interface: eth0\n        bond:\n        mtu: ~\n"
    )
    assert loaded.config is not None
    dev = loaded.config.network.interfaces[0]
    assert dev.bond is None and dev.mtu == 0


def test_string_fields_take_scalars_as_written() -> None:
    loaded = load("machine:\n  type: worker\n  network:\n    hostname: 1.10\n")
    assert loaded.config is not None and loaded.config.network.hostname == "1.10"


def test_numbers_in_other_bases() -> None:
    loaded = load(
        "machine:\n  type: worker\n  network:\n    interfaces:\n"
        "      - interface: eth0\n        mtu: 0x2328\n"
    )
    assert loaded.config is not None and loaded.config.network.interfaces[0].mtu == 9000


def test_models_built_in_code_use_snake_case_names() -> None:
    dev = Device(interface="eth0", dhcp_options=DHCPOptions(route_metric=5), vlans=[Vlan(vlan_id=3)])
    assert dev.dhcp_options is not None and dev.dhcp_options.route_metric == 5
    assert dev.model_dump(by_alias=True)["dhcpOptions"]["routeMetric"] == 5


# ------------------------------------------------------------------------- YAML 1.2


def test_mac_and_on_stay_strings() -> None:
    loaded = load(
        "machine:\n  type: worker\n  network:\n    hostname: on\n    interfaces:\n"
        "      - deviceSelector:\n          hardwareAddr: 52:54:00:12:34:56\n          driver: off\n"
    )
    assert loaded.config is not None
    net = loaded.config.network
    assert net.hostname == "on"
    sel = net.interfaces[0].device_selector
    assert sel is not None and sel.hardware_addr == "52:54:00:12:34:56" and sel.driver == "off"


@pytest.mark.parametrize(
    ("word", "value"),
    [
        ("true", True),
        ("false", False),
        ("yes", True),
        ("no", False),
        ("on", True),
        ("off", False),
        ("Yes", True),
        ("OFF", False),
    ],
)
def test_booleans_accept_yaml11_words(word: str, value: bool) -> None:
    loaded = load(f"machine:\n  type: worker\n  network:\n    disableSearchDomain: {word}\n")
    assert loaded.config is not None and loaded.config.network.disable_search_domain is value


def test_boolean_rejects_other_words() -> None:
    assert errors_of("machine:\n  type: worker\n  network:\n    disableSearchDomain: maybe\n") == [
        "v1alpha1: machine.network.disableSearchDomain: must be a boolean (true/false, yes/no, on/off)"
    ]
    assert errors_of("machine:\n  type: worker\n  network:\n    disableSearchDomain: 1\n") == [
        "v1alpha1: machine.network.disableSearchDomain: must be a boolean (true/false, yes/no, on/off)"
    ]


def test_yaml11_directive_does_not_change_resolution() -> None:
    (doc,) = load_documents("%YAML 1.1\n---\na: on\nb: 52:54:00:12:34:56\nc: yes\n")
    assert doc.data == {"a": "on", "b": "52:54:00:12:34:56", "c": "yes"}


def test_quoted_and_bare_scalars_stay_distinguishable() -> None:
    (doc,) = load_documents('a: "80"\nb: 80\nc: 80-90\n')
    assert isinstance(doc.data["a"], QuotedStr) and doc.data["a"] == "80"
    assert isinstance(doc.data["b"], YamlInt) and doc.data["b"] == 80
    assert type(doc.data["c"]) is str


def test_alias_bomb_rejected_fast() -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    start = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_config("\n".join(lines) + "\n")
    assert time.monotonic() - start < 2
    assert info.value.lines() == [
        f"document 1: document expands to more than {MAX_NODES} YAML nodes (too many aliases?)"
    ]


def test_small_aliases_are_fine() -> None:
    text = (
        "machine:\n  type: controlplane\n  network:\n    interfaces:\n"
        "      - interface: eth0\n        routes: &r\n          - {network: 0.0.0.0/0, gateway: 10.0.0.1}\n"
        "      - interface: eth1\n        routes: *r\n"
    )
    loaded = load(text)
    assert loaded.config is not None
    assert loaded.config.network.interfaces[1].routes == loaded.config.network.interfaces[0].routes


def test_merge_keys() -> None:
    text = (
        "machine:\n  type: controlplane\n  network:\n    interfaces:\n"
        "      - &base {interface: eth0, mtu: 1500, dhcp: true}\n"
        "      - <<: *base\n        interface: eth1\n"
    )
    loaded = load(text)
    assert loaded.config is not None
    eth1 = loaded.config.network.interfaces[1]
    assert (eth1.interface, eth1.mtu, eth1.dhcp) == ("eth1", 1500, True)


def test_duplicate_keys_rejected() -> None:
    assert errors_of("machine:\n  type: worker\n  type: controlplane\n") == [
        'document 1: machine.type: duplicate key "type" (first defined at line 2)'
    ]


def test_yaml_syntax_error_has_line() -> None:
    (line,) = errors_of("machine:\n  type: worker\n network: [\n")
    assert line.startswith("yaml: line 3 column 2: ")


def test_custom_tags_rejected() -> None:
    assert errors_of("machine:\n  type: !!python/object worker\n") == [
        "document 1: machine.type: unsupported YAML tag tag:yaml.org,2002:python/object"
    ]
    assert errors_of("machine: !!set {a: 1}\n") == [
        "document 1: machine: unsupported YAML tag tag:yaml.org,2002:set"
    ]
    assert errors_of("machine:\n  type: !foo worker\n") == [
        "document 1: machine.type: unsupported YAML tag !foo"
    ]


def test_problem_lines_are_known() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(
            "machine:\n  type: worker\n  network:\n    interfaces:\n      - interface: eth0\n        mtu: x\n"
        )
    (problem,) = info.value.problems
    assert problem.line == 6


# ------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("25s", 25.0),
        ("1m30s", 90.0),
        ("0", 0.0),
        ("1.5h", 5400.0),
        ("300ms", 0.3),
        ("25000000000", 25.0),
        ("-1s", -1.0),
    ],
)
def test_go_duration(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "25 s", "1d", ".s", "25S"])
def test_go_duration_invalid(text: str) -> None:
    with pytest.raises(ValueError):
        parse_go_duration(text)


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("cluster.local", True),
        ("cluster.local.", True),
        ("a_b.c", True),
        ("-a", False),
        ("a..b", False),
        ("", False),
    ],
)
def test_dns_name(name: str, ok: bool) -> None:
    assert is_dns_name(name) is ok


# ------------------------------------------------------------------------- allow-list


def _aliases(model: type) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("model", "type_name"),
    [
        (NetworkConfig, "NetworkConfig"),
        (Device, "Device"),
        (NetworkDeviceSelector, "NetworkDeviceSelector"),
        (Route, "Route"),
        (Bond, "Bond"),
        (Vlan, "Vlan"),
        (DHCPOptions, "DHCPOptions"),
        (DeviceWireguardConfig, "DeviceWireguardConfig"),
        (DeviceWireguardPeer, "DeviceWireguardPeer"),
        (DeviceVIPConfig, "DeviceVIPConfig"),
        (NetworkKubeSpan, "NetworkKubeSpan"),
        (ClusterNetworkConfig, "ClusterNetworkConfig"),
    ],
)
def test_strict_models_match_the_v16_schema(model: type, type_name: str) -> None:
    beyond = BEYOND_V16.get(type_name, frozenset())  # LinkConfig-only fields: not v1.6 keys
    assert _aliases(model) - beyond == set(TYPES[type_name])
    assert not beyond & set(TYPES[type_name])


def test_allow_list_walks_maps_lists_and_open_sections() -> None:
    data = {
        "machine": {
            "registries": {"mirrors": {"docker.io": {"endpoints": [], "bogus": 1}}},
            "kubelet": {"extraConfig": {"anything": {"goes": True}}},
            "pods": [{"anything": 1}],
            "disks": [{"device": "/dev/sdb", "partitions": [{"size": "1GB", "mountPoint": "/x"}]}],
        }
    }
    assert [(p, m) for p, m in unknown_keys(data)] == [
        (("machine", "registries", "mirrors", "docker.io", "bogus"), "unknown key"),
        (("machine", "disks", 0, "partitions", 0, "mountPoint"), 'unknown key (did you mean "mountpoint"?)'),
    ]


def test_strict_mode_makes_warnings_errors() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("machine:\n  type: join\n", strict=True)
    assert info.value.lines() == [
        'v1alpha1: machine.type: warning: use "worker" instead of "join" for machine type'
    ]


def test_parsed_addresses() -> None:
    loaded = load(
        "machine:\n  type: controlplane\n  network:\n    interfaces:\n"
        "      - interface: eth0\n        addresses: [10.5.0.7/16, 10.0.0.1, 'fd00::1']\n"
        "        vlans: [{vlanId: 5, addresses: [192.168.1.1]}]\n"
        "      - interface: eth1\n        cidr: 10.1.0.1/24\n"
    )
    assert loaded.config is not None
    eth0, eth1 = loaded.config.network.interfaces
    assert [str(p) for p in eth0.prefixes()] == ["10.5.0.7/16", "10.0.0.1/32", "fd00::1/128"]
    assert [str(p) for p in eth0.vlans[0].prefixes()] == ["192.168.1.1/32"]
    assert [str(p) for p in eth1.prefixes()] == ["10.1.0.1/24"]


def test_rule_name_label_from_a_number() -> None:
    assert errors_of(
        "apiVersion: v1alpha1\nkind: NetworkRuleConfig\nname: 5\nportSelector: {protocol: tcp}\n"
    ) == ["NetworkRuleConfig/5: portSelector.ports: portSelector.ports is required"]


def test_redefined_anchor_is_fine_and_quiet(recwarn: pytest.WarningsRecorder) -> None:
    (doc,) = load_documents("a: &x 1\nb: &x 2\nc: *x\n")
    assert doc.data == {"a": 1, "b": 2, "c": 2}
    assert len(recwarn) == 0


def test_config_is_the_lower_layer() -> None:
    """netd.config imports nothing from netd.resources / netd.controllers (issue 10 item 3)."""
    import subprocess
    import sys

    code = (
        "import sys, netd.config, netd.config.cmdline, netd.config.names\n"
        "bad = [m for m in sys.modules if m.startswith(('netd.resources', 'netd.controllers', 'cosi'))]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
