"""Validation of the policy-routing documents: RoutingRuleConfig and LinkConfig
(routing-rules.md §1, §5).

Each check appends to a :class:`Checker`, so every problem of every document is
reported at once in the usual ``<doc>: <path>: <message>`` form. The parsing
helpers (:func:`parse_table`, :func:`parse_rule_prefix`) are what the config
controllers use after loading, so a value that passed here converts there.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from netd.netip import Prefix, parse_addr, parse_prefix

from .errors import Path, format_path
from .models import ROUTING_RULE_ACTIONS, Device, LinkConfig, RoutingRuleConfig
from .validate import Checker

#: Table names a config may use (linux/rtnetlink.h RT_TABLE_*), routing-rules.md §1.
TABLE_NAMES = {"default": 253, "main": 254, "local": 255}
MAX_TABLE = 0xFFFF_FFFF
#: Priorities no RoutingRuleConfig may use, and why (routing-rules.md §1; kubespan.md §7.3).
RESERVED_PRIORITIES = {
    0: "the kernel's local table rule",
    32500: "KubeSpan's rules",
    32766: "the kernel's main table rule",
    32767: "the kernel's default table rule",
}
MAX_RULE_PRIORITY = 32765
IFNAMSIZ = 16
_TABLE_HINT = "must be main, local, default or a number 1-4294967295"


def parse_table(text: str) -> int:
    """A table name or decimal number 1-4294967295, as its number; ValueError otherwise."""
    if text in TABLE_NAMES:
        return TABLE_NAMES[text]
    if text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_TABLE:
        return int(text)
    raise ValueError(f'invalid table "{text}": {_TABLE_HINT}')


def parse_rule_prefix(text: str) -> Prefix:
    """A rule's ``src``/``dst``: a CIDR prefix (Go's netip.ParsePrefix), host bits cleared
    because the kernel matches ``addr & mask`` and reports the prefix as it was given."""
    prefix = parse_prefix(text)
    return ipaddress.ip_interface((prefix.network.network_address, prefix.network.prefixlen))


def interface_name_error(name: str) -> str | None:
    """The kernel's ``dev_valid_name``: 1-15 bytes, no ``/``, ``:`` or whitespace, not ``.``/``..``."""
    if len(name.encode()) >= IFNAMSIZ:
        return f'invalid interface name "{name}": longer than {IFNAMSIZ - 1} bytes'
    if name in (".", "..") or any(c in "/:" or c.isspace() for c in name):
        return f'invalid interface name "{name}"'
    return None


def _family(prefix: Prefix) -> str:
    return f"IPv{prefix.version}"


# ---------------------------------------------------------------------------- RoutingRuleConfig


def check_routing_rule(c: Checker, rule: RoutingRuleConfig) -> None:
    """Every rule of routing-rules.md §1 that one document can break on its own."""
    if not rule.name:
        c.error(("name",), 'name is required: the rule priority, e.g. "1000"')
    elif not (rule.name.isascii() and rule.name.isdigit()) or int(rule.name) > MAX_TABLE:
        c.error(
            ("name",), f'invalid rule priority "{rule.name}": must be a decimal number 1-{MAX_RULE_PRIORITY}'
        )
    elif int(rule.name) in RESERVED_PRIORITIES:
        prio = int(rule.name)
        c.error(("name",), f"priority {prio} is reserved ({RESERVED_PRIORITIES[prio]})")
    elif int(rule.name) > MAX_RULE_PRIORITY:
        c.error(("name",), f"priority {int(rule.name)} is out of range: must be 1-{MAX_RULE_PRIORITY}")

    action = rule.action or "unicast"
    if action not in ROUTING_RULE_ACTIONS:
        c.error(("action",), f'unknown action "{action}" (one of {", ".join(ROUTING_RULE_ACTIONS)})')
    if rule.table:
        try:
            parse_table(rule.table)
        except ValueError as e:
            c.error(("table",), str(e))
    elif action == "unicast":
        c.error(("table",), "table is required for a unicast rule: " + _TABLE_HINT.removeprefix("must be "))

    if "fw_mask" in rule.model_fields_set and not rule.has_fw_mark:
        c.error(("fwMask",), "fwMask needs fwMark")

    prefixes: dict[str, Prefix] = {}
    for key in ("src", "dst"):
        text = getattr(rule, key)
        if not text:
            continue
        try:
            prefixes[key] = parse_rule_prefix(text)
        except ValueError:
            c.error((key,), f'invalid prefix "{text}" (must be a CIDR, e.g. 10.0.0.0/8)')
    if "src" in prefixes and "dst" in prefixes and prefixes["src"].version != prefixes["dst"].version:
        c.error(
            ("dst",),
            f'"{rule.dst}" is {_family(prefixes["dst"])} but src "{rule.src}" is {_family(prefixes["src"])}: '
            "a rule has one family",
        )
    for key, text in (("iifName", rule.iif_name), ("oifName", rule.oif_name)):
        if text and (msg := interface_name_error(text)) is not None:
            c.error((key,), msg)


