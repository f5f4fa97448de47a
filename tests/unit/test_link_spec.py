"""LinkSpecController logic without a kernel: ordering, the per-spec diff, the kind
modules, and the reconcile flow (finalizers, ownership, restart clean-up) over an
in-memory stand-in for LinkOps. The real kernel is in tests/netns/test_link_spec.py."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from cosi import Backoff, Context, State
from netd.controllers.link_spec import (
    NAME,
    Create,
    Delete,
    LinkSpecController,
    SetMaster,
    SetMtu,
    SetMulticast,
    SetUp,
    Update,
    deletion_order,
    desired_master,
    order_specs,
    plan_link,
    plan_teardown,
    recorded_matches,
    stale_records,
    topological,
)
from netd.kernel.applied import Applied
from netd.kernel.links import KINDS, BridgeKind, GenericKind, KernelLink, LinkKind, kernel_link, kind_for
from netd.kernel.links.ops import LinkOps
from netd.kernel.rtnl import kernel_error
from netd.resources import LINK_REFRESH_TYPE, LINK_SPEC_TYPE, NETWORK, LinkSpec, register_all
from netd.resources.enums import LinkFlags, LinkType
from netd.resources.link import BridgeMasterSpec, BridgeSlave, LinkRefresh, STPSpec

UP = int(LinkFlags.UP)
MERGE = "network.LinkMergeController"


def bridge(name: str, stp: bool = False, up: bool = True, **kw: Any) -> LinkSpec:
    return LinkSpec(
        name=name,
        logical=True,
        up=up,
        kind="bridge",
        type=LinkType.ETHER,
        bridge_master=BridgeMasterSpec(stp=STPSpec(enabled=stp)),
        **kw,
    )


def phys(name: str, up: bool = True, mtu: int = 0, bridge_master: str = "", **kw: Any) -> LinkSpec:
    return LinkSpec(
        name=name,
        up=up,
        mtu=mtu,
        type=LinkType.ETHER,
        bridge_slave=BridgeSlave(master_name=bridge_master),
        **kw,
    )


def klink(name: str, index: int, kind: str = "", **kw: Any) -> KernelLink:
    return KernelLink(name=name, index=index, kind=kind, has_linkinfo=bool(kind), **kw)


def kbridge(name: str, index: int, stp: bool = False, up: bool = True, **kw: Any) -> KernelLink:
    return klink(
        name, index, "bridge", info_data={"IFLA_BR_STP_STATE": int(stp)}, flags=UP if up else 0, **kw
    )


def links_of(*links: KernelLink) -> dict[str, KernelLink]:
    return {lk.name: lk for lk in links}


# ---- ordering ----------------------------------------------------------------------------


def test_order_masters_and_parents_before_children() -> None:
    specs = [
        phys("a-port", bridge_master="zbr"),
        LinkSpec(name="vlan9", logical=True, kind="vlan", parent_name="zbond"),
        phys("eth1", master_name="zbond", slave_index=1),
        phys("eth0", master_name="zbond", slave_index=0),
        LinkSpec(name="zbond", logical=True, kind="bond"),
        bridge("zbr"),
        phys("eth9"),
    ]
    names = [s.name for s in order_specs(specs)]
    assert names.index("zbr") < names.index("a-port")
    assert names.index("zbond") < names.index("vlan9")
    assert names.index("zbond") < names.index("eth0") < names.index("eth1")  # bond slaves by slaveIndex
    assert set(names) == {s.name for s in specs}


def test_order_is_by_name_without_dependencies_and_deterministic() -> None:
    specs = [phys("c"), phys("a"), phys("b")]
    assert [s.name for s in order_specs(specs)] == ["a", "b", "c"]
    assert [s.name for s in order_specs(specs[::-1])] == ["a", "b", "c"]


def test_order_ignores_dependencies_without_spec_and_survives_cycles() -> None:
    # A master that has no spec (hand-made bridge) does not hold the port back.
    assert [s.name for s in order_specs([phys("p", bridge_master="handmade")])] == ["p"]
    # A cycle cannot be honoured; nothing is lost.
    a = LinkSpec(name="a", logical=True, kind="vlan", parent_name="b")
    b = LinkSpec(name="b", logical=True, kind="vlan", parent_name="a")
    assert sorted(s.name for s in order_specs([a, b, phys("c")])) == ["a", "b", "c"]
    assert [s.name for s in order_specs([a, b, phys("0")])] == ["0", "a", "b"]


def test_topological_ties_by_key() -> None:
    deps = {"x": {"m"}, "y": {"m"}}
    assert topological(["y", "x", "m", "a"], deps, lambda n: (n,)) == ["a", "m", "x", "y"]


def test_deletion_order_children_first() -> None:
    links = links_of(
        kbridge("br0", 10),
        klink("vlan5", 11, "vlan", link_index=10),
        klink("port", 12, "veth", master_index=10),
        klink("other", 13, "bridge"),
    )
    order = deletion_order(["br0", "vlan5", "port", "other"], links)
    assert order.index("vlan5") < order.index("br0")
    assert order.index("port") < order.index("br0")
    # Spec relations count too when the kernel does not show them (yet).
    specs = {"b": LinkSpec(name="b", logical=True, kind="bond"), "v": LinkSpec(name="v", parent_name="b")}
    assert deletion_order(["b", "v"], {}, specs) == ["v", "b"]


# ---- the diff -------------------------------------------------------------------------------


def test_logical_missing_is_created() -> None:
    assert plan_link(bridge("br0"), {}, owned=False) == ([Create("br0")], None)


def test_physical_missing_waits_quietly() -> None:
    assert plan_link(phys("eth0"), {}, owned=False) == ([], None)


def test_steady_state_plans_nothing() -> None:
    links = links_of(
        kbridge("br0", 5, stp=True),
        klink("p1", 6, "veth", flags=UP, master_index=5, mtu=1500),
        klink("eth1", 7, flags=UP, mtu=1400),
    )
    for spec in (bridge("br0", stp=True), phys("p1", bridge_master="br0"), phys("eth1", mtu=1400)):
        assert plan_link(spec, links, owned=True) == ([], None), spec.name


def test_bridge_stp_update_without_disruption() -> None:
    links = links_of(kbridge("br0", 5, stp=True), klink("p1", 6, "veth", flags=UP, master_index=5))
    actions, problem = plan_link(bridge("br0", stp=False), links, owned=True)
    assert (actions, problem) == ([Update("br0")], None)  # no down, ports stay attached


def test_up_down_and_mtu() -> None:
    links = links_of(klink("eth0", 2, flags=UP, mtu=1500), klink("eth1", 3, mtu=1500))
    assert plan_link(phys("eth0", up=False), links, owned=False)[0] == [SetUp("eth0", False)]
    assert plan_link(phys("eth1", mtu=9000), links, owned=False)[0] == [
        SetUp("eth1", True),
        SetMtu("eth1", 9000),
    ]
    assert plan_link(phys("eth0", mtu=0), links, owned=False)[0] == []  # 0 = don't touch


def test_enslave_goes_down_first_and_comes_back_up() -> None:
    links = links_of(kbridge("br0", 5), klink("p1", 6, "veth", flags=UP))
    actions, _ = plan_link(phys("p1", bridge_master="br0"), links, owned=False)
    assert actions == [SetUp("p1", False), SetMaster("p1", 5), SetUp("p1", True)]


def test_detach_when_spec_has_no_master() -> None:
    links = links_of(kbridge("br0", 5), klink("p1", 6, "veth", flags=UP, master_index=5))
    actions, _ = plan_link(phys("p1"), links, owned=False)
    assert actions == [SetUp("p1", False), SetMaster("p1", 0), SetUp("p1", True)]


def test_missing_master_is_a_problem_but_the_rest_applies() -> None:
    links = links_of(klink("p1", 6, "veth", mtu=1500))
    actions, problem = plan_link(phys("p1", mtu=1400, bridge_master="brm"), links, owned=False)
    assert actions == [SetUp("p1", True), SetMtu("p1", 1400)]
    assert problem is not None and "brm" in problem


def test_desired_master_bridge_wins_over_bond() -> None:
    links = links_of(kbridge("br0", 5), klink("bond0", 9, "bond"))
    both = phys("p", bridge_master="br0", master_name="bond0")
    assert desired_master(both, links) == (5, None)
    assert desired_master(phys("p", bridge_master="gone", master_name="bond0"), links) == (9, None)
    assert desired_master(phys("p"), links) == (0, None)
    idx, problem = desired_master(phys("p", master_name="nobond"), links)
    assert idx == -1 and problem is not None


def test_kind_mismatch_recreated_only_when_ours() -> None:
    links = links_of(klink("br0", 5, "veth", flags=UP))
    assert plan_link(bridge("br0"), links, owned=True) == ([Delete("br0"), Create("br0")], None)
    actions, problem = plan_link(bridge("br0"), links, owned=False)
    assert actions == [] and problem is not None and "not created by netd" in problem
    # No link info at all (a physical NIC with the bridge's name): not ours either.
    actions, problem = plan_link(bridge("eth0"), links_of(klink("eth0", 2)), owned=False)
    assert actions == [] and problem is not None


def test_type_mismatch_recreates() -> None:
    links = links_of(kbridge("br0", 5, type=LinkType(65534)))
    assert plan_link(bridge("br0"), links, owned=True)[0] == [Delete("br0"), Create("br0")]


class _Disruptive(LinkKind):
    kind = "fakebond"
    update_disrupts = True

    def desired(self, spec: LinkSpec) -> BridgeMasterSpec:
        return BridgeMasterSpec(stp=STPSpec(enabled=True))


def test_disruptive_update_brings_down_and_detaches_slaves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(KINDS, "fakebond", _Disruptive())
    links = links_of(
        klink("bond0", 5, "fakebond", flags=UP),
        klink("eth0", 6, flags=UP, master_index=5),
        klink("eth1", 7, flags=UP, master_index=5),
    )
    spec = LinkSpec(name="bond0", logical=True, up=True, kind="fakebond", type=LinkType.ETHER)
    actions, _ = plan_link(spec, links, owned=True)
    assert actions == [
        SetUp("bond0", False),
        SetMaster("eth0", 0),
        SetMaster("eth1", 0),
        Update("bond0"),
        SetUp("bond0", True),
    ]


def test_teardown_deletes_only_our_logical_links_of_the_same_kind() -> None:
    links = links_of(kbridge("br0", 5), klink("eth0", 2), klink("brv", 6, "veth"))
    assert plan_teardown(bridge("br0"), links, owned=True) == [Delete("br0")]
    assert plan_teardown(bridge("br0"), links, owned=False) == []  # adopted: left in place
    assert plan_teardown(phys("eth0"), links, owned=True) == []  # physical: never deleted
    assert plan_teardown(bridge("brv"), links, owned=True) == []  # replaced by something else
    assert plan_teardown(bridge("gone"), links, owned=True) == []


def test_stale_records_and_recorded_kind() -> None:
    records = {"br0": {"kind": "bridge"}, "br1": {"kind": "bridge"}}
    assert stale_records(records, {"br1"}) == ["br0"]
    assert recorded_matches({"kind": "bridge"}, kbridge("br0", 5))
    assert not recorded_matches({"kind": "bridge"}, klink("br0", 5, "veth"))


# ---- kind modules ---------------------------------------------------------------------------------


def test_registry() -> None:
    assert isinstance(kind_for("bridge"), BridgeKind)
    generic = kind_for("ifb")
    assert isinstance(generic, GenericKind) and generic.kind == "ifb"
    spec = LinkSpec(name="x", logical=True, kind="ifb", type=LinkType.ETHER)
    assert generic.create_args(spec, {}) == {}
    assert generic.in_sync(spec, klink("x", 3, "ifb"))


def test_bridge_kind() -> None:
    k = BridgeKind()
    assert k.create_args(bridge("b", stp=True), {}) == {"br_stp_state": 1}
    assert k.update_args(bridge("b", stp=False), kbridge("b", 1, stp=True)) == {"br_stp_state": 0}
    assert k.in_sync(bridge("b", stp=True), kbridge("b", 1, stp=True))
    assert not k.in_sync(bridge("b", stp=True), kbridge("b", 1, stp=False))
    assert k.observed(klink("b", 1, "bridge")) == BridgeMasterSpec()  # no data: STP off


def test_kernel_link_from_a_netlink_message() -> None:
    m = ifinfmsg()
    m["index"], m["ifi_type"], m["flags"] = 7, 1, UP
    m["attrs"] = [
        ("IFLA_IFNAME", "br0"),
        ("IFLA_MTU", 1400),
        ("IFLA_MASTER", 3),
        (
            "IFLA_LINKINFO",
            {
                "attrs": [
                    ("IFLA_INFO_KIND", "bridge"),
                    ("IFLA_INFO_DATA", {"attrs": [("IFLA_BR_STP_STATE", 1)]}),
                ]
            },
        ),
    ]
    m.encode()
    msg = ifinfmsg(m.data)
    msg.decode()
    lk = kernel_link(msg)
    assert (lk.name, lk.index, lk.kind, lk.type, lk.up, lk.mtu, lk.master_index) == (
        "br0", 7, "bridge", LinkType.ETHER, True, 1400, 3,
    )  # fmt: skip
    assert lk.info_data == {"IFLA_BR_STP_STATE": 1} and lk.has_linkinfo


# ---- the reconcile flow over a fake kernel ---------------------------------------------------------


class FakeOps(LinkOps):
    """Links in a dict; every write in ``calls``; ``fail`` maps a call name to an errno."""

    def __init__(self, *links: KernelLink) -> None:
        self.links = {lk.name: lk for lk in links}
        self.calls: list[tuple[Any, ...]] = []
        self.fail: dict[str, int] = {}
        self._next = 100

    def _by_index(self, index: int) -> KernelLink:
        for lk in self.links.values():
            if lk.index == index:
                return lk
        raise kernel_error(19, "link")

    def _replace(self, index: int, **kw: Any) -> None:
        lk = self._by_index(index)
        self.links[lk.name] = dataclasses.replace(lk, **kw)

    def _call(self, *call: Any) -> None:
        self.calls.append(call)
        if call[0] in self.fail:
            raise kernel_error(self.fail[call[0]], "injected")

    async def dump(self) -> dict[str, KernelLink]:
        return dict(self.links)

    async def add(self, name: str, kind: str, **kwargs: Any) -> None:
        self._call("add", name, kind)
        if name in self.links:
            raise kernel_error(17, "File exists")
        self._next += 1
        data = {"IFLA_BR_STP_STATE": kwargs["br_stp_state"]} if "br_stp_state" in kwargs else {}
        self.links[name] = klink(name, self._next, kind, info_data=data)

    async def delete(self, index: int) -> None:
        lk = self._by_index(index)
        self._call("del", lk.name)
        del self.links[lk.name]
        for n, other in list(self.links.items()):
            if other.master_index == index:
                self.links[n] = dataclasses.replace(other, master_index=0)

    async def set_up(self, index: int, up: bool) -> None:
        lk = self._by_index(index)
        self._call("up" if up else "down", lk.name)
        self._replace(index, flags=(lk.flags | UP) if up else (lk.flags & ~UP))

    async def set_mtu(self, index: int, mtu: int) -> None:
        self._call("mtu", self._by_index(index).name, mtu)
        self._replace(index, mtu=mtu)

    async def set_master(self, index: int, master: int) -> None:
        self._call("master", self._by_index(index).name, master)
        self._replace(index, master_index=master)

    async def set_kind_data(self, index: int, kind: str, **kwargs: Any) -> None:
        self._call("data", self._by_index(index).name, kwargs)
        self._replace(index, info_data={"IFLA_BR_STP_STATE": kwargs["br_stp_state"]})


class Harness:
    def __init__(self, ops: FakeOps, applied: Applied) -> None:
        self.state = State()
        register_all(self.state)
        self.ops = ops
        self.applied = applied
        self.ctl = LinkSpecController(applied)
        self.ctl._ops = ops
        self.ctx = Context(self.state, self.ctl, Backoff())

    def put(self, *specs: LinkSpec) -> None:
        for s in specs:
            self.state.put(NETWORK, LINK_SPEC_TYPE, s.name, s, MERGE)

    def teardown(self, *names: str) -> None:
        for n in names:
            self.state.teardown(NETWORK, LINK_SPEC_TYPE, n, MERGE)

    def finalizers(self) -> dict[str, Sequence[str]]:
        return {r.md.id: r.md.finalizers for r in self.state.list(NETWORK, LINK_SPEC_TYPE)}

    def reconcile(self) -> list[tuple[Any, ...]]:
        before = len(self.ops.calls)
        asyncio.run(self.ctl.reconcile(self.ctx))
        return self.ops.calls[before:]


@pytest.fixture
def applied(tmp_path: Path) -> Applied:
    return Applied(str(tmp_path / "applied.json"))


def test_flow_create_adopt_teardown(applied: Applied) -> None:
    ops = FakeOps(kbridge("brh", 1, up=False), klink("p1", 2, "veth"), klink("p2", 3, "veth"))
    h = Harness(ops, applied)
    h.put(
        bridge("br0", stp=True),
        bridge("brh"),
        phys("p1", bridge_master="br0"),
        phys("p2", bridge_master="brh"),
    )
    calls = h.reconcile()
    # br0 is created before its port is enslaved; brh is adopted (only brought up).
    assert calls.index(("add", "br0", "bridge")) < calls.index(("master", "p1", 101))
    assert ("add", "brh", "bridge") not in calls and ("up", "brh") in calls
    assert applied.items("link") == {"br0": {"kind": "bridge"}}
    assert all(f == (NAME,) for f in h.finalizers().values())
    assert h.reconcile() == []  # steady state writes nothing

    h.teardown("br0", "brh", "p1")
    calls = h.reconcile()
    assert calls == [("del", "br0")]  # brh adopted: stays; p1 physical: stays (and stays up)
    assert applied.items("link") == {}
    fins = h.finalizers()
    assert fins["br0"] == () and fins["brh"] == () and fins["p1"] == () and fins["p2"] == (NAME,)


def test_flow_restart_removes_only_recorded_links_children_first(applied: Applied) -> None:
    applied.add("link", "br0", {"kind": "bridge"})
    applied.add("link", "brq", {"kind": "bridge"})  # recorded, but replaced by a veth since
    applied.add("link", "gone", {"kind": "bridge"})  # recorded, no longer in the kernel
    applied.add("link", "keep", {"kind": "bridge"})  # still wanted
    ops = FakeOps(
        kbridge("br0", 1),
        klink("brq", 2, "veth"),
        kbridge("keep", 3),
        kbridge("brx", 4),  # hand-made, never recorded
        klink("p1", 5, "veth", master_index=1, flags=UP),
    )
    h = Harness(ops, applied)
    h.put(bridge("keep"), phys("p1"))
    calls = h.reconcile()
    assert ("del", "br0") in calls
    assert all(c[0] != "del" or c[1] == "br0" for c in calls)
    assert applied.items("link") == {"keep": {"kind": "bridge"}}
    assert set(ops.links) == {"brq", "keep", "brx", "p1"}
    assert h.reconcile() == []


def test_flow_errors_are_per_spec_and_retried(applied: Applied) -> None:
    ops = FakeOps(klink("p1", 2, "veth"), klink("br9", 3, "veth"))
    h = Harness(ops, applied)
    h.put(bridge("br9"), phys("p1", mtu=1400), bridge("br1"))
    ops.fail["mtu"] = 22
    calls = h.reconcile()
    assert ("add", "br1", "bridge") in calls  # the others went on
    assert set(h.ctl.retry._failing) == {"link br9", "link p1"}
    assert applied.items("link") == {"br1": {"kind": "bridge"}}  # br9 not ours: not recorded
    del ops.fail["mtu"]
    h.reconcile()
    assert set(h.ctl.retry._failing) == {"link br9"}
    assert ops.links["p1"].mtu == 1400


def test_flow_failed_create_is_not_recorded(applied: Applied) -> None:
    ops = FakeOps()
    ops.fail["add"] = 95
    h = Harness(ops, applied)
    h.put(bridge("br0"))
    h.reconcile()
    assert applied.items("link") == {}
    assert set(h.ctl.retry._failing) == {"link br0"}


class _Refreshing(BridgeKind):
    kind = "fakewg"
    refresh = "wireguard"


def test_flow_update_bumps_the_kind_refresh(applied: Applied, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(KINDS, "fakewg", _Refreshing())
    ops = FakeOps(klink("wg0", 2, "fakewg", info_data={"IFLA_BR_STP_STATE": 0}, flags=UP))
    h = Harness(ops, applied)
    spec = bridge("wg0", stp=True).model_copy(update={"kind": "fakewg"})
    h.put(spec)
    assert h.reconcile() == [("data", "wg0", {"br_stp_state": 1})]
    r = h.state.get(NETWORK, LINK_REFRESH_TYPE, "wireguard")
    assert r is not None and r.spec == LinkRefresh(generation=1)
    assert h.reconcile() == []  # in sync: no bump either
    r = h.state.get(NETWORK, LINK_REFRESH_TYPE, "wireguard")
    assert r is not None and r.spec == LinkRefresh(generation=1)


def test_plan_sets_the_multicast_flag_only_when_the_spec_says_so() -> None:
    up = LinkFlags.UP | LinkFlags.MULTICAST
    links = links_of(klink("eth1", 3, flags=up))
    off = LinkSpec(name="eth1", up=True, multicast=False)
    assert plan_link(off, links, owned=False)[0] == [SetMulticast("eth1", False)]
    assert plan_link(LinkSpec(name="eth1", up=True), links, owned=False)[0] == []
    assert plan_link(LinkSpec(name="eth1", up=True, multicast=True), links, owned=False)[0] == []
