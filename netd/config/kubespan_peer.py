"""Validation of ``KubeSpanPeerConfig`` documents (our extension, issue 13): a machine that
is not a node, joined to the KubeSpan mesh as a static WireGuard peer of every node.

::

    apiVersion: v1alpha1
    kind: KubeSpanPeerConfig
    name: laptop                                      # unique; 1-63 of [A-Za-z0-9._-]
    publicKey: 3LPkGJvE0l3Ue9Bq1SBGq4+ZBXb6L8ZCgZyMVnXKjEo=   # unique; base64 of 32 bytes
    allowedIPs: [fdc5:53c4:ab54:8602:3d3a:c9a:52d:1fb2/128]  # non-empty; CIDR prefixes
    endpoint: 198.51.100.7:51820                      # optional ip:port ([v6]:port)

Each check appends to a :class:`Checker`, as :mod:`netd.config.routing` does, so every
problem of every document is reported at once in the usual ``<doc>: <path>: <message>``
form; :func:`parse_peer_endpoint` and :func:`parse_allowed_ip` are what the KubeSpan
config derivation uses after loading, so a value that passed here converts there.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from netd.netip import Addr, Prefix, parse_addr, parse_prefix

from .errors import Path
from .models import KubeSpanPeerConfig
from .validate import Checker, _wg_key_error

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_ENDPOINT_HINT = "must be ip:port, e.g. 198.51.100.7:51820 or [2001:db8::7]:51820"


def parse_allowed_ip(text: str) -> Prefix:
    """One ``allowedIPs`` entry: a CIDR prefix without host bits, not a default route."""
    try:
        prefix = parse_prefix(text)
    except ValueError:
        raise ValueError(f'invalid prefix "{text}" (must be a CIDR, e.g. fd00::1/128)') from None
    if prefix.ip != prefix.network.network_address:
        raise ValueError(f'prefix "{text}" has host bits set (did you mean {prefix.network}?)')
    if prefix.network.prefixlen == 0:
        raise ValueError(f'prefix "{text}" would send all of a node\'s traffic to this peer')
    return prefix


def parse_peer_endpoint(text: str) -> tuple[Addr, int]:
    """``ip:port`` (``[ipv6]:port``), as Go's ``netip.ParseAddrPort``: an IP literal, no
    zone, port 1-65535; ValueError naming the text."""
    host, sep, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    if not sep or not host or "%" in host or not (port.isascii() and port.isdigit()):
        raise ValueError(f'invalid endpoint "{text}": {_ENDPOINT_HINT}')
    try:
        ip = parse_addr(host)
    except ValueError:
        raise ValueError(f'invalid endpoint "{text}": {_ENDPOINT_HINT}') from None
    if bracketed != (ip.version == 6):
        raise ValueError(f'invalid endpoint "{text}": an IPv6 address needs brackets, IPv4 none')
    if not 1 <= int(port) <= 0xFFFF:
        raise ValueError(f'invalid endpoint "{text}": port must be 1-65535')
    if ip.is_unspecified or ip.is_multicast:
        raise ValueError(f'invalid endpoint "{text}": not a unicast address')
    return ip, int(port)


def check_kubespan_peer(c: Checker, peer: KubeSpanPeerConfig) -> None:
    """The rules one ``KubeSpanPeerConfig`` can break on its own."""
    if not peer.name:
        c.error(("name",), 'name is required: the machine\'s name, e.g. "laptop"')
    elif not _NAME.fullmatch(peer.name):
        c.error(("name",), f'invalid name "{peer.name}": 1-63 letters, digits, ".", "-" or "_"')
    if not peer.public_key:
        c.error(("publicKey",), "publicKey is required: the machine's WireGuard public key (base64)")
    elif (problem := _wg_key_error(peer.public_key)) is not None:
        c.error(("publicKey",), f"public key invalid: {problem}")
    if not peer.allowed_ips:
        c.error(("allowedIPs",), "allowedIPs is required: at least the machine's KubeSpan address /128")
    seen: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, int] = {}
    for k, text in enumerate(peer.allowed_ips):
        path: Path = ("allowedIPs", k)
        try:
            net = parse_allowed_ip(text).network
        except ValueError as e:
            c.error(path, str(e))
            continue
        for other, j in seen.items():
            if net.version == other.version and net.overlaps(other):
                c.error(path, f'"{text}" overlaps allowedIPs[{j}] ({other})')
                break
        seen.setdefault(net, k)
    if peer.endpoint:
        try:
            parse_peer_endpoint(peer.endpoint)
        except ValueError as e:
            c.error(("endpoint",), str(e))


def cross_peer_documents(peers: Sequence[tuple[str, KubeSpanPeerConfig]]) -> list[tuple[str, Path, str]]:
    """Problems between ``KubeSpanPeerConfig`` documents: one public key in two (one
    WireGuard peer), a prefix in two (WireGuard gives it to one peer only). Names are unique
    already (the loader reports a second ``KubeSpanPeerConfig/<name>`` as a duplicate).

    Returns ``(label, path, message)``; the loader adds the line numbers.
    """
    out: list[tuple[str, Path, str]] = []
    keys: dict[str, str] = {}
    nets: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = []
    for label, peer in peers:
        if peer.public_key:
            if peer.public_key in keys:
                out.append((label, ("publicKey",), f"public key is also used by {keys[peer.public_key]}"))
            else:
                keys[peer.public_key] = label
        mine: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for k, text in enumerate(peer.allowed_ips):
            try:
                net = parse_allowed_ip(text).network
            except ValueError:
                continue
            for o, owner in nets:
                if o.version == net.version and o.overlaps(net):
                    out.append((label, ("allowedIPs", k), f'"{text}" overlaps {o} of {owner}'))
                    break
            mine.append(net)
        nets.extend((n, label) for n in mine)
    return out
