"""Link config: the default, cmdline and configuration layers of LinkSpec (netd.md §4.2).

A link that several sources talk about gets one spec per layer; the merge
folds them (merge.py).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable

from pydantic import BaseModel

from cosi import Context
from netd.config.cmdline import CmdlineBond, CmdlineNetworking
from netd.config.models import Bond, Device
from netd.config.validate import parse_go_duration
from netd.netip import parse_prefix
from netd.resources.enums import (
    ADSelect,
    ARPAllTargets,
    ARPValidate,
    BondMode,
    BondXmitHashPolicy,
    ConfigLayer,
    FailOverMAC,
    LACPRate,
    LinkType,
    PrimaryReselect,
    VLANProtocol,
)
from netd.resources.ids import vlan_link_name
from netd.resources.link import (
    LINK_SPEC_TYPE,
    BondMasterSpec,
    BridgeMasterSpec,
    BridgeSlave,
    LinkSpec,
    LinkStatus,
    STPSpec,
    VLANSpec,
    WireguardPeer,
    WireguardSpec,
)

from .sources import (
    LayeredConfigController,
    devices,
    host_links,
    ignored_devices,
    layered,
)

log = logging.getLogger("network.LinkConfigController")


def bond_master(
    mode: str,
    xmit_hash_policy: str,
    lacp_rate: str,
    arp_validate: str,
    arp_all_targets: str,
    primary: int,
    primary_reselect: str,
    fail_over_mac: str,
    ad_select: str,
    **numbers: int | bool,
) -> BondMasterSpec:
    """A BondMasterSpec from option names and numbers, with the build-time defaults (§A.8)."""
    return BondMasterSpec(
        mode=BondMode.from_name(mode),
        xmit_hash_policy=BondXmitHashPolicy.from_name(xmit_hash_policy),
        lacp_rate=LACPRate.from_name(lacp_rate),
        arp_validate=ARPValidate.from_name(arp_validate),
        arp_all_targets=ARPAllTargets.from_name(arp_all_targets),
        primary=primary,
        primary_reselect=PrimaryReselect.from_name(primary_reselect),
        fail_over_mac=FailOverMAC.from_name(fail_over_mac),
        ad_select=ADSelect.from_name(ad_select),
        **numbers,
    ).with_defaults()


def config_bond(b: Bond, index_of: dict[str, int]) -> BondMasterSpec:
    """The bond of a device. ``primary`` is resolved to the ifindex it has now; if that
    link does not exist the bond is still created, with every setting at zero (§A.8)."""
    primary = 0
    if b.primary:
        if b.primary not in index_of:
            log.error("bond primary %s does not exist; bond settings left at zero", b.primary)
            return BondMasterSpec()
        primary = index_of[b.primary]
    return bond_master(
        b.mode,
        b.xmit_hash_policy,
        b.lacp_rate,
        b.arp_validate,
        b.arp_all_targets,
        primary,
        b.primary_reselect,
        b.fail_over_mac,
        b.ad_select,
        miimon=b.miimon,
        updelay=b.updelay,
        downdelay=b.downdelay,
        arp_interval=b.arp_interval,
        resend_igmp=b.resend_igmp,
        min_links=b.min_links,
        lp_interval=b.lp_interval,
        packets_per_slave=b.packets_per_slave,
        num_peer_notif=b.num_peer_notif,
        tlb_logical_lb=b.tlb_dynamic_lb,
        all_slaves_active=b.all_slaves_active,
        use_carrier=b.use_carrier,
        ad_actor_sys_prio=b.ad_actor_sys_prio,
        ad_user_port_key=b.ad_user_port_key,
        peer_notify_delay=b.peer_notify_delay,
    )


def cmdline_bond(b: CmdlineBond) -> BondMasterSpec:
    """The bond of a ``bond=`` argument; ``use_carrier`` is always on (config.md §B.5)."""
    return bond_master(
        b.mode,
        b.xmit_hash_policy,
        b.lacp_rate,
        b.arp_validate,
        b.arp_all_targets,
        b.primary,
        b.primary_reselect,
        b.fail_over_mac,
        b.ad_select,
        use_carrier=True,
        **b.numbers,
    )


def cmdline_links(net: CmdlineNetworking, ignored: set[str]) -> list[LinkSpec]:
    out = []
    for c in net.links:
        if not c.name or c.name in ignored:
            continue
        spec = LinkSpec(
            name=c.name,
            up=c.up,
            logical=c.logical,
            mtu=c.mtu,
            kind=c.kind,
            parent_name=c.parent,
            master_name=c.master,
            slave_index=c.slave_index,
            layer=ConfigLayer.CMDLINE,
        )
        upd: dict[str, object] = {}
        if c.type:
            upd["type"] = LinkType.from_name(c.type)
        if c.vlan_id:
            upd["vlan"] = VLANSpec(vlan_id=c.vlan_id, vlan_protocol=VLANProtocol.from_name(c.vlan_protocol))
        if c.bond is not None:
            upd["bond_master"] = cmdline_bond(c.bond)
        out.append(spec.model_copy(update=upd))
    return out


def _wireguard(d: Device) -> WireguardSpec:
    wg = d.wireguard
    assert wg is not None
    peers = [
        WireguardPeer(
            public_key=p.public_key,
            endpoint=p.endpoint,
            persistent_keepalive_interval=dt.timedelta(
                seconds=parse_go_duration(p.persistent_keepalive_interval or "0")
            ),
            allowed_ips=[parse_prefix(a) for a in p.allowed_ips],
        )
        for p in wg.peers
    ]
    return WireguardSpec(
        private_key=wg.private_key, listen_port=wg.listen_port, firewall_mark=wg.firewall_mark, peers=peers
    )


def config_links(devs: Iterable[Device], index_of: dict[str, int]) -> list[LinkSpec]:
    """One spec per link the machine config names: devices, their VLANs, bond and
    bridge members (a member that is also a device keeps its own settings)."""
    specs: dict[str, LinkSpec] = {}
    members: dict[str, tuple[str, str, int]] = {}  # member → (kind, master, index)
    layer = ConfigLayer.CONFIGURATION
    for d in devs:
        if d.ignore or not d.interface:
            continue
        spec = LinkSpec(name=d.interface, up=d.up is not False, mtu=d.mtu, multicast=d.multicast, layer=layer)
        upd: dict[str, object] = {}
        if d.bond is not None:
            upd = {
                "logical": True,
                "kind": "bond",
                "type": LinkType.ETHER,
                "bond_master": config_bond(d.bond, index_of),
            }
            for i, m in enumerate(d.bond.interfaces):
                if m in members:
                    log.warning(
                        "link %s is a member of both %s and %s; %s wins",
                        m,
                        members[m][1],
                        d.interface,
                        d.interface,
                    )
                members[m] = ("bond", d.interface, i)
        elif d.bridge is not None:
            upd = {
                "logical": True,
                "kind": "bridge",
                "type": LinkType.ETHER,
                "bridge_master": BridgeMasterSpec(stp=STPSpec(enabled=d.bridge.stp.enabled)),
            }
            for m in d.bridge.interfaces:
                if m in members:
                    log.warning(
                        "link %s is a member of both %s and %s; %s wins",
                        m,
                        members[m][1],
                        d.interface,
                        d.interface,
                    )
                members[m] = ("bridge", d.interface, 0)
        elif d.wireguard is not None:
            upd = {"logical": True, "kind": "wireguard", "type": LinkType.NOHDR, "wireguard": _wireguard(d)}
        elif d.dummy:
            upd = {"logical": True, "kind": "dummy", "type": LinkType.ETHER}
        specs[d.interface] = spec.model_copy(update=upd)
        for v in d.vlans:
            name = vlan_link_name(d.interface, v.vlan_id)
            specs[name] = LinkSpec(
                name=name,
                logical=True,
                up=True,
                mtu=v.mtu,
                kind="vlan",
                type=LinkType.ETHER,
                parent_name=d.interface,
                vlan=VLANSpec(vlan_id=v.vlan_id, vlan_protocol=VLANProtocol.IEEE8021Q),
                layer=layer,
            )
    for m, (kind, master, index) in members.items():
        base = specs.get(m, LinkSpec(name=m, up=True, layer=layer))
        if kind == "bond":
            specs[m] = base.model_copy(update={"up": True, "master_name": master, "slave_index": index})
        else:
            specs[m] = base.model_copy(update={"up": True, "bridge_slave": BridgeSlave(master_name=master)})
    return list(specs.values())


def configured_for_up(
    devs: Iterable[Device], cmdline_names: Iterable[str], ignored: Iterable[str]
) -> set[str]:
    """Links the default layer must not bring up (netd.md §4.2 "Configured")."""
    out = set(cmdline_names) | set(ignored)
    for d in devs:
        out.add(d.interface)
        if d.bond is not None:
            out.update(d.bond.interfaces)
        if d.bridge is not None:
            out.update(d.bridge.interfaces)
    return out


def default_links(links: Iterable[tuple[str, LinkStatus]], configured: set[str]) -> list[LinkSpec]:
    out = [LinkSpec(name="lo", up=True, layer=ConfigLayer.DEFAULT)]
    for name, status in links:
        if status.physical() and name not in configured:
            out.append(LinkSpec(name=name, up=True, layer=ConfigLayer.DEFAULT))
    return out


class LinkConfigController(LayeredConfigController):
    name = "network.LinkConfigController"
    spec_type = LINK_SPEC_TYPE

    def desired(self, ctx: Context) -> dict[str, BaseModel]:
        devs = devices(ctx)
        links = host_links(ctx)
        result = self.cmdline.parse(links)
        want: dict[str, BaseModel] = {}
        cmd_names: list[str] = []
        ignore_list: list[str] = []
        if result.networking is not None:
            specs = cmdline_links(result.networking, ignored_devices(devs))
            cmd_names = [s.name for s in result.networking.links]
            ignore_list = result.networking.ignored_links
            want |= layered(specs, "cmdline")
        index_of = {name: s.index for name, s in links}
        want |= layered(config_links(devs, index_of), "configuration")
        want = (
            layered(default_links(links, configured_for_up(devs, cmd_names, ignore_list)), "default") | want
        )
        return want
