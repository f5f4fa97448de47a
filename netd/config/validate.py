"""The validation rules of config.md Part A, applied to decoded models.

Every rule reports a :class:`Problem` naming the YAML path; nothing stops at
the first problem.
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import urlsplit

from netd.netip import Prefix, parse_addr, parse_prefix

from .errors import Path, Problem, format_path
from .models import (
    BOND_AD_SELECT,
    BOND_ARP_ALL_TARGETS,
    BOND_ARP_VALIDATE,
    BOND_FAIL_OVER_MAC,
    BOND_LACP_RATES,
    BOND_MODES,
    BOND_PRIMARY_RESELECT,
    BOND_XMIT_HASH_POLICIES,
    FIREWALL_PROTOCOLS,
    Bond,
    ClusterConfig,
    Config,
    Device,
    DeviceVIPConfig,
    DeviceWireguardConfig,
    DHCPOptions,
    NetworkRuleConfig,
    Route,
    Vlan,
)

KUBESPAN_MIN_MTU = 1280

_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]*)(ns|us|µs|μs|ms|s|m|h)")
_DNS_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}(?:\.[A-Za-z0-9_][A-Za-z0-9_-]{0,62})*[._]?")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")


def parse_go_duration(text: str) -> float:
    """Go's ``time.ParseDuration``, in seconds. Bare digits (a YAML integer) are nanoseconds."""
    s = text
    sign = 1.0
    if s[:1] in ("+", "-"):
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s.isascii() and s.isdigit():
        return sign * int(s) * 1e-9
    if not s:
        raise ValueError(f'invalid duration "{text}"')
    pos = 0
    total = 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m or m.group(1) in ("", "."):
            raise ValueError(f'invalid duration "{text}"')
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def parse_ip_or_cidr(text: str) -> Prefix:
    """config.md "IP-or-CIDR": a CIDR (host bits kept), or a bare IP meaning /32 or /128."""
    if "/" in text:
        return parse_prefix(text)
    addr = parse_addr(text)
    return parse_prefix(f"{text}/{addr.max_prefixlen}")


def _is_ip(text: str) -> bool:
    try:
        parse_addr(text)
    except ValueError:
        return False
    return True


def _is_cidr(text: str) -> bool:
    try:
        parse_prefix(text)
    except ValueError:
        return False
    return True


def _wg_key_error(key: str) -> str | None:
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return f'"{key}" is not valid base64'
    if len(raw) != 32:
        return f'wrong key "{key}" length: {len(raw)} (want 32 bytes)'
    return None


def _split_host_port(text: str) -> tuple[str, str] | None:
    """Go's ``net.SplitHostPort``."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            return None
        host, port = text[1:end], text[end + 2 :]
        if "[" in host or "]" in port or "[" in port:
            return None
        return host, port
    host, sep, port = text.rpartition(":")
    if not sep or ":" in host or "[" in host or "]" in host or "]" in port:
        return None
    return host, port


def is_dns_name(name: str) -> bool:
    """Talos' DNS-name check for ``cluster.network.dnsDomain``."""
    return len(name.replace(".", "")) <= 255 and _DNS_NAME.fullmatch(name) is not None


