"""reset: the spec writers stop, every spec is torn down, the spec controllers undo and release them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from cosi import Context, Controller, Input, InputKind, Output, Phase, Runtime, State
from machined.api.reset import reset_kinds, reset_network
from netd.resources import register_all
from netd.resources.namespaces import NETWORK
from netd.resources.nftables import NFTABLES_CHAIN_TYPE
from netd.resources.resolver import RESOLVER_SPEC_TYPE, RESOLVER_STATUS_TYPE, ResolverSpec


class Writer(Controller):
    """Stands for the merge controllers: keeps writing the desired specs."""

    name = "test.Writer"

    def outputs(self) -> Sequence[Output]:
        return [Output(NETWORK, RESOLVER_SPEC_TYPE)]

    async def reconcile(self, ctx: Context) -> None:
        ctx.put(NETWORK, RESOLVER_SPEC_TYPE, "resolvers", ResolverSpec(dns_servers=["1.1.1.1"]))


class Applier(Controller):
    """Stands for a spec controller: holds a finalizer while applied, releases it once undone."""

    name = "test.Applier"

    def __init__(self, release: bool = True) -> None:
        self.release = release
        self.undone: list[str] = []

    def inputs(self) -> Sequence[Input]:
        return [Input(NETWORK, RESOLVER_SPEC_TYPE, InputKind.STRONG)]

    async def reconcile(self, ctx: Context) -> None:
        for r in ctx.list(NETWORK, RESOLVER_SPEC_TYPE):
            if r.md.phase is Phase.RUNNING:
                ctx.add_finalizer(NETWORK, RESOLVER_SPEC_TYPE, r.md.id, self.name)
            elif self.name in r.md.finalizers and self.release:
                self.undone.append(r.md.id)
                ctx.remove_finalizer(NETWORK, RESOLVER_SPEC_TYPE, r.md.id, self.name)


def test_reset_kinds_are_the_network_specs_and_chains() -> None:
    st = State()
    register_all(st)
    kinds = reset_kinds(st)
    assert (NETWORK, RESOLVER_SPEC_TYPE) in kinds and (NETWORK, NFTABLES_CHAIN_TYPE) in kinds
    assert (NETWORK, RESOLVER_STATUS_TYPE) not in kinds
    assert all(ns == NETWORK for ns, _ in kinds)


async def test_reset_tears_down_and_waits_for_the_spec_controllers() -> None:
    st = State()
    register_all(st)
    rt = Runtime(st)
    applier = Applier()
    rt.register(Writer())
    rt.register(applier)
    rt.start()
    assert await rt.settle(timeout=5)
    assert st.must_get(NETWORK, RESOLVER_SPEC_TYPE, "resolvers").md.finalizers == ("test.Applier",)
    assert await reset_network(st, rt, timeout=5) == []
    assert st.list(NETWORK, RESOLVER_SPEC_TYPE) == []
    assert applier.undone == ["resolvers"]
    await asyncio.sleep(0.1)
    assert st.list(NETWORK, RESOLVER_SPEC_TYPE) == []  # the writer is stopped: nothing comes back
    await rt.stop()


async def test_reset_reports_specs_still_held_at_the_deadline() -> None:
    st = State()
    register_all(st)
    rt = Runtime(st)
    rt.register(Writer())
    rt.register(Applier(release=False))
    rt.start()
    assert await rt.settle(timeout=5)
    left = await reset_network(st, rt, timeout=0.3)
    assert left == ["ResolverSpecs.net.talos.dev(network/resolvers)"]
    await rt.stop()


def test_the_loopback_is_kept() -> None:
    from cosi.resource import new_resource
    from machined.api.reset import kept
    from netd.resources.address import ADDRESS_SPEC_TYPE, AddressSpec
    from netd.resources.link import LINK_SPEC_TYPE, LinkSpec

    def addr(a: str, link: str) -> bool:
        spec = AddressSpec.model_validate({"address": a, "linkName": link})
        return kept(new_resource(NETWORK, ADDRESS_SPEC_TYPE, f"{link}/{a}", spec))

    assert addr("127.0.0.1/8", "lo") and addr("::1/128", "lo")
    assert not addr("10.99.0.1/32", "lo")  # configured on lo: the node's own
    assert not addr("127.0.0.1/8", "eth0")
    assert kept(new_resource(NETWORK, LINK_SPEC_TYPE, "lo", LinkSpec(name="lo")))
    assert not kept(new_resource(NETWORK, LINK_SPEC_TYPE, "eth0", LinkSpec(name="eth0")))
