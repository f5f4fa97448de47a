"""A DHCPv4 lease: its times (RFC 2131 §4.4.5), its specs (operators.md §2.9 with §0's lease
lifetimes), and its file in the operator's state dir (INIT-REBOOT after a restart).

The lease is persisted as the ACK itself (hex) plus the time it was obtained, so what a restarted
operator republishes is computed by the same code from the same bytes: the specs are equal and the
generic controllers adopt the kernel objects without touching them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from netd.kernel.files import write_if_changed
from netd.resources.address import AddressSpec
from netd.resources.enums import ConfigLayer, Family, RouteProtocol, RouteType, RoutingTable
from netd.resources.hostname import MAX_FQDN_LEN, MAX_HOSTNAME_LEN, HostnameSpec
from netd.resources.ids import HOSTNAME_ID, RESOLVERS_ID, TIMESERVERS_ID
from netd.resources.link import LinkSpec
from netd.resources.resolver import ResolverSpec
from netd.resources.route import RouteSpec
from netd.resources.timeserver import TimeServerSpec
from operators.base import OperatorOutput

from . import options as o
from .packet import DecodeError, Message, decode, encode

log = logging.getLogger("operators.dhcp4")

LEASE_FILE = "lease.json"
T1_FACTOR = 0.5  # RFC 2131 §4.4.5 defaults
T2_FACTOR = 0.875
INFINITE = 0xFFFFFFFF


@dataclass(frozen=True)
class Lease:
    ack: Message
    obtained: float  # epoch seconds, when the REQUEST that got the ACK was sent (RFC 2131 §4.4.1)
    lease_time: float
    t1: float  # seconds after obtained
    t2: float

    @classmethod
    def from_ack(cls, ack: Message, obtained: float, default_lease: float, min_t1: float = 0.0) -> Lease:
        lt = o.u32(ack.options.get(o.LEASE_TIME))
        lease_time = float(lt) if lt is not None else default_lease
        t1v, t2v = o.u32(ack.options.get(o.RENEWAL_TIME)), o.u32(ack.options.get(o.REBINDING_TIME))
        t1 = float(t1v) if t1v is not None else lease_time * T1_FACTOR
        t2 = float(t2v) if t2v is not None else lease_time * T2_FACTOR
        # Inconsistent server values fall back to the defaults (T1 < T2 < lease).
        if not t2 < lease_time and lt != INFINITE:
            t2 = lease_time * T2_FACTOR
        if not t1 < t2:
            t1 = min(lease_time * T1_FACTOR, t2)
        t1 = max(t1, min(min_t1, t2))
        return cls(ack, obtained, lease_time, t1, t2)

    @property
    def address(self) -> ipaddress.IPv4Address:
        return self.ack.yiaddr

    @property
    def server(self) -> ipaddress.IPv4Address | None:
        return self.ack.server_id

    @property
    def infinite(self) -> bool:
        return self.lease_time >= INFINITE

    @property
    def expires(self) -> float:
        return float("inf") if self.infinite else self.obtained + self.lease_time

    @property
    def renew_at(self) -> float:
        return self.obtained + self.t1

    @property
    def rebind_at(self) -> float:
        return self.obtained + self.t2

    def prefix(self) -> ipaddress.IPv4Interface:
        """yiaddr/len(option 1); without a valid mask the classful one (operators.md §2.11 Q3)."""
        bits = o.prefix_len(o.ip(self.ack.options.get(o.SUBNET_MASK)))
        if bits is None:
            first = self.address.packed[0]
            bits = 8 if first < 128 else 16 if first < 192 else 24
            log.warning("DHCP lease %s without a valid subnet mask: using /%d", self.address, bits)
        return ipaddress.IPv4Interface((self.address, bits))

    # ---- persistence -------------------------------------------------------------------------

    def to_json(self) -> str:
        return json.dumps({"ack": encode(self.ack).hex(), "obtained": self.obtained})

    def save(self, state_dir: Path) -> None:
        write_if_changed(str(state_dir / LEASE_FILE), self.to_json().encode(), 0o600)

    @classmethod
    def load(cls, state_dir: Path, default_lease: float, min_t1: float = 0.0) -> Lease | None:
        path = state_dir / LEASE_FILE
        try:
            data = json.loads(path.read_text())
            ack = decode(bytes.fromhex(data["ack"]))
            return cls.from_ack(ack, float(data["obtained"]), default_lease, min_t1)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, DecodeError) as e:
            log.warning("ignoring unreadable DHCP lease %s: %s", path, e)
            return None

    @staticmethod
    def forget(state_dir: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(state_dir / LEASE_FILE)


def _time(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(epoch), dt.UTC)


def hostname_spec(ack: Message) -> HostnameSpec | None:
    """operators.md §2.9: option 12 split at the first dot, option 15 replacing the domain;
    None when absent or invalid (hostname 1..63, FQDN ≤ 253)."""
    name = o.text(ack.options.get(o.HOSTNAME))
    if not name:
        return None
    host, _, domain = name.partition(".")
    domain = o.text(ack.options.get(o.DOMAIN_NAME)) or domain
    if not 1 <= len(host) <= MAX_HOSTNAME_LEN or len(f"{host}.{domain}" if domain else host) > MAX_FQDN_LEN:
        return None
    return HostnameSpec(hostname=host, domainname=domain, layer=ConfigLayer.OPERATOR)


def lease_output(lease: Lease, link: str, metric: int, hostname: HostnameSpec | None) -> OperatorOutput:
    """The specs of a lease (operators.md §2.9; §0: the address lives as long as the lease)."""
    ack = lease.ack
    p = lease.prefix()
    addr = AddressSpec.configured(p, link, ConfigLayer.OPERATOR)
    if not lease.infinite:
        until = _time(lease.expires)
        addr = addr.model_copy(update={"valid_until": until, "preferred_until": until})
    out = OperatorOutput(addresses={addr.id(): addr})

    def route(dst: ipaddress.IPv4Network | None, gw: ipaddress.IPv4Address | None) -> None:
        r = RouteSpec(
            family=Family.INET4,
            dst=None if dst is None else ipaddress.IPv4Interface((dst.network_address, dst.prefixlen)),
            gateway=gw,
            src=lease.address,
            out_link_name=link,
            table=RoutingTable.MAIN,
            priority=metric,
            type=RouteType.UNICAST,
            protocol=RouteProtocol.BOOT,
            layer=ConfigLayer.OPERATOR,
        ).normalized()
        out.routes.setdefault(r.id(), r)

    classless = o.classless_routes(ack.options.get(o.CLASSLESS_ROUTES))
    if classless:  # RFC 3442: option 121 wins, option 3 ignored entirely
        for cr in classless:
            route(cr.destination, cr.router)
    else:
        for gw in o.ip_list(ack.options.get(o.ROUTER)) or []:
            if gw.is_unspecified:
                continue
            if gw not in p.network:  # off-link router: a link route to it first (§2.9)
                route(ipaddress.IPv4Network((gw, 32)), None)
            route(None, gw)

    mtu = o.u16(ack.options.get(o.INTERFACE_MTU))
    if mtu is not None and mtu >= 68:
        out.links[link] = LinkSpec(name=link, mtu=mtu, up=True, layer=ConfigLayer.OPERATOR)
    dns = o.ip_list(ack.options.get(o.DNS_SERVERS))
    if dns:
        out.resolvers[RESOLVERS_ID] = ResolverSpec(dns_servers=list(dns), layer=ConfigLayer.OPERATOR)
    ntp = o.ip_list(ack.options.get(o.NTP_SERVERS))
    if ntp:
        out.timeservers[TIMESERVERS_ID] = TimeServerSpec(
            time_servers=[str(a) for a in ntp], layer=ConfigLayer.OPERATOR
        )
    if hostname is not None:
        out.hostnames[HOSTNAME_ID] = hostname
    return out