class Checker:
    def __init__(self, doc: str, base: Path = ()) -> None:
        self.doc = doc
        self.base = base
        self.problems: list[Problem] = []

    def error(self, path: Path, message: str) -> None:
        self.problems.append(Problem(self.doc, format_path((*self.base, *path)), message))

    def warn(self, path: Path, message: str) -> None:
        self.problems.append(Problem(self.doc, format_path((*self.base, *path)), message, warning=True))

    # ------------------------------------------------------------------ shared pieces
    def ip_or_cidr(self, path: Path, text: str) -> None:
        if "/" in text:
            try:
                parse_prefix(text)
            except ValueError:
                self.error(path, f'invalid CIDR address "{text}"')
        elif not _is_ip(text):
            self.error(path, f'failed to parse IP address "{text}"')

    def route(self, path: Path, route: Route) -> None:
        if route.network and not _is_cidr(route.network):
            hint = " (must be a CIDR, e.g. 10.0.0.0/8)" if _is_ip(route.network) else ""
            self.error((*path, "network"), f'invalid network address "{route.network}"{hint}')
        if route.gateway and not _is_ip(route.gateway):
            self.error((*path, "gateway"), f'invalid gateway address "{route.gateway}"')
        if not route.network and not route.gateway:
            self.error(path, "either network or gateway should be set")
        if route.source and not _is_ip(route.source):
            self.error((*path, "source"), f'invalid source address "{route.source}" (must be an IP)')

    def vip(self, path: Path, vip: DeviceVIPConfig) -> None:
        if not _is_ip(vip.ip):
            self.error((*path, "ip"), f'failed to parse "{vip.ip}" as IP address')

    def dhcp_options(self, path: Path, opts: DHCPOptions) -> None:
        if opts.duidv6 and not _HEX.fullmatch(opts.duidv6):
            self.error((*path, "duidv6"), f'invalid DUID "{opts.duidv6}": must be an even-length hex string')

    # ------------------------------------------------------------------ v1alpha1
    def config(self, cfg: Config) -> None:
        machine = cfg.machine
        is_worker = False
        if cfg.has_machine:
            mtype = machine.type
            if mtype in ("controlplane", "init", "worker"):
                is_worker = mtype == "worker"
            elif mtype == "join":
                is_worker = True
                self.warn(("machine", "type"), 'use "worker" instead of "join" for machine type')
            elif mtype == "":
                is_worker = True
                self.warn(("machine", "type"), 'use "worker" instead of "" for machine type')
            else:
                self.error(("machine", "type"), f'unknown machine type "{mtype}"')
            self.network(cfg, is_worker)
        if cfg.has_cluster:
            self.cluster(cfg.cluster)

    def network(self, cfg: Config, is_worker: bool) -> None:
        net = cfg.network
        base: Path = ("machine", "network")
        devices = net.interfaces
        self.cross_device(base, devices)
        bonded: set[str] = set()
        for dev in devices:
            if dev.bond is not None:
                bonded.update(dev.bond.interfaces)
        for i, dev in enumerate(devices):
            dpath = (*base, "interfaces", i)
            if is_worker:
                if dev.vip is not None:
                    self.error(
                        (*dpath, "vip"), "virtual (shared) IP is not allowed on non-controlplane nodes"
                    )
                for j, vlan in enumerate(dev.vlans):
                    if vlan.vip is not None:
                        self.error(
                            (*dpath, "vlans", j, "vip"),
                            "virtual (shared) IP is not allowed on non-controlplane nodes",
                        )
            if not dev.ignore:
                self.device(dpath, dev, bonded)
        for i, ns in enumerate(net.nameservers):
            if not _is_ip(ns):
                self.warn((*base, "nameservers", i), f'"{ns}" is not an IP address; it is ignored')
        ks = net.kubespan
        if ks.enabled:
            kpath = (*base, "kubespan")
            if ks.mtu < KUBESPAN_MIN_MTU:
                self.error((*kpath, "mtu"), f"kubespan link MTU must be at least {KUBESPAN_MIN_MTU}")
            cluster = cfg.cluster
            if not cluster.discovery.enabled:
                self.error(
                    (*kpath, "enabled"), "cluster.discovery should be enabled when kubespan is enabled"
                )
            if not cluster.id:
                self.error((*kpath, "enabled"), "cluster.id should be set when kubespan is enabled")
            if not cluster.secret:
                self.error((*kpath, "enabled"), "cluster.secret should be set when kubespan is enabled")
            for j, entry in enumerate(ks.filters.endpoints):
                text = entry[1:] if entry.startswith("!") else entry
                if not (_is_cidr(text) or _is_ip(text)):
                    self.error(
                        (*kpath, "filters", "endpoints", j),
                        f'KubeSpan endpoint filter is not valid: "{entry}"',
                    )

    def cross_device(self, base: Path, devices: list[Device]) -> None:
        bond_of: dict[str, str] = {}
        bridge_of: dict[str, str] = {}
        for i, dev in enumerate(devices):
            dpath = (*base, "interfaces", i)
            name = dev.interface
            if dev.bond is not None and dev.bridge is not None:
                self.error(
                    dpath,
                    f'interface has both bridge and bond sections set "{name}": '
                    "config sections are mutually exclusive",
                )
            if dev.bond is not None:
                for k, member in enumerate(dev.bond.interfaces):
                    mpath = (*dpath, "bond", "interfaces", k)
                    if member in bond_of and bond_of[member] != name:
                        self.error(
                            mpath,
                            f'interface "{member}" is declared as part of two bonds: '
                            f'"{bond_of[member]}" and "{name}"',
                        )
                    if member in bridge_of:
                        self.error(
                            mpath,
                            f'interface "{member}" is declared as part of an interface and a bond: '
                            f'"{bridge_of[member]}" and "{name}"',
                        )
                    bond_of[member] = name
            if dev.bridge is not None:
                for k, port in enumerate(dev.bridge.interfaces):
                    ppath = (*dpath, "bridge", "interfaces", k)
                    if port in bridge_of and bridge_of[port] != name:
                        self.error(
                            ppath,
                            f'interface "{port}" is declared as part of two bridges: '
                            f'"{bridge_of[port]}" and "{name}"',
                        )
                    if port in bond_of:
                        self.error(
                            ppath,
                            f'interface "{port}" is declared as part of an interface and a bond: '
                            f'"{bond_of[port]}" and "{name}"',
                        )
                    bridge_of[port] = name

    def device(self, dpath: Path, dev: Device, bonded: set[str]) -> None:
        name = dev.interface
        if not name and dev.device_selector is None:
            self.error(dpath, "either interface or deviceSelector must be set")
        elif name and dev.device_selector is not None:
            self.error(dpath, "interface and deviceSelector are mutually exclusive")
        if dev.device_selector is not None and dev.device_selector.is_empty():
            self.error((*dpath, "deviceSelector"), "config section should contain at least one field")
        if dev.bond is not None:
            self.bond((*dpath, "bond"), dev.bond, name)
        if dev.wireguard is not None:
            self.wireguard((*dpath, "wireguard"), dev.wireguard)
        for j, vlan in enumerate(dev.vlans):
            self.vlan((*dpath, "vlans", j), vlan, name)
        if name and name in bonded and (dev.dhcp or dev.cidr or dev.addresses or dev.vip is not None):
            self.error(
                dpath,
                f'"{name}" is a bond member: a bonded interface shouldn\'t have any addressing '
                "methods configured (dhcp, addresses, cidr, vip)",
            )
        if dev.addresses and dev.cidr:
            self.error(dpath, "interface can't have both cidr and addresses set")
        if dev.cidr:
            self.warn(
                (*dpath, "cidr"),
                f'"{name}": machine.network.interface.cidr is deprecated, '
                "please use machine.network.interface.addresses",
            )
            self.ip_or_cidr((*dpath, "cidr"), dev.cidr)
        for k, addr in enumerate(dev.addresses):
            self.ip_or_cidr((*dpath, "addresses", k), addr)
        if dev.vip is not None:
            self.vip((*dpath, "vip"), dev.vip)
        for k, route in enumerate(dev.routes):
            self.route((*dpath, "routes", k), route)
        if dev.dhcp_options is not None:
            self.dhcp_options((*dpath, "dhcpOptions"), dev.dhcp_options)

    def bond(self, path: Path, bond: Bond, name: str) -> None:
        mode = bond.mode
        if mode and mode not in BOND_MODES:
            self.error((*path, "mode"), f"invalid bond type {mode}")
            mode = "balance-rr"
        mode = mode or "balance-rr"
        enums = (
            ("xmitHashPolicy", bond.xmit_hash_policy, BOND_XMIT_HASH_POLICIES, "invalid xmit hash policy"),
            ("lacpRate", bond.lacp_rate, BOND_LACP_RATES, "invalid lacp rate"),
            ("arpValidate", bond.arp_validate, BOND_ARP_VALIDATE, "invalid arp_validate mode"),
            ("arpAllTargets", bond.arp_all_targets, BOND_ARP_ALL_TARGETS, "invalid arp_all_targets mode"),
            (
                "primaryReselect",
                bond.primary_reselect,
                BOND_PRIMARY_RESELECT,
                "invalid primary_reselect mode",
            ),
            ("failOverMac", bond.fail_over_mac, BOND_FAIL_OVER_MAC, "invalid fail_over_mac value"),
            ("adSelect", bond.ad_select, BOND_AD_SELECT, "invalid ad_select mode"),
        )
        for key, value, allowed, message in enums:
            if value and value not in allowed:
                self.error((*path, key), f"{message} {value} (one of {', '.join(allowed)})")
        if bond.miimon == 0:
            if bond.updelay:
                self.error((*path, "updelay"), "bond.upDelay can't be set if miiMon is zero")
            if bond.downdelay:
                self.error((*path, "downdelay"), "bond.downDelay can't be set if miiMon is zero")
        else:
            if bond.updelay % bond.miimon:
                self.error((*path, "updelay"), "bond.upDelay should be a multiple of miiMon")
            if bond.downdelay % bond.miimon:
                self.error((*path, "downdelay"), "bond.downDelay should be a multiple of miiMon")
        if bond.arp_ip_target:
            self.error((*path, "arpIPTarget"), "bond.arpIPTarget is not supported")
        if bond.lacp_rate and mode != "802.3ad":
            self.error((*path, "lacpRate"), "bond.lacpRate is only available in 802.3ad mode")
        if bond.ad_actor_system:
            self.error((*path, "adActorSystem"), "bond.adActorSystem is not supported")
        if bond.arp_validate and mode in ("802.3ad", "balance-alb", "balance-tlb"):
            self.error((*path, "arpValidate"), f"bond.arpValidate is not available in {mode} mode")
        if bond.primary and mode not in ("active-backup", "balance-alb", "balance-tlb"):
            self.error((*path, "primary"), f"bond.primary is not available in {mode} mode")
        if bond.arp_interval > 0 and mode in ("802.3ad", "balance-alb", "balance-tlb"):
            self.error((*path, "arpInterval"), f"bond.arpInterval is not available in {mode} mode")
        if bond.packets_per_slave > 1 and mode != "balance-rr":
            self.error((*path, "packetsPerSlave"), f"bond.packetsPerSlave is not available in {mode} mode")
        if bond.tlb_dynamic_lb > 0 and mode not in ("balance-alb", "balance-tlb"):
            self.error((*path, "tlbDynamicLb"), f"bond.tlbDynamicLb is not available in {mode} mode")
        if bond.ad_actor_sys_prio > 0 and mode != "802.3ad":
            self.error((*path, "adActorSysPrio"), "bond.adActorSysPrio is only available in 802.3ad mode")
        if bond.ad_user_port_key > 0 and mode != "802.3ad":
            self.error((*path, "adUserPortKey"), "bond.adUserPortKey is only available in 802.3ad mode")
        if bond.interfaces and bond.device_selectors:
            self.error(
                path,
                f'interface "{name}" has both interfaces and deviceSelectors set: '
                "config sections are mutually exclusive",
            )
        for k, sel in enumerate(bond.device_selectors):
            if sel.is_empty():
                self.error((*path, "deviceSelectors", k), "config section should contain at least one field")

    def wireguard(self, path: Path, wg: DeviceWireguardConfig) -> None:
        if not wg.private_key:
            self.error((*path, "privateKey"), "private key is required (base64 of 32 bytes)")
        else:
            problem = _wg_key_error(wg.private_key)
            if problem:
                self.error((*path, "privateKey"), f"private key is invalid: {problem}")
        if not 0 <= wg.listen_port <= 0xFFFF:
            self.error((*path, "listenPort"), "must be between 0 and 65535")
        if not 0 <= wg.firewall_mark <= 0xFFFF_FFFF:
            self.error((*path, "firewallMark"), "must be between 0 and 4294967295")
        for k, peer in enumerate(wg.peers):
            ppath = (*path, "peers", k)
            problem = _wg_key_error(peer.public_key)
            if problem:
                self.error((*ppath, "publicKey"), f"public key invalid: {problem}")
            if peer.endpoint:
                hp = _split_host_port(peer.endpoint)
                ok = hp is not None and bool(hp[0])
                if hp is not None and ":" in hp[0] and not _is_ip(hp[0]):
                    ok = False
                if hp is not None and not (hp[1].isascii() and hp[1].isdigit() and 0 < int(hp[1]) <= 0xFFFF):
                    ok = False
                if not ok:
                    self.error(
                        (*ppath, "endpoint"), f'peer endpoint "{peer.endpoint}" is invalid (want host:port)'
                    )
            if peer.persistent_keepalive_interval:
                try:
                    seconds = parse_go_duration(peer.persistent_keepalive_interval)
                except ValueError:
                    self.error(
                        (*ppath, "persistentKeepaliveInterval"),
                        f'invalid duration "{peer.persistent_keepalive_interval}" (e.g. 25s, 1m30s)',
                    )
                else:
                    if seconds < 0:
                        self.error((*ppath, "persistentKeepaliveInterval"), "must not be negative")
            for m, allowed in enumerate(peer.allowed_ips):
                if not _is_cidr(allowed):
                    self.error(
                        (*ppath, "allowedIPs", m), f'peer allowed IP "{allowed}" is invalid: must be a CIDR'
                    )

    def vlan(self, path: Path, vlan: Vlan, parent: str) -> None:
        if not 1 <= vlan.vlan_id <= 4094:
            self.error((*path, "vlanId"), "must be 1-4094")
        if vlan.cidr and vlan.addresses:
            self.error(path, "vlan can't have both cidr and addresses set")
        if vlan.cidr:
            self.warn((*path, "cidr"), "cidr is deprecated, please use addresses")
            self.ip_or_cidr((*path, "cidr"), vlan.cidr)
        for k, addr in enumerate(vlan.addresses):
            self.ip_or_cidr((*path, "addresses", k), addr)
        for k, route in enumerate(vlan.routes):
            self.route((*path, "routes", k), route)
        if vlan.vip is not None:
            self.vip((*path, "vip"), vlan.vip)
        if vlan.dhcp_options is not None:
            self.dhcp_options((*path, "dhcpOptions"), vlan.dhcp_options)

    def cluster(self, cluster: ClusterConfig) -> None:
        cnet = cluster.network
        for key, values in (("podSubnets", cnet.pod_subnets), ("serviceSubnets", cnet.service_subnets)):
            for k, text in enumerate(values):
                if not _is_cidr(text):
                    self.error(("cluster", "network", key, k), f'invalid CIDR "{text}"')
        if not is_dns_name(cnet.dns_domain):
            self.error(("cluster", "network", "dnsDomain"), f'"{cnet.dns_domain}" is not a valid DNS name')
        disc = cluster.discovery
        if disc.service_registry_enabled:
            spath = ("cluster", "discovery", "registries", "service", "endpoint")
            endpoint = disc.registries.service.endpoint
            problem = _request_uri_error(endpoint)
            if problem:
                self.error(spath, f"cluster discovery service registry endpoint is invalid: {problem}")
            else:
                url = urlsplit(endpoint)
                if url.path not in ("", "/"):
                    self.error(spath, "cluster discovery service path should be empty")
            if not cluster.id:
                self.error(("cluster", "id"), "cluster discovery service requires cluster.id")
            if not cluster.secret:
                self.error(("cluster", "secret"), "cluster discovery service requires cluster.secret")
            else:
                try:
                    secret = base64.b64decode(cluster.secret.encode("ascii"), validate=True)
                except (binascii.Error, ValueError, UnicodeEncodeError):
                    self.error(("cluster", "secret"), "must be base64 (of 32 random bytes)")
                else:
                    if len(secret) not in (16, 24, 32):
                        self.error(
                            ("cluster", "secret"),
                            f"must be the base64 of a 16, 24 or 32 byte key (it is {len(secret)} bytes)",
                        )

    # ------------------------------------------------------------------ firewall
    def rule(self, rule: NetworkRuleConfig) -> None:
        if not rule.name:
            self.error(("name",), "name is required")
        sel = rule.port_selector
        if not sel.ports:
            self.error(("portSelector", "ports"), "portSelector.ports is required")
        order = sorted(range(len(sel.ports)), key=lambda i: sel.ports[i].lo)
        for pos, i in enumerate(order):
            cur = sel.ports[i]
            if cur.lo > cur.hi:
                self.error(("portSelector", "ports", i), f"invalid port range: {cur.lo}-{cur.hi}")
            if pos > 0:
                prev = sel.ports[order[pos - 1]]
                if cur.lo <= prev.hi:
                    self.error(
                        ("portSelector", "ports", i),
                        f"invalid port range: {cur}, overlaps with {prev}",
                    )
        if not sel.protocol:
            self.error(("portSelector", "protocol"), "protocol is required (tcp, udp, icmp or icmpv6)")
        elif sel.protocol not in FIREWALL_PROTOCOLS:
            self.error(
                ("portSelector", "protocol"),
                f'unknown protocol "{sel.protocol}" (one of tcp, udp, icmp, icmpv6)',
            )
        for k, ing in enumerate(rule.ingress):
            if not ing.subnet:
                self.error(("ingress", k, "subnet"), "invalid subnet: subnet is required")
            elif not _is_cidr(ing.subnet):
                self.error(("ingress", k, "subnet"), f'invalid subnet "{ing.subnet}" (must be a CIDR)')
            if ing.except_ and not _is_cidr(ing.except_):
                self.error(("ingress", k, "except"), f'invalid except "{ing.except_}" (must be a CIDR)')


def _request_uri_error(text: str) -> str | None:
    """Go's ``url.ParseRequestURI``: an absolute URL or an absolute path."""
    if not text:
        return 'parse "": empty url'
    if text.startswith("/"):
        return None
    scheme, sep, _ = text.partition(":")
    if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        return f'parse "{text}": invalid URI for request'
    try:
        url = urlsplit(text)
        _ = url.port
    except ValueError as exc:
        return f'parse "{text}": {exc}'
    if any(c in text for c in " \t\r\n"):
        return f'parse "{text}": invalid character in URL'
    return None