# ---------------------------------------------------------------------------- LinkConfig


def _address_error(text: str, what: str) -> str | None:
    """An IP address given in a LinkConfig: valid and not unspecified."""
    try:
        ip = parse_addr(text)
    except ValueError:
        return f'invalid {what} "{text}"'
    if ip.is_unspecified:
        return f'{what} "{text}" is unspecified'
    return None


def check_link_config(c: Checker, link: LinkConfig) -> None:
    """The per-document rules of routing-rules.md §5."""
    if not link.name:
        c.error(("name",), "name is required: the link name, e.g. eth1")
    elif (msg := interface_name_error(link.name)) is not None:
        c.error(("name",), msg)
    for k, a in enumerate(link.addresses):
        path: Path = ("addresses", k, "address")
        if not a.address:
            c.error(path, "address is required")
            continue
        try:
            prefix = parse_prefix(a.address)
        except ValueError:
            c.error(path, f'invalid address "{a.address}" (must be a prefix, e.g. 10.0.0.2/24)')
            continue
        if prefix.ip.is_unspecified:
            c.error(path, f'address "{a.address}" is unspecified')
    for k, r in enumerate(link.routes):
        rpath: Path = ("routes", k)
        dst: Prefix | None = None
        if r.destination:
            try:
                dst = parse_prefix(r.destination)
            except ValueError:
                c.error((*rpath, "destination"), f'invalid destination "{r.destination}" (must be a CIDR)')
        for key, text in (("gateway", r.gateway), ("source", r.source)):
            if text and (msg := _address_error(text, key)) is not None:
                c.error((*rpath, key), msg)
        if r.gateway and dst is not None and not _address_error(r.gateway, "gateway"):
            gw = parse_addr(r.gateway)
            if gw.version != dst.version:
                c.error(
                    (*rpath, "gateway"),
                    f'gateway "{r.gateway}" is IPv{gw.version} but destination "{r.destination}" '
                    f"is IPv{dst.version}",
                )
        if r.table:
            try:
                parse_table(r.table)
            except ValueError as e:
                c.error((*rpath, "table"), str(e))


# ---------------------------------------------------------------------------- across documents


def cross_document(
    rules: Sequence[tuple[str, RoutingRuleConfig]],
    links: Sequence[tuple[str, LinkConfig]],
    devices: Sequence[Device],
) -> list[tuple[str, Path, str]]:
    """Problems between documents: one priority in two RoutingRuleConfigs (``"1000"`` and
    ``"01000"``), a link configured by a LinkConfig and ``machine.network.interfaces``.

    Returns ``(label, path, message)``; the loader adds the line numbers.
    """
    out: list[tuple[str, Path, str]] = []
    first: dict[int, str] = {}
    for label, rule in rules:
        if not (rule.name.isascii() and rule.name.isdigit()):
            continue
        prio = int(rule.name)
        if prio in first:
            out.append((label, ("name",), f"priority {prio} is also used by {first[prio]}"))
        else:
            first[prio] = label
    by_name = {d.interface: i for i, d in enumerate(devices) if d.interface}
    for label, link in links:
        if link.name in by_name:
            where = format_path(("machine", "network", "interfaces", by_name[link.name]))
            message = f"link {link.name} is also configured by v1alpha1 {where}: configure it in one place"
            out.append((label, ("name",), message))
    return out

