"""The kernel command line as a network configuration source (config.md Part B).

Pure: the only outside input is the host's current link list, passed in. The
parser never raises on bad input: a failed parse returns the error text and the
partial result that the operator configuration still honours (§B.8).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from netd.config.models import (
    BOND_AD_SELECT,
    BOND_ARP_ALL_TARGETS,
    BOND_ARP_VALIDATE,
    BOND_FAIL_OVER_MAC,
    BOND_LACP_RATES,
    BOND_MODES,
    BOND_PRIMARY_RESELECT,
    BOND_XMIT_HASH_POLICIES,
)
from netd.config.names import vlan_link_name
from netd.netip import Addr, Prefix, format_addr, parse_addr

# Name-valued bond options (config.md §B.5): cmdline key → (CmdlineBond field, names, error wording).
_NAME_OPTIONS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "mode": ("mode", BOND_MODES, "invalid bond type"),
    "xmit_hash_policy": ("xmit_hash_policy", BOND_XMIT_HASH_POLICIES, "invalid xmit hash policy"),
    "lacp_rate": ("lacp_rate", BOND_LACP_RATES, "invalid lacp rate"),
    "arp_validate": ("arp_validate", BOND_ARP_VALIDATE, "invalid arp_validate mode"),
    "arp_all_targets": ("arp_all_targets", BOND_ARP_ALL_TARGETS, "invalid arp_all_targets mode"),
    "primary_reselect": ("primary_reselect", BOND_PRIMARY_RESELECT, "invalid primary_reselect mode"),
    "fail_over_mac": ("fail_over_mac", BOND_FAIL_OVER_MAC, "invalid fail_over_mac value"),
    "ad_select": ("ad_select", BOND_AD_SELECT, "invalid ad_select mode"),
}
_INT_OPTIONS = {
    "miimon": "miimon",
    "updelay": "updelay",
    "downdelay": "downdelay",
    "arp_interval": "arp_interval",
    "resend_igmp": "resend_igmp",
    "min_links": "min_links",
    "lp_interval": "lp_interval",
    "packets_per_slave": "packets_per_slave",
    "num_grat_arp": "num_peer_notif",
    "num_unsol_na": "num_peer_notif",
    "all_slaves_active": "all_slaves_active",
}

_DECIMAL = re.compile(r"[0-9]+")

DEFAULT_ROUTE_METRIC = 1024  # config.md §B.4: default route metric 1024 + entry index
DEFAULT_BOND_MEMBERS = ("eth0", "eth1")


@dataclass(frozen=True)
class HostLink:
    """A link of the host at parse time: for ``enx<MAC>``, the default link and bond ``primary``."""

    name: str
    mac: str = ""
    loopback: bool = False
    index: int = 0


@dataclass(frozen=True)
class CmdlineBond:
    """A ``bond=`` master's options as the command line gives them (config.md §B.5).

    Plain data (the config package knows no resource specs): option names as
    text, the first allowed name when not given; ``numbers`` maps BondMasterSpec
    field names to values. The link config controller builds the spec, with
    the build-time defaults applied.
    """

    mode: str = BOND_MODES[0]
    xmit_hash_policy: str = BOND_XMIT_HASH_POLICIES[0]
    lacp_rate: str = BOND_LACP_RATES[0]
    arp_validate: str = BOND_ARP_VALIDATE[0]
    arp_all_targets: str = BOND_ARP_ALL_TARGETS[0]
    primary: int = 0  # ifindex of the primary slave at parse time
    primary_reselect: str = BOND_PRIMARY_RESELECT[0]
    fail_over_mac: str = BOND_FAIL_OVER_MAC[0]
    ad_select: str = BOND_AD_SELECT[0]
    numbers: dict[str, int] = field(default_factory=dict)


@dataclass
class CmdlineLink:
    name: str
    up: bool = True
    logical: bool = False
    mtu: int = 0
    kind: str = ""
    type: str = ""  # LinkType name; "" = not set
    parent: str = ""
    vlan_id: int = 0
    vlan_protocol: str = ""
    bond: CmdlineBond | None = None
    master: str = ""
    slave_index: int = 0


@dataclass(frozen=True)
class CmdlineAddress:
    prefix: Prefix
    link: str

    @property
    def family(self) -> str:
        return "inet4" if self.prefix.version == 4 else "inet6"


@dataclass(frozen=True)
class CmdlineRoute:
    link: str
    metric: int
    scope: str  # "global" or "link"
    gateway: Addr | None = None
    dst: Prefix | None = None
    src: Addr | None = None

    @property
    def family(self) -> str:
        ref = self.gateway if self.gateway is not None else (self.dst.ip if self.dst else None)
        return "inet6" if ref is not None and ref.version == 6 else "inet4"


@dataclass
class CmdlineNetworking:
    """Everything networking takes from the command line (config.md §B.9)."""

    hostname: str | None = None
    addresses: list[CmdlineAddress] = field(default_factory=list)
    routes: list[CmdlineRoute] = field(default_factory=list)
    resolvers: list[Addr] = field(default_factory=list)
    time_servers: list[str] = field(default_factory=list)
    ignored_links: list[str] = field(default_factory=list)
    dhcp_links: list[str] = field(default_factory=list)
    links: list[CmdlineLink] = field(default_factory=list)


@dataclass
class CmdlineResult:
    """``networking`` is None when the parse failed; ``error`` then says why, and
    ``ignored_links``/``dhcp_links`` keep what the operator configuration still uses."""

    networking: CmdlineNetworking | None
    error: str | None = None
    ignored_links: list[str] = field(default_factory=list)
    dhcp_links: list[str] = field(default_factory=list)


class CmdlineError(Exception):
    pass


def tokenize(cmdline: str) -> dict[str, list[str]]:
    """Whitespace-split ``key=value`` tokens (§B.1); a key may repeat."""
    out: dict[str, list[str]] = {}
    for tok in cmdline.split():
        key, _, value = tok.partition("=")
        out.setdefault(key, []).append(value)
    return out


def split_ip_fields(value: str) -> list[str]:
    """Split an ``ip=`` value at colons outside brackets, then strip brackets (§B.4)."""
    fields: list[str] = []
    depth = 0
    cur: list[str] = []
    for ch in value:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == ":" and depth == 0:
            fields.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    fields.append("".join(cur))
    return [f.strip("[]") for f in fields]


def _mask_bits(text: str) -> int:
    """A netmask field: decimal prefix length, or a mask written as an address."""
    if _DECIMAL.fullmatch(text):
        return int(text)
    mask = parse_addr(text)
    bits = int(mask)
    width = mask.max_prefixlen
    ones = width - (~bits & ((1 << width) - 1)).bit_length()
    contiguous = bits == ((1 << width) - 1) ^ ((1 << (width - ones)) - 1)
    return ones if contiguous else 0


def _resolve_device(name: str, links: list[HostLink]) -> str:
    if name.startswith("enx") and len(name) == 15:
        want = name[3:].lower()
        for link in links:
            if link.mac.replace(":", "").lower() == want:
                return link.name
        raise CmdlineError(f"cmdline device parse failure: interface by MAC not found {name}")
    return name


def default_link(links: list[HostLink]) -> str:
    """The first non-loopback link in byte-wise name order, or ""."""
    names = sorted(link.name for link in links if not link.loopback)
    return names[0] if names else ""


@dataclass
class _IpEntry:
    link: str = ""
    address: Prefix | None = None
    gateway: Addr | None = None
    dhcp: bool = False


def _parse_ip(value: str, links: list[HostLink], net: CmdlineNetworking) -> _IpEntry | None:
    fields = split_ip_fields(value)
    if len(fields) == 1 and fields[0] == "dhcp":
        return None
    if len(fields) == 2 and fields[1] == "dhcp":
        return _IpEntry(link=_resolve_device(fields[0], links) if fields[0] else "", dhcp=True)
    entry = _IpEntry()
    client: Addr | None = None
    mask: int | None = None
    for pos, text in enumerate(fields[:10]):
        if not text:
            continue
        if pos == 0:
            try:
                client = parse_addr(text)
            except ValueError as e:
                raise CmdlineError(f"cmdline address parse failure: {e}") from None
        elif pos == 2:
            try:
                entry.gateway = parse_addr(text)
            except ValueError as e:
                raise CmdlineError(f"cmdline gateway parse failure: {e}") from None
        elif pos == 3:
            try:
                mask = _mask_bits(text)
            except ValueError as e:
                raise CmdlineError(f"cmdline netmask parse failure: {e}") from None
        elif pos == 4:
            if net.hostname is None:
                net.hostname = text
        elif pos == 5:
            entry.link = _resolve_device(text, links)
        elif pos == 6:
            entry.dhcp = text == "dhcp"
        elif pos in (7, 8, 9):
            try:
                ip = parse_addr(text)
            except ValueError as e:
                raise CmdlineError(f"error parsing DNS IP: {e}") from None
            if pos == 9:
                net.time_servers.append(format_addr(ip))
            else:
                net.resolvers.append(ip)
    if client is not None:
        bits = client.max_prefixlen if mask is None else mask
        if bits > client.max_prefixlen:
            raise CmdlineError(f"cmdline netmask parse failure: prefix length {bits} too long")
        entry.address = ipaddress.ip_interface((client, bits))
    if not entry.link:
        entry.link = default_link(links)
    return entry


def _parse_bond(value: str, links: list[HostLink]) -> list[CmdlineLink]:
    fields = [f for f in value.split(":")[:4]]
    name = fields[0]
    members = [m for m in fields[1].split(",") if m] if len(fields) > 1 and fields[1] else []
    if not members:
        members = list(DEFAULT_BOND_MEMBERS)
    names: dict[str, Any] = {}  # CmdlineBond field → option name
    numbers: dict[str, int] = {}
    primary = 0
    if len(fields) > 2 and fields[2]:
        for item in fields[2].split(","):
            key, eq, rest = item.partition("=")
            val = rest.split("=", 1)[0]
            known = (
                key in _NAME_OPTIONS
                or key in _INT_OPTIONS
                or key in ("primary", "use_carrier", "arp_ip_target")
            )
            if not known:
                raise CmdlineError(f"unknown bond option: {key}")
            if not eq:
                raise CmdlineError(f"error parsing bond option {key}: no value")
            if key in _NAME_OPTIONS:
                attr, allowed, wording = _NAME_OPTIONS[key]
                if val not in allowed and val != "":
                    raise CmdlineError(f"error setting bond master: {wording} {val}")
                names[attr] = val or allowed[0]
            elif key == "primary":
                idx = next((link.index for link in links if link.name == val), None)
                if idx is None:
                    raise CmdlineError(f"error setting bond master: link {val!r} not found")
                primary = idx
            elif key == "arp_ip_target":
                continue
            else:
                if not _DECIMAL.fullmatch(val):
                    raise CmdlineError(f"error parsing bond option {key}: invalid syntax {val!r}")
                number = int(val)
                if key != "use_carrier":  # any value leaves it true: only 1 sets it, to its default
                    numbers[_INT_OPTIONS[key]] = number
    mtu = 0
    if len(fields) > 3 and fields[3]:
        if not _DECIMAL.fullmatch(fields[3]):
            raise CmdlineError(f"error parsing bond MTU: invalid syntax {fields[3]!r}")
        mtu = int(fields[3])
    bond = dataclasses.replace(CmdlineBond(primary=primary, numbers=numbers), **names)
    master = CmdlineLink(name=name, logical=True, kind="bond", type="ether", mtu=mtu, bond=bond)
    slaves = [CmdlineLink(name=m, master=name, slave_index=i) for i, m in enumerate(members)]
    return [master, *slaves]


def _parse_vlan(value: str) -> CmdlineLink:
    vlan_name, sep, parent = value.partition(":")
    if not sep or "." not in vlan_name:
        raise CmdlineError(f"malformed vlan commandline argument: {value}")
    id_text = vlan_name.split(".", 1)[1]
    if not _DECIMAL.fullmatch(id_text):
        raise CmdlineError("unable to parse vlan")
    vid = int(id_text)
    return CmdlineLink(
        name=vlan_link_name(parent, vid),
        logical=True,
        kind="vlan",
        type="ether",
        parent=parent,
        vlan_id=vid,
        vlan_protocol="802.1q",
    )


def parse_cmdline(cmdline: str, links: list[HostLink]) -> CmdlineResult:
    """Parse the networking keys of a kernel command line, in the order of §B.1."""
    tokens = tokenize(cmdline)
    net = CmdlineNetworking()
    net.ignored_links = list(tokens.get("talos.network.interface.ignore", []))
    dhcp_so_far: list[str] = []
    try:
        if "talos.hostname" in tokens:
            net.hostname = tokens["talos.hostname"][0]
        entries: list[_IpEntry] = []
        for value in tokens.get("ip", []):
            entry = _parse_ip(value, links, net)
            if entry is None:
                continue
            entries.append(entry)
            if entry.dhcp:
                dhcp_so_far.append(entry.link)
        link_specs: list[CmdlineLink] = []
        for i, e in enumerate(entries):
            metric = DEFAULT_ROUTE_METRIC + i
            link_specs.append(CmdlineLink(name=e.link))
            if e.address is not None:
                net.addresses.append(CmdlineAddress(e.address, e.link))
            if e.gateway is not None:
                net.routes.append(CmdlineRoute(e.link, metric, "global", gateway=e.gateway))
                if e.gateway.version == 4 and (e.address is None or e.gateway not in e.address.network):
                    net.routes.append(
                        CmdlineRoute(
                            e.link,
                            metric,
                            "link",
                            dst=ipaddress.IPv4Interface((e.gateway, 32)),
                            src=e.address.ip if e.address is not None else None,
                        )
                    )
        net.dhcp_links = list(dhcp_so_far)
        if "bond" in tokens:
            link_specs.extend(_parse_bond(tokens["bond"][0], links))
        if "vlan" in tokens:
            vlan = _parse_vlan(tokens["vlan"][0])
            for i, spec in enumerate(link_specs):
                if spec.name == vlan.name:
                    link_specs[i] = vlan
                    break
            else:
                link_specs.append(vlan)
    except CmdlineError as e:
        return CmdlineResult(None, str(e), list(net.ignored_links), dhcp_so_far)
    collapsed: dict[str, CmdlineLink] = {}
    for spec in link_specs:
        if spec.name:
            collapsed[spec.name] = spec  # the later one wins
    net.links = list(collapsed.values())
    return CmdlineResult(net, None, list(net.ignored_links), list(net.dhcp_links))
