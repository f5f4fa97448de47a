# ruff: noqa: E501  (a table of expected messages reads better unwrapped)
"""Every validation rule of config.md Part A: one or more invalid configs each, exact path and message."""

from __future__ import annotations

import textwrap

import pytest

from netd.config import ConfigError, load_config

ID = "pWFFJwzms769HdAStzlIZ33WGNSWSIvGCKPLQ841R90="
SECRET = "K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols="
KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


def indent(text: str, n: int) -> str:
    return textwrap.indent(textwrap.dedent(text).strip("\n"), " " * n)


def net(interfaces: str, mtype: str = "controlplane", extra: str = "") -> str:
    """A v1alpha1 document with the given `interfaces` list (YAML, any indent)."""
    return (
        f"version: v1alpha1\nmachine:\n  type: {mtype}\n  network:\n    interfaces:\n"
        + indent(interfaces, 6)
        + "\n"
        + extra
    )


def rule(body: str) -> str:
    return "apiVersion: v1alpha1\nkind: NetworkRuleConfig\n" + textwrap.dedent(body)


def problems(text: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) as rendered lines."""
    try:
        loaded = load_config(text)
    except ConfigError as exc:
        return [str(p) for p in exc.errors], [str(p) for p in exc.warnings]
    return [], [str(p) for p in loaded.warnings]


def errors(text: str) -> list[str]:
    return problems(text)[0]


BOND = "- interface: bond0\n  bond:\n"
P = "v1alpha1: machine.network.interfaces"

CASES: list[tuple[str, str, list[str]]] = [
    # ---------------------------------------------------------------- A.1 framing
    ("missing kind", "foo: bar\n", ["document 1: missing kind (and not a v1alpha1 machine config)"]),
    (
        "unknown kind",
        "apiVersion: v1alpha1\nkind: FooConfig\nname: x\n",
        ['FooConfig/x: kind: unknown kind "FooConfig"'],
    ),
    (
        "unknown apiVersion",
        "apiVersion: v1beta1\nkind: NetworkDefaultActionConfig\n",
        [
            'NetworkDefaultActionConfig/: apiVersion: unknown apiVersion "v1beta1" for kind '
            "NetworkDefaultActionConfig (want v1alpha1)"
        ],
    ),
    (
        "duplicate v1alpha1",
        "machine: {type: worker}\n---\ncluster: {}\n",
        ["v1alpha1: duplicate v1alpha1.Config"],
    ),
    (
        "duplicate default action",
        "apiVersion: v1alpha1\nkind: NetworkDefaultActionConfig\n---\n"
        "apiVersion: v1alpha1\nkind: NetworkDefaultActionConfig\ningress: block\n",
        ["NetworkDefaultActionConfig/: duplicate document: NetworkDefaultActionConfig/"],
    ),
    (
        "duplicate rule name",
        rule("name: a\nportSelector: {ports: [1], protocol: tcp}\n")
        + "---\n"
        + rule("name: a\nportSelector: {ports: [2], protocol: udp}\n"),
        ["NetworkRuleConfig/a: duplicate document: NetworkRuleConfig/a"],
    ),
    ("empty stream", "# nothing\n", ["yaml: config not found (the file has no documents)"]),
    ("empty documents only", "---\n---\n", ["yaml: config not found (the file has no documents)"]),
    ("document not a mapping", "- a\n- b\n", ["document 1: a config document must be a mapping"]),
    (
        "unknown top-level key",
        "machine: {type: worker}\nmachin: {}\n",
        ['v1alpha1: machin: unknown key (did you mean "machine"?)'],
    ),
    (
        "unknown key in machine.network",
        net("- interface: eth0\n  adresses: [10.0.0.1/24]\n"),
        [f'{P}[0].adresses: unknown key (did you mean "addresses"?)'],
    ),
    (
        "deviceSelector.physical is not v1.6",
        net("- deviceSelector:\n    physical: true\n    driver: e1000\n"),
        [f"{P}[0].deviceSelector.physical: unknown key"],
    ),
    (
        "deviceSelector as a list",
        net("- deviceSelector:\n    - driver: e1000\n"),
        [f"{P}[0].deviceSelector: must be a mapping"],
    ),
    (
        "unknown key outside networking (allow-list)",
        "machine:\n  type: worker\n  install:\n    disk: /dev/sda\n    wipe: false\n    wiipe: true\n",
        ['v1alpha1: machine.install.wiipe: unknown key (did you mean "wipe"?)'],
    ),
    (
        "unknown key in cluster.discovery",
        "cluster:\n  discovery:\n    enabled: false\n    registries:\n      k8s: {}\n",
        ["v1alpha1: cluster.discovery.registries.k8s: unknown key"],
    ),
    (
        "unknown key in cluster.network",
        "cluster:\n  network:\n    podSubnet: [10.0.0.0/8]\n",
        ['v1alpha1: cluster.network.podSubnet: unknown key (did you mean "podSubnets"?)'],
    ),
    (
        "unknown key in NetworkRuleConfig",
        rule("name: a\nportSelector: {ports: [1], protocol: tcp, proto: udp}\nfoo: 1\n"),
        ["NetworkRuleConfig/a: foo: unknown key", "NetworkRuleConfig/a: portSelector.proto: unknown key"],
    ),
    (
        "name in NetworkDefaultActionConfig",
        "apiVersion: v1alpha1\nkind: NetworkDefaultActionConfig\nname: x\n",
        ["NetworkDefaultActionConfig/: name: unknown key"],
    ),
    (
        "unknown key in NetworkDefaultActionConfig",
        "apiVersion: v1alpha1\nkind: NetworkDefaultActionConfig\negress: block\n",
        ["NetworkDefaultActionConfig/: egress: unknown key"],
    ),
    # ---------------------------------------------------------------- types
    ("string for an integer", net("- interface: eth0\n  mtu: '9000'\n"), [f"{P}[0].mtu: must be an integer"]),
    (
        "quoted true is not a boolean",
        net("- interface: eth0\n  dhcp: 'true'\n"),
        [f"{P}[0].dhcp: must be a boolean (true/false, yes/no, on/off)"],
    ),
    (
        "integer out of range",
        net("- interface: eth0\n  mtu: 4294967296\n"),
        [f"{P}[0].mtu: must be between 0 and 4294967295"],
    ),
    ("list for a mapping", net("- interface: eth0\n  bond: []\n"), [f"{P}[0].bond: must be a mapping"]),
    (
        "mapping for a list",
        "machine:\n  network:\n    interfaces: {a: 1}\n",
        ["v1alpha1: machine.network.interfaces: must be a list"],
    ),
    ("mapping for a string", net("- interface: {a: 1}\n"), [f"{P}[0].interface: must be a string"]),
    # ---------------------------------------------------------------- A.3 machine.type
    (
        "unknown machine type",
        "machine:\n  type: unknown\n",
        ['v1alpha1: machine.type: unknown machine type "unknown"'],
    ),
    (
        "vip on a worker",
        net("- interface: eth0\n  dhcp: true\n  vip: {ip: 10.0.0.5}\n", mtype="worker"),
        [f"{P}[0].vip: virtual (shared) IP is not allowed on non-controlplane nodes"],
    ),
    (
        "vlan vip on a worker (also for join and empty type)",
        net("- interface: eth0\n  vlans:\n    - vlanId: 10\n      vip: {ip: 10.0.0.5}\n", mtype="join"),
        [f"{P}[0].vlans[0].vip: virtual (shared) IP is not allowed on non-controlplane nodes"],
    ),
    (
        "vip on an ignored worker entry is still an error",
        net("- interface: eth0\n  ignore: true\n  vip: {ip: bad}\n", mtype="worker"),
        [f"{P}[0].vip: virtual (shared) IP is not allowed on non-controlplane nodes"],
    ),
    # ---------------------------------------------------------------- A.16 per entry
    (
        "neither interface nor selector",
        net("- mtu: 1500\n"),
        [f"{P}[0]: either interface or deviceSelector must be set"],
    ),
    (
        "interface and selector",
        net("- interface: eth0\n  deviceSelector: {driver: e1000}\n"),
        [f"{P}[0]: interface and deviceSelector are mutually exclusive"],
    ),
    (
        "empty selector",
        net("- deviceSelector: {}\n"),
        [f"{P}[0].deviceSelector: config section should contain at least one field"],
    ),
    (
        "bond member with addressing",
        net(
            "- interface: bond0\n  bond: {interfaces: [eth0, eth1]}\n"
            "- interface: eth0\n  dhcp: true\n- interface: eth1\n  addresses: [10.0.0.1/24]\n"
        ),
        [
            f'{P}[1]: "eth0" is a bond member: a bonded interface shouldn\'t have any addressing methods '
            "configured (dhcp, addresses, cidr, vip)",
            f'{P}[2]: "eth1" is a bond member: a bonded interface shouldn\'t have any addressing methods '
            "configured (dhcp, addresses, cidr, vip)",
        ],
    ),
    (
        "addresses and cidr",
        net("- interface: eth0\n  cidr: 10.0.0.1/24\n  addresses: [10.0.0.2/24]\n"),
        [f"{P}[0]: interface can't have both cidr and addresses set"],
    ),
    (
        "bad cidr",
        net("- interface: eth0\n  cidr: 10.0.0.1/33\n"),
        [f'{P}[0].cidr: invalid CIDR address "10.0.0.1/33"'],
    ),
    (
        "address with a netmask",
        net("- interface: eth0\n  addresses: [10.0.0.1/24, 10.0.0.1/255.255.255.0]\n"),
        [f'{P}[0].addresses[1]: invalid CIDR address "10.0.0.1/255.255.255.0"'],
    ),
    (
        "address /024",
        net("- interface: eth0\n  addresses: [10.0.0.1/024]\n"),
        [f'{P}[0].addresses[0]: invalid CIDR address "10.0.0.1/024"'],
    ),
    (
        "bare address with leading zero",
        net("- interface: eth0\n  addresses: [010.0.0.1]\n"),
        [f'{P}[0].addresses[0]: failed to parse IP address "010.0.0.1"'],
    ),
    (
        "integer address",
        net("- interface: eth0\n  addresses: [167772161]\n"),
        [f'{P}[0].addresses[0]: failed to parse IP address "167772161"'],
    ),
    (
        "bad vip",
        net("- interface: eth0\n  vip: {ip: 10.0.0}\n"),
        [f'{P}[0].vip.ip: failed to parse "10.0.0" as IP address'],
    ),
    (
        "vip with a prefix",
        net("- interface: eth0\n  vip: {ip: 10.0.0.5/24}\n"),
        [f'{P}[0].vip.ip: failed to parse "10.0.0.5/24" as IP address'],
    ),
    # ---------------------------------------------------------------- A.7 routes
    (
        "route network not a CIDR",
        net("- interface: eth0\n  routes: [{network: 10.0.0.0, gateway: 10.0.0.1}]\n"),
        [f'{P}[0].routes[0].network: invalid network address "10.0.0.0" (must be a CIDR, e.g. 10.0.0.0/8)'],
    ),
    (
        "route network garbage",
        net("- interface: eth0\n  routes: [{network: default, gateway: 10.0.0.1}]\n"),
        [f'{P}[0].routes[0].network: invalid network address "default"'],
    ),
    (
        "route gateway bad",
        net("- interface: eth0\n  routes: [{network: 0.0.0.0/0, gateway: 10.0.0.1/24}]\n"),
        [f'{P}[0].routes[0].gateway: invalid gateway address "10.0.0.1/24"'],
    ),
    (
        "route with neither network nor gateway",
        net("- interface: eth0\n  routes: [{metric: 10}]\n"),
        [f"{P}[0].routes[0]: either network or gateway should be set"],
    ),
    (
        "route source is a CIDR",
        net("- interface: eth0\n  routes: [{gateway: 10.0.0.1, source: 10.0.0.2/24}]\n"),
        [f'{P}[0].routes[0].source: invalid source address "10.0.0.2/24" (must be an IP)'],
    ),
    # ---------------------------------------------------------------- A.8 bond
    ("bond mode", net(BOND + "    mode: roundrobin\n"), [f"{P}[0].bond.mode: invalid bond type roundrobin"]),
    (
        "bond xmitHashPolicy",
        net(BOND + "    xmitHashPolicy: layer5\n"),
        [
            f"{P}[0].bond.xmitHashPolicy: invalid xmit hash policy layer5 (one of layer2, layer3+4, layer2+3, encap2+3, encap3+4)"
        ],
    ),
    (
        "bond lacpRate",
        net(BOND + "    mode: 802.3ad\n    lacpRate: medium\n"),
        [f"{P}[0].bond.lacpRate: invalid lacp rate medium (one of slow, fast)"],
    ),
    (
        "bond arpValidate",
        net(BOND + "    mode: active-backup\n    arpValidate: some\n"),
        [f"{P}[0].bond.arpValidate: invalid arp_validate mode some (one of none, active, backup, all)"],
    ),
    (
        "bond arpAllTargets",
        net(BOND + "    arpAllTargets: each\n"),
        [f"{P}[0].bond.arpAllTargets: invalid arp_all_targets mode each (one of any, all)"],
    ),
    (
        "bond primaryReselect",
        net(BOND + "    primaryReselect: never\n"),
        [
            f"{P}[0].bond.primaryReselect: invalid primary_reselect mode never (one of always, better, failure)"
        ],
    ),
    (
        "bond failOverMac",
        net(BOND + "    failOverMac: passive\n"),
        [f"{P}[0].bond.failOverMac: invalid fail_over_mac value passive (one of none, active, follow)"],
    ),
    (
        "bond adSelect",
        net(BOND + "    adSelect: random\n"),
        [f"{P}[0].bond.adSelect: invalid ad_select mode random (one of stable, bandwidth, count)"],
    ),
    (
        "updelay without miimon",
        net(BOND + "    updelay: 100\n"),
        [f"{P}[0].bond.updelay: bond.upDelay can't be set if miiMon is zero"],
    ),
    (
        "downdelay without miimon",
        net(BOND + "    downdelay: 100\n"),
        [f"{P}[0].bond.downdelay: bond.downDelay can't be set if miiMon is zero"],
    ),
    (
        "updelay not a multiple",
        net(BOND + "    miimon: 100\n    updelay: 150\n"),
        [f"{P}[0].bond.updelay: bond.upDelay should be a multiple of miiMon"],
    ),
    (
        "downdelay not a multiple",
        net(BOND + "    miimon: 100\n    downdelay: 250\n"),
        [f"{P}[0].bond.downdelay: bond.downDelay should be a multiple of miiMon"],
    ),
    (
        "arpIPTarget",
        net(BOND + "    arpIPTarget: [10.0.0.1]\n"),
        [f"{P}[0].bond.arpIPTarget: bond.arpIPTarget is not supported"],
    ),
    (
        "lacpRate outside 802.3ad",
        net(BOND + "    mode: active-backup\n    lacpRate: fast\n"),
        [f"{P}[0].bond.lacpRate: bond.lacpRate is only available in 802.3ad mode"],
    ),
    (
        "adActorSystem",
        net(BOND + "    mode: 802.3ad\n    adActorSystem: 00:11:22:33:44:55\n"),
        [f"{P}[0].bond.adActorSystem: bond.adActorSystem is not supported"],
    ),
    (
        "arpValidate in 802.3ad",
        net(BOND + "    mode: 802.3ad\n    arpValidate: all\n"),
        [f"{P}[0].bond.arpValidate: bond.arpValidate is not available in 802.3ad mode"],
    ),
    (
        "primary in balance-rr (the default mode)",
        net(BOND + "    primary: eth0\n"),
        [f"{P}[0].bond.primary: bond.primary is not available in balance-rr mode"],
    ),
    (
        "arpInterval in balance-alb",
        net(BOND + "    mode: balance-alb\n    arpInterval: 100\n"),
        [f"{P}[0].bond.arpInterval: bond.arpInterval is not available in balance-alb mode"],
    ),
    (
        "packetsPerSlave outside balance-rr",
        net(BOND + "    mode: balance-xor\n    packetsPerSlave: 2\n"),
        [f"{P}[0].bond.packetsPerSlave: bond.packetsPerSlave is not available in balance-xor mode"],
    ),
    (
        "tlbDynamicLb outside tlb/alb",
        net(BOND + "    mode: broadcast\n    tlbDynamicLb: 1\n"),
        [f"{P}[0].bond.tlbDynamicLb: bond.tlbDynamicLb is not available in broadcast mode"],
    ),
    (
        "adActorSysPrio outside 802.3ad",
        net(BOND + "    mode: balance-tlb\n    adActorSysPrio: 10\n"),
        [f"{P}[0].bond.adActorSysPrio: bond.adActorSysPrio is only available in 802.3ad mode"],
    ),
    (
        "adUserPortKey outside 802.3ad",
        net(BOND + "    adUserPortKey: 10\n"),
        [f"{P}[0].bond.adUserPortKey: bond.adUserPortKey is only available in 802.3ad mode"],
    ),
    (
        "bond interfaces and deviceSelectors",
        net(BOND + "    interfaces: [eth0]\n    deviceSelectors: [{driver: e1000}]\n"),
        [
            f'{P}[0].bond: interface "bond0" has both interfaces and deviceSelectors set: '
            "config sections are mutually exclusive"
        ],
    ),
    (
        "bond selector empty",
        net(BOND + "    deviceSelectors: [{}]\n"),
        [f"{P}[0].bond.deviceSelectors[0]: config section should contain at least one field"],
    ),
    # ---------------------------------------------------------------- A.16 cross-device
    (
        "bond and bridge on one entry",
        net("- interface: x0\n  bond: {}\n  bridge: {}\n"),
        [
            f'{P}[0]: interface has both bridge and bond sections set "x0": config sections are mutually exclusive'
        ],
    ),
    (
        "member of two bonds",
        net(
            "- interface: bond0\n  bond: {interfaces: [eth0]}\n- interface: bond1\n  bond: {interfaces: [eth0]}\n"
        ),
        [
            f'{P}[1].bond.interfaces[0]: interface "eth0" is declared as part of two bonds: "bond0" and "bond1"'
        ],
    ),
    (
        "bridge port then bond member",
        net(
            "- interface: br0\n  bridge: {interfaces: [eth0]}\n- interface: bond0\n  bond: {interfaces: [eth0]}\n"
        ),
        [
            f'{P}[1].bond.interfaces[0]: interface "eth0" is declared as part of an interface and a bond: "br0" and "bond0"'
        ],
    ),
    (
        "port of two bridges",
        net(
            "- interface: br0\n  bridge: {interfaces: [eth0]}\n- interface: br1\n  bridge: {interfaces: [eth0]}\n"
        ),
        [
            f'{P}[1].bridge.interfaces[0]: interface "eth0" is declared as part of two bridges: "br0" and "br1"'
        ],
    ),
    (
        "bond member then bridge port",
        net(
            "- interface: bond0\n  bond: {interfaces: [eth0]}\n- interface: br0\n  bridge: {interfaces: [eth0]}\n"
        ),
        [
            f'{P}[1].bridge.interfaces[0]: interface "eth0" is declared as part of an interface and a bond: "bond0" and "br0"'
        ],
    ),
    (
        "cross-device checks apply to ignored entries",
        net(
            "- interface: bond0\n  ignore: true\n  bond: {interfaces: [eth0]}\n- interface: bond1\n  bond: {interfaces: [eth0]}\n"
        ),
        [
            f'{P}[1].bond.interfaces[0]: interface "eth0" is declared as part of two bonds: "bond0" and "bond1"'
        ],
    ),
    # ---------------------------------------------------------------- A.10 vlans
    (
        "vlanId 0 (absent)",
        net("- interface: eth0\n  vlans: [{dhcp: true}]\n"),
        [f"{P}[0].vlans[0].vlanId: must be 1-4094"],
    ),
    (
        "vlanId 4095",
        net("- interface: eth0\n  vlans: [{vlanId: 4095}]\n"),
        [f"{P}[0].vlans[0].vlanId: must be 1-4094"],
    ),
    (
        "vlanId over uint16",
        net("- interface: eth0\n  vlans: [{vlanId: 70000}]\n"),
        [f"{P}[0].vlans[0].vlanId: must be between 0 and 65535"],
    ),
    (
        "vlan cidr and addresses",
        net("- interface: eth0\n  vlans: [{vlanId: 5, cidr: 10.0.0.1/24, addresses: [10.0.0.2/24]}]\n"),
        [f"{P}[0].vlans[0]: vlan can't have both cidr and addresses set"],
    ),
    (
        "vlan bad cidr",
        net("- interface: eth0\n  vlans: [{vlanId: 5, cidr: 10.0.0.1/40}]\n"),
        [f'{P}[0].vlans[0].cidr: invalid CIDR address "10.0.0.1/40"'],
    ),
    (
        "vlan bad address",
        net("- interface: eth1\n  vlans:\n    - vlanId: 5\n      addresses: [10.0.0.300]\n"),
        [f'{P}[0].vlans[0].addresses[0]: failed to parse IP address "10.0.0.300"'],
    ),
    (
        "vlan route",
        net(
            "- interface: eth1\n  vlans:\n    - vlanId: 5\n      routes: [{network: 10.0.0.0/8, gateway: gw}]\n"
        ),
        [f'{P}[0].vlans[0].routes[0].gateway: invalid gateway address "gw"'],
    ),
    (
        "vlan vip",
        net("- interface: eth1\n  vlans:\n    - vlanId: 5\n      vip: {ip: ''}\n"),
        [f'{P}[0].vlans[0].vip.ip: failed to parse "" as IP address'],
    ),
    # ---------------------------------------------------------------- A.11 dhcpOptions
    (
        "duidv6 odd length",
        net("- interface: eth0\n  dhcp: true\n  dhcpOptions: {ipv6: true, duidv6: '0001000'}\n"),
        [f'{P}[0].dhcpOptions.duidv6: invalid DUID "0001000": must be an even-length hex string'],
    ),
    (
        "duidv6 not hex (vlan)",
        net("- interface: eth0\n  vlans: [{vlanId: 3, dhcpOptions: {duidv6: 'zz:01'}}]\n"),
        [f'{P}[0].vlans[0].dhcpOptions.duidv6: invalid DUID "zz:01": must be an even-length hex string'],
    ),
    # ---------------------------------------------------------------- A.12 wireguard
    (
        "wireguard empty private key",
        net("- interface: wg0\n  wireguard: {listenPort: 51820}\n"),
        [f"{P}[0].wireguard.privateKey: private key is required (base64 of 32 bytes)"],
    ),
    (
        "wireguard bad private key",
        net("- interface: wg0\n  wireguard: {privateKey: 'not base64!'}\n"),
        [f'{P}[0].wireguard.privateKey: private key is invalid: "not base64!" is not valid base64'],
    ),
    (
        "wireguard public key 31 bytes",
        net(
            "- interface: wg0\n  wireguard:\n    privateKey: " + KEY + "\n"
            "    peers: [{publicKey: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==}]\n"
        ),
        [
            f"{P}[0].wireguard.peers[0].publicKey: public key invalid: wrong key "
            '"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==" length: 31 (want 32 bytes)'
        ],
    ),
    (
        "wireguard endpoint without port",
        net(
            "- interface: wg0\n  wireguard:\n    privateKey: "
            + KEY
            + "\n    peers: [{publicKey: "
            + KEY
            + ", endpoint: 'fe80::1'}]\n"
        ),
        [f'{P}[0].wireguard.peers[0].endpoint: peer endpoint "fe80::1" is invalid (want host:port)'],
    ),
    (
        "wireguard endpoint ipv6 with port, no brackets",
        net(
            "- interface: wg0\n  wireguard:\n    privateKey: "
            + KEY
            + "\n    peers: [{publicKey: "
            + KEY
            + ", endpoint: 'fe80::1:51820'}]\n"
        ),
        [f'{P}[0].wireguard.peers[0].endpoint: peer endpoint "fe80::1:51820" is invalid (want host:port)'],
    ),
    (
        "wireguard keepalive",
        net(
            "- interface: wg0\n  wireguard:\n    privateKey: " + KEY + "\n"
            "    peers: [{publicKey: " + KEY + ", persistentKeepaliveInterval: 25 seconds}]\n"
        ),
        [
            f'{P}[0].wireguard.peers[0].persistentKeepaliveInterval: invalid duration "25 seconds" (e.g. 25s, 1m30s)'
        ],
    ),
    (
        "wireguard allowedIPs bare IP",
        net(
            "- interface: wg0\n  wireguard:\n    privateKey: "
            + KEY
            + "\n    peers: [{publicKey: "
            + KEY
            + ", allowedIPs: [10.0.0.1]}]\n"
        ),
        [f'{P}[0].wireguard.peers[0].allowedIPs[0]: peer allowed IP "10.0.0.1" is invalid: must be a CIDR'],
    ),
    (
        "wireguard listenPort",
        net("- interface: wg0\n  wireguard: {privateKey: " + KEY + ", listenPort: 70000}\n"),
        [f"{P}[0].wireguard.listenPort: must be between 0 and 65535"],
    ),
    # ---------------------------------------------------------------- A.14 kubespan
    (
        "kubespan needs discovery, id, secret, mtu",
        "machine:\n  type: worker\n  network:\n    kubespan:\n      enabled: true\n      mtu: 1000\n",
        [
            "v1alpha1: machine.network.kubespan.mtu: kubespan link MTU must be at least 1280",
            "v1alpha1: machine.network.kubespan.enabled: cluster.discovery should be enabled when kubespan is enabled",
            "v1alpha1: machine.network.kubespan.enabled: cluster.id should be set when kubespan is enabled",
            "v1alpha1: machine.network.kubespan.enabled: cluster.secret should be set when kubespan is enabled",
        ],
    ),
    (
        "kubespan filters",
        "machine:\n  type: worker\n  network:\n    kubespan:\n      enabled: true\n"
        "      filters: {endpoints: ['10', '!123::/456', '0.0.0.0/0', '!!10.0.0.0/8']}\n"
        f"cluster:\n  id: {ID}\n  secret: {SECRET}\n  discovery: {{enabled: true}}\n",
        [
            'v1alpha1: machine.network.kubespan.filters.endpoints[0]: KubeSpan endpoint filter is not valid: "10"',
            'v1alpha1: machine.network.kubespan.filters.endpoints[1]: KubeSpan endpoint filter is not valid: "!123::/456"',
            'v1alpha1: machine.network.kubespan.filters.endpoints[3]: KubeSpan endpoint filter is not valid: "!!10.0.0.0/8"',
        ],
    ),
    # ---------------------------------------------------------------- A.15 cluster
    (
        "podSubnets and serviceSubnets must be CIDRs",
        "cluster:\n  network:\n    podSubnets: [10.244.0.0]\n    serviceSubnets: [10.96.0.0/12, x]\n",
        [
            'v1alpha1: cluster.network.podSubnets[0]: invalid CIDR "10.244.0.0"',
            'v1alpha1: cluster.network.serviceSubnets[1]: invalid CIDR "x"',
        ],
    ),
    (
        "dnsDomain",
        "cluster:\n  network:\n    dnsDomain: -bad..domain\n",
        ['v1alpha1: cluster.network.dnsDomain: "-bad..domain" is not a valid DNS name'],
    ),
    (
        "discovery endpoint not a URL",
        f"cluster:\n  id: {ID}\n  secret: {SECRET}\n  discovery:\n    enabled: true\n    registries:\n"
        "      service: {endpoint: foo}\n",
        [
            "v1alpha1: cluster.discovery.registries.service.endpoint: cluster discovery service registry "
            'endpoint is invalid: parse "foo": invalid URI for request'
        ],
    ),
    (
        "discovery endpoint with a path",
        f"cluster:\n  id: {ID}\n  secret: {SECRET}\n  discovery:\n    enabled: true\n    registries:\n"
        "      service: {endpoint: 'https://d.example.com/v1'}\n",
        [
            "v1alpha1: cluster.discovery.registries.service.endpoint: cluster discovery service path should be empty"
        ],
    ),
    (
        "discovery service needs id and secret",
        "cluster:\n  discovery:\n    enabled: true\n",
        [
            "v1alpha1: cluster.id: cluster discovery service requires cluster.id",
            "v1alpha1: cluster.secret: cluster discovery service requires cluster.secret",
        ],
    ),
    (
        "discovery secret must be base64",
        f"cluster:\n  id: {ID}\n  secret: not-base64\n  discovery:\n    enabled: true\n",
        ["v1alpha1: cluster.secret: must be base64 (of 32 random bytes)"],
    ),
    # ---------------------------------------------------------------- A.17 firewall
    (
        "default action word",
        "apiVersion: v1alpha1\nkind: NetworkDefaultActionConfig\ningress: drop\n",
        ['NetworkDefaultActionConfig/: ingress: must be "accept" or "block", not "drop"'],
    ),
    (
        "rule name required",
        rule("portSelector: {ports: [1], protocol: tcp}\n"),
        ["NetworkRuleConfig/: name: name is required"],
    ),
    (
        "rule ports required",
        rule("name: r\nportSelector: {protocol: tcp}\n"),
        ["NetworkRuleConfig/r: portSelector.ports: portSelector.ports is required"],
    ),
    (
        "quoted single port",
        rule("name: r\nportSelector: {ports: ['80'], protocol: tcp}\n"),
        ['NetworkRuleConfig/r: portSelector.ports[0]: invalid port range: "80"'],
    ),
    (
        "port range with spaces / missing end / too big",
        rule("name: r\nportSelector: {ports: ['80 - 90', '80-', 70000, '1-65536'], protocol: tcp}\n"),
        [
            'NetworkRuleConfig/r: portSelector.ports[0]: invalid port range: "80 - 90"',
            'NetworkRuleConfig/r: portSelector.ports[1]: invalid port range: "80-"',
            'NetworkRuleConfig/r: portSelector.ports[2]: invalid port range: "70000"',
            'NetworkRuleConfig/r: portSelector.ports[3]: invalid port range: "1-65536"',
        ],
    ),
    (
        "port range lo > hi",
        rule("name: r\nportSelector: {ports: [90-80], protocol: tcp}\n"),
        ["NetworkRuleConfig/r: portSelector.ports[0]: invalid port range: 90-80"],
    ),
    (
        "port ranges overlap",
        rule(
            "name: r\nportSelector: {ports: [100-200, 50, 150-160, 100, 300-400, 400-410], protocol: udp}\n"
        ),
        [
            # each range is compared with the previous one after sorting by lo (as Talos does)
            "NetworkRuleConfig/r: portSelector.ports[3]: invalid port range: 100, overlaps with 100-200",
            "NetworkRuleConfig/r: portSelector.ports[5]: invalid port range: 400-410, overlaps with 300-400",
        ],
    ),
    (
        "protocol required",
        rule("name: r\nportSelector: {ports: [1]}\n"),
        ["NetworkRuleConfig/r: portSelector.protocol: protocol is required (tcp, udp, icmp or icmpv6)"],
    ),
    (
        "protocol unknown",
        rule("name: r\nportSelector: {ports: [1], protocol: sctp}\n"),
        [
            'NetworkRuleConfig/r: portSelector.protocol: unknown protocol "sctp" (one of tcp, udp, icmp, icmpv6)'
        ],
    ),
    (
        "ingress subnet missing / bad, except bad",
        rule(
            "name: r\nportSelector: {ports: [1], protocol: tcp}\ningress:\n  - except: 10.0.0.0/8\n"
            "  - subnet: 10.0.0.0\n  - subnet: 10.0.0.0/8\n    except: nope\n"
        ),
        [
            "NetworkRuleConfig/r: ingress[0].subnet: invalid subnet: subnet is required",
            'NetworkRuleConfig/r: ingress[1].subnet: invalid subnet "10.0.0.0" (must be a CIDR)',
            'NetworkRuleConfig/r: ingress[2].except: invalid except "nope" (must be a CIDR)',
        ],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in CASES], ids=[n for n, _, _ in CASES])
def test_invalid(text: str, expected: list[str]) -> None:
    assert errors(text) == expected


def test_talos_bond_example_gives_exactly_three_errors() -> None:
    text = net(
        BOND + "    mode: roundrobin\n    updelay: 100\n    packetsPerSlave: 8\n    adActorSysPrio: 48\n"
        "    interfaces: [eth0, eth1]\n"
    )
    assert errors(text) == [
        f"{P}[0].bond.mode: invalid bond type roundrobin",
        f"{P}[0].bond.updelay: bond.upDelay can't be set if miiMon is zero",
        f"{P}[0].bond.adActorSysPrio: bond.adActorSysPrio is only available in 802.3ad mode",
    ]


def test_empty_bond_is_valid() -> None:
    assert problems(net("- interface: bond0\n  bond: {}\n")) == ([], [])


def test_ignored_entry_skips_per_entry_checks() -> None:
    assert (
        errors(net("- interface: eth0\n  ignore: true\n  addresses: [bogus]\n  vlans: [{vlanId: 0}]\n")) == []
    )


def test_several_errors_reported_together() -> None:
    text = (
        net(
            "- interface: eth0\n  mtu: nine\n  addresses: [10.0.0.1/33]\n"
            "- interface: eth1\n  vlans: [{vlanId: 5000}]\n  bond: {mode: fast}\n",
            mtype="worker",
            extra="  instal: {}\n",
        )
        + "---\napiVersion: v1alpha1\nkind: NetworkRuleConfig\nname: r\nportSelector: {ports: ['80'], protocol: tcp}\n"
    )
    errs = errors(text)
    assert errs == [
        'v1alpha1: machine.instal: unknown key (did you mean "install"?)',
        f"{P}[0].mtu: must be an integer",
        f'{P}[0].addresses[0]: invalid CIDR address "10.0.0.1/33"',
        f"{P}[1].bond.mode: invalid bond type fast",
        f"{P}[1].vlans[0].vlanId: must be 1-4094",
        'NetworkRuleConfig/r: portSelector.ports[0]: invalid port range: "80"',
    ]


def test_decode_error_does_not_repeat_as_rule_error() -> None:
    # a vlanId that is not an integer is reported once (not also as "must be 1-4094")
    assert errors(net("- interface: eth0\n  vlans: [{vlanId: abc}]\n")) == [
        f"{P}[0].vlans[0].vlanId: must be an integer"
    ]


@pytest.mark.parametrize(
    ("mtype", "warning"),
    [
        ("join", 'warning: v1alpha1: machine.type: use "worker" instead of "join" for machine type'),
        ("''", 'warning: v1alpha1: machine.type: use "worker" instead of "" for machine type'),
    ],
)
def test_machine_type_warnings(mtype: str, warning: str) -> None:
    assert problems(f"machine:\n  type: {mtype}\n") == ([], [warning])


def test_cidr_is_deprecated_but_valid() -> None:
    errs, warns = problems(net("- interface: eth0\n  cidr: 10.0.0.1/24\n"))
    assert errs == []
    assert warns == [
        f'warning: {P}[0].cidr: "eth0": machine.network.interface.cidr is deprecated, '
        "please use machine.network.interface.addresses"
    ]


def test_nameserver_not_ip_is_a_warning() -> None:
    errs, warns = problems("machine:\n  type: worker\n  network:\n    nameservers: [1.1.1.1, dns.example]\n")
    assert errs == []
    assert warns == [
        'warning: v1alpha1: machine.network.nameservers[1]: "dns.example" is not an IP address; it is ignored'
    ]


def test_warnings_are_kept_with_errors() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("machine:\n  type: join\n  bogus: 1\n")
    assert info.value.lines() == [
        "v1alpha1: machine.bogus: unknown key",
        'warning: v1alpha1: machine.type: use "worker" instead of "join" for machine type',
    ]
