"""The resource state: versions, events, ownership, finalizers, type lookup."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from cosi import (
    AlreadyExistsError,
    EventType,
    FinalizersPendingError,
    OwnerConflictError,
    Phase,
    PhaseConflictError,
    ResourceDefinition,
    State,
    VersionConflictError,
)
from cosi.errors import AmbiguousTypeError, UnknownTypeError
from cosi.resource import metadata_dict, new_resource, resource_dict

NS, T = "test", "Things.test.dev"


class Thing(BaseModel):
    value: int
    tags: list[str] = []


def test_create_update_versions_and_timestamps() -> None:
    ticks = iter(range(1000))
    s = State(clock=lambda: float(next(ticks)))
    r = s.put(NS, T, "a", Thing(value=1), owner="c")
    assert (r.md.version, r.md.phase, r.md.owner) == (1, Phase.RUNNING, "c")
    r2 = s.put(NS, T, "a", Thing(value=2), owner="c")
    assert r2.md.version == 2
    assert r2.md.created == r.md.created and r2.md.updated > r.md.updated
    with pytest.raises(AlreadyExistsError):
        s.create(new_resource(NS, T, "a", Thing(value=3)), owner="c")
    with pytest.raises(VersionConflictError):
        s.update(r2.with_spec(Thing(value=5)), owner="c", expected_version=1)


def test_idempotent_update_emits_nothing() -> None:
    async def go() -> None:
        s = State()
        s.put(NS, T, "a", Thing(value=1, tags=["x"]), owner="c")
        w = s.watch(NS, T)
        first = w.drain()
        assert [e.type for e in first] == [EventType.CREATED, EventType.BOOTSTRAPPED]
        again = s.put(NS, T, "a", Thing(value=1, tags=["x"]), owner="c")
        assert again.md.version == 1
        assert w.drain() == []
        s.put(NS, T, "a", Thing(value=1, tags=["y"]), owner="c")
        evs = w.drain()
        assert [e.type for e in evs] == [EventType.UPDATED]
        assert evs[0].old is not None and evs[0].old.spec == Thing(value=1, tags=["x"])
        # adding a finalizer twice is one change
        s.add_finalizer(NS, T, "a", "f")
        s.add_finalizer(NS, T, "a", "f")
        assert len(w.drain()) == 1

    asyncio.run(go())


def test_exclusive_output_rejects_other_writers() -> None:
    s = State()
    s.claim_exclusive(NS, T, "A")
    s.put(NS, T, "x", Thing(value=1), owner="A")
    with pytest.raises(OwnerConflictError, match="exclusive output of A"):
        s.put(NS, T, "y", Thing(value=1), owner="B")
    with pytest.raises(OwnerConflictError):
        s.put(NS, T, "y", Thing(value=1))  # external writers too
    with pytest.raises(OwnerConflictError):
        s.claim_exclusive(NS, T, "B")
    with pytest.raises(OwnerConflictError):
        s.destroy(NS, T, "x", owner="B")
    assert s.get(NS, T, "x") is not None and s.get(NS, T, "y") is None


def test_shared_output_owner_is_fixed_per_resource() -> None:
    s = State()
    s.put(NS, T, "cmdline/a", Thing(value=1), owner="A")
    s.put(NS, T, "configuration/a", Thing(value=2), owner="B")
    with pytest.raises(OwnerConflictError, match="owned by A, not B"):
        s.put(NS, T, "cmdline/a", Thing(value=9), owner="B")
    with pytest.raises(OwnerConflictError):
        s.teardown(NS, T, "cmdline/a", owner="B")
    with pytest.raises(OwnerConflictError):
        s.destroy(NS, T, "cmdline/a", owner="B")
    cur = s.get(NS, T, "cmdline/a")
    assert cur is not None and cur.spec == Thing(value=1) and cur.md.version == 1


def test_finalizers_hold_resource_in_teardown() -> None:
    s = State()
    s.put(NS, T, "a", Thing(value=1), owner="o")
    s.add_finalizer(NS, T, "a", "spec-controller")
    assert s.teardown(NS, T, "a", owner="o") is False
    r = s.get(NS, T, "a")
    assert r is not None and r.md.phase is Phase.TEARING_DOWN
    with pytest.raises(FinalizersPendingError):
        s.destroy(NS, T, "a", owner="o")
    with pytest.raises(PhaseConflictError):
        s.put(NS, T, "a", Thing(value=2), owner="o")
    s.remove_finalizer(NS, T, "a", "spec-controller")
    assert s.teardown(NS, T, "a", owner="o") is True
    s.destroy(NS, T, "a", owner="o")
    assert s.get(NS, T, "a") is None


def test_list_sorted_bytewise() -> None:
    s = State()
    for id_ in ["b", "B", "a/2", "a/10", "_"]:
        s.put(NS, T, id_, Thing(value=0))
    assert [r.id for r in s.list(NS, T)] == sorted(["b", "B", "a/2", "a/10", "_"])


def test_output_shape_has_finalizers_and_rfc3339() -> None:
    s = State(clock=lambda: 1624998198.7)
    r = s.put("network", T, "eth0", Thing(value=1), owner="network.X")
    md = metadata_dict(r.md)
    assert list(md) == [
        "namespace", "type", "id", "version", "owner", "phase", "created", "updated", "finalizers",
    ]
    assert md["created"] == "2021-06-29T20:23:18Z" and md["finalizers"] == [] and md["version"] == 1
    assert resource_dict(r)["spec"] == {"value": 1, "tags": []}


def test_type_resolution_aliases() -> None:
    s = State()
    s.register(ResourceDefinition("AddressStatuses.net.talos.dev", "AddressStatus", "network", Thing,
                                  aliases=("address", "addresses")))
    s.register(ResourceDefinition("AddressSpecs.net.talos.dev", "AddressSpec", "network", Thing))
    r = s.registry
    for word in ["addressstatuses", "AddressStatus", "addressstatuses.net", "addressstatuses.net.talos",
                 "addressstatuses.net.talos.dev", "address", "ADDRESSES"]:
        assert r.resolve(word).type == "AddressStatuses.net.talos.dev"
    assert r.resolve("rd").type == "ResourceDefinitions.meta.cosi.dev"
    assert r.resolve("rds").type == "ResourceDefinitions.meta.cosi.dev"
    assert r.resolve("ns").type == "Namespaces.meta.cosi.dev"
    assert r.resolve("namespaces").type == "Namespaces.meta.cosi.dev"
    # "as" is the initials of both AddressStatuses and AddressSpecs
    with pytest.raises(AmbiguousTypeError):
        r.resolve("as")
    with pytest.raises(UnknownTypeError, match="did you mean 'addressstatus'"):
        r.resolve("adressstatus")
    rd = s.get("meta", "ResourceDefinitions.meta.cosi.dev", "resourcedefinitions.meta.cosi.dev")
    assert rd is not None
    assert rd.spec.model_dump(by_alias=True)["aliases"] == [
        "resourcedefinitions", "resourcedefinition", "resourcedefinitions.meta",
        "resourcedefinitions.meta.cosi", "rd", "rds",
    ]
    assert s.get("meta", "Namespaces.meta.cosi.dev", "meta") is not None
    # a name beats another type's initials: "ns" is Namespaces, not NetworkStatuses
    s.register(ResourceDefinition("NetworkStatuses.net.talos.dev", "NetworkStatus", "network", Thing,
                                  aliases=("netstatus", "netstatuses")))
    assert r.resolve("ns").type == "Namespaces.meta.cosi.dev"
    assert r.resolve("netstatus").type == "NetworkStatuses.net.talos.dev"


# ---- watch completeness under concurrent writers ----------------------------------------

ops = st.lists(
    st.tuples(st.sampled_from(["put", "destroy", "fin", "unfin", "teardown"]),
              st.integers(0, 5), st.integers(0, 3)),
    max_size=40,
)


def apply_op(s: State, owner: str, op: tuple[str, int, int]) -> None:
    kind, n, val = op
    id_ = f"{owner}-{n}"
    cur = s.get(NS, T, id_)
    if kind == "put":
        if cur is None or cur.md.phase is Phase.RUNNING:
            s.put(NS, T, id_, Thing(value=val), owner=owner)
    elif cur is None:
        return
    elif kind == "destroy":
        if not cur.md.finalizers:
            s.destroy(NS, T, id_, owner=owner)
    elif kind == "fin":
        s.add_finalizer(NS, T, id_, f"f{val}")
    elif kind == "unfin":
        s.remove_finalizer(NS, T, id_, *cur.md.finalizers)
    elif kind == "teardown":
        s.teardown(NS, T, id_, owner=owner)


@settings(max_examples=60, deadline=None)
@given(writers=st.lists(ops, min_size=1, max_size=4), starts=st.lists(st.integers(0, 60), max_size=4))
def test_watch_sees_every_change_in_order(writers: list[list[tuple[str, int, int]]],
                                          starts: list[int]) -> None:
    async def go() -> None:
        s = State()
        watchers: list[Any] = []
        step = 0

        async def writer(idx: int, program: list[tuple[str, int, int]]) -> None:
            nonlocal step
            for op in program:
                apply_op(s, f"w{idx}", op)
                step += 1
                for start in starts:
                    if start == step:
                        watchers.append(s.watch(NS, T))
                await asyncio.sleep(0)

        watchers.append(s.watch(NS, T))
        await asyncio.gather(*(writer(i, p) for i, p in enumerate(writers)))
        final = {r.id: (r.md.version, r.spec, r.md.finalizers, r.md.phase) for r in s.list(NS, T)}
        for w in watchers:
            seen: dict[str, Any] = {}
            last_version: dict[str, int] = {}
            bootstrapped = False
            for ev in w.drain():
                if ev.type is EventType.BOOTSTRAPPED:
                    bootstrapped = True
                    continue
                r = ev.resource
                assert r is not None
                if ev.type is EventType.CREATED:
                    assert r.id not in seen
                    assert bootstrapped is False or r.md.version == 1
                elif ev.type is EventType.UPDATED:
                    assert r.id in seen and r.md.version > last_version[r.id]
                else:
                    assert r.id in seen
                    del seen[r.id]
                    continue
                seen[r.id] = (r.md.version, r.spec, r.md.finalizers, r.md.phase)
                last_version[r.id] = r.md.version
            assert bootstrapped
            assert seen == final
            w.close()

    asyncio.run(go())
