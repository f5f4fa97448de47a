"""The in-memory resource state: get/list/watch and owner-checked writes.

Everything here is synchronous and runs on the event loop's thread, so a write
and the delivery of its event to every watcher's queue happen in one step: a
watch that starts by taking a snapshot can never miss or duplicate an event.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace

from pydantic import BaseModel

from cosi.definition import (
    META_NAMESPACE,
    NAMESPACE_DEF,
    NAMESPACE_TYPE,
    RESOURCE_DEFINITION_DEF,
    RESOURCE_DEFINITION_TYPE,
    NamespaceSpec,
    Registry,
    ResourceDefinition,
    definition_spec,
)
from cosi.errors import (
    AlreadyExistsError,
    FinalizersPendingError,
    NotFoundError,
    OwnerConflictError,
    PhaseConflictError,
    VersionConflictError,
)
from cosi.resource import Event, EventType, Metadata, Phase, Resource

log = logging.getLogger("cosi.state")

Kind = tuple[str, str]  # (namespace, type)
Trigger = Callable[[Event], None]

# A watcher whose reader stopped reading gets an ERRORED event and is closed
# rather than growing without bound.
WATCH_QUEUE_LIMIT = 1_000_000


class Watcher:
    """A queue of events for one (namespace, type), optionally one id.

    Iterate it with ``async for``; ``drain()`` takes every queued event at once,
    which is how a busy reader keeps up.
    """

    def __init__(self, state: State, kind: Kind, id_: str | None) -> None:
        self._state = state
        self.kind = kind
        self.id = id_
        self._queue: deque[Event] = deque()
        self._wakeup = asyncio.Event()
        self.closed = False

    def _push(self, ev: Event) -> None:
        if self.closed:
            return
        if len(self._queue) >= WATCH_QUEUE_LIMIT:
            self._queue.append(Event(EventType.ERRORED, None))
            self.close()
            return
        self._queue.append(ev)
        self._wakeup.set()

    def drain(self) -> list[Event]:
        out = list(self._queue)
        self._queue.clear()
        return out

    async def next_batch(self) -> list[Event]:
        """Wait for at least one event, then return all that are queued.

        Returns [] once the watcher is closed and empty.
        """
        while not self._queue:
            if self.closed:
                return []
            self._wakeup.clear()
            await self._wakeup.wait()
        return self.drain()

    def __aiter__(self) -> Watcher:
        return self

    async def __anext__(self) -> Event:
        while not self._queue:
            if self.closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._queue.popleft()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._state._remove_watcher(self)
            self._wakeup.set()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class State:
    """Resources keyed by (namespace, type, id), with events for every change."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._items: dict[Kind, dict[str, Resource]] = {}
        self._watchers: dict[Kind, list[Watcher]] = {}
        self._triggers: dict[Kind, list[Trigger]] = {}
        self._exclusive: dict[Kind, str] = {}
        self.registry = Registry()
        self.register(RESOURCE_DEFINITION_DEF)
        self.register(NAMESPACE_DEF)
        self.add_namespace(META_NAMESPACE, "Metadata namespace which contains resource definitions.")

    # ---- definitions and namespaces -------------------------------------------------

    def register(self, d: ResourceDefinition) -> None:
        """Make a type known; its definition becomes a resource in ``meta``."""
        self.registry.add(d)
        self.put(META_NAMESPACE, RESOURCE_DEFINITION_TYPE, d.id, definition_spec(d))

    def add_namespace(self, name: str, description: str = "") -> None:
        self.put(META_NAMESPACE, NAMESPACE_TYPE, name, NamespaceSpec(description=description))

    def claim_exclusive(self, namespace: str, type_: str, owner: str) -> None:
        """Reserve (namespace, type) for one writer; a second claimant is a programming error."""
        prev = self._exclusive.get((namespace, type_))
        if prev is not None and prev != owner:
            raise OwnerConflictError(
                f"{type_} in namespace {namespace} is already the exclusive output of {prev}, not {owner}"
            )
        self._exclusive[(namespace, type_)] = owner

    def release_exclusive(self, namespace: str, type_: str, owner: str) -> None:
        if self._exclusive.get((namespace, type_)) == owner:
            del self._exclusive[(namespace, type_)]

    def exclusive_owner(self, namespace: str, type_: str) -> str | None:
        return self._exclusive.get((namespace, type_))

    # ---- reads ---------------------------------------------------------------------

    def get(self, namespace: str, type_: str, id_: str) -> Resource | None:
        items = self._items.get((namespace, type_))
        return items.get(id_) if items else None

    def must_get(self, namespace: str, type_: str, id_: str) -> Resource:
        res = self.get(namespace, type_, id_)
        if res is None:
            raise NotFoundError(f"resource {type_}({namespace}/{id_}) does not exist")
        return res

    def list(self, namespace: str, type_: str) -> builtins.list[Resource]:
        """All resources of a kind, sorted by id byte-wise (merge rules depend on it)."""
        items = self._items.get((namespace, type_))
        if not items:
            return []
        return [items[k] for k in sorted(items)]

    def namespaces_of(self, type_: str) -> builtins.list[str]:
        return sorted(ns for (ns, t), items in self._items.items() if t == type_ and items)

    def __iter__(self) -> Iterator[Resource]:
        for items in list(self._items.values()):
            yield from list(items.values())

    # ---- watches -------------------------------------------------------------------

    def watch(
        self, namespace: str, type_: str, id_: str | None = None, bootstrap: bool = True
    ) -> Watcher:
        """Start a watch: with ``bootstrap`` the queue starts with a CREATED event per
        existing resource and a BOOTSTRAPPED marker, then every later change."""
        w = Watcher(self, (namespace, type_), id_)
        if bootstrap:
            if id_ is None:
                for res in self.list(namespace, type_):
                    w._push(Event(EventType.CREATED, res))
            else:
                one = self.get(namespace, type_, id_)
                if one is not None:
                    w._push(Event(EventType.CREATED, one))
            w._push(Event(EventType.BOOTSTRAPPED, None))
        self._watchers.setdefault((namespace, type_), []).append(w)
        return w

    def _remove_watcher(self, w: Watcher) -> None:
        lst = self._watchers.get(w.kind)
        if lst and w in lst:
            lst.remove(w)

    def subscribe(self, namespace: str, type_: str, trigger: Trigger) -> Callable[[], None]:
        """Call ``trigger(event)`` synchronously on every change of a kind.

        This is how controllers learn of input changes without a queue: the
        trigger only marks the controller dirty, so a burst costs one reconcile.
        Returns the function that unsubscribes.
        """
        lst = self._triggers.setdefault((namespace, type_), [])
        lst.append(trigger)

        def unsubscribe() -> None:
            if trigger in lst:
                lst.remove(trigger)

        return unsubscribe

    def _emit(self, ev: Event, kind: Kind, id_: str) -> None:
        for w in self._watchers.get(kind, ()):
            if w.id is None or w.id == id_:
                w._push(ev)
        for t in self._triggers.get(kind, ()):
            try:
                t(ev)
            except Exception:  # a broken subscriber must not break the writer
                log.exception("trigger for %s/%s failed", *kind)

    # ---- writes --------------------------------------------------------------------

    def _check_owner(self, kind: Kind, owner: str, existing: Resource | None) -> None:
        excl = self._exclusive.get(kind)
        if excl is not None and excl != owner:
            raise OwnerConflictError(
                f"{kind[1]} in namespace {kind[0]} is the exclusive output of {excl}; "
                f"{owner or 'an external writer'} may not write it"
            )
        if existing is not None and existing.md.owner != owner:
            raise OwnerConflictError(
                f"resource {kind[1]}({kind[0]}/{existing.md.id}) is owned by "
                f"{existing.md.owner or 'an external writer'}, not {owner or 'an external writer'}"
            )

    def create(self, res: Resource, owner: str = "") -> Resource:
        md = res.md
        kind = (md.namespace, md.type)
        items = self._items.setdefault(kind, {})
        if md.id in items:
            raise AlreadyExistsError(f"resource {md.type}({md.namespace}/{md.id}) already exists")
        self._check_owner(kind, owner, None)
        now = self._clock()
        stored = Resource(
            Metadata(
                md.namespace, md.type, md.id, 1, owner, Phase.RUNNING, now, now, md.finalizers, md.labels
            ),
            res.spec,
        )
        items[md.id] = stored
        self._emit(Event(EventType.CREATED, stored), kind, md.id)
        return stored

    def update(self, res: Resource, owner: str = "", expected_version: int | None = None) -> Resource:
        """Store a new spec/labels for an existing resource.

        A change that makes the resource equal to what is stored writes nothing:
        no version bump, no event.
        """
        md = res.md
        kind = (md.namespace, md.type)
        cur = self._items.get(kind, {}).get(md.id)
        if cur is None:
            raise NotFoundError(f"resource {md.type}({md.namespace}/{md.id}) does not exist")
        self._check_owner(kind, owner, cur)
        if expected_version is not None and expected_version != cur.md.version:
            raise VersionConflictError(
                f"resource {md.type}({md.namespace}/{md.id}) is at version {cur.md.version}, "
                f"not {expected_version}"
            )
        if cur.md.phase is Phase.TEARING_DOWN:
            raise PhaseConflictError(f"resource {md.type}({md.namespace}/{md.id}) is being torn down")
        if cur.spec == res.spec and cur.md.labels == md.labels:
            return cur
        return self._store(cur, replace(cur.md, labels=md.labels), res.spec)

    def _store(self, cur: Resource, md: Metadata, spec: BaseModel) -> Resource:
        stored = Resource(replace(md, version=cur.md.version + 1, updated=self._clock()), spec)
        self._items[(md.namespace, md.type)][md.id] = stored
        self._emit(Event(EventType.UPDATED, stored, cur), (md.namespace, md.type), md.id)
        return stored

    def put(
        self,
        namespace: str,
        type_: str,
        id_: str,
        spec: BaseModel,
        owner: str = "",
        labels: dict[str, str] | None = None,
    ) -> Resource:
        """Create the resource, or update it if it differs: the usual way a
        controller writes desired state."""
        lbl = tuple(sorted(labels.items())) if labels else ()
        cur = self.get(namespace, type_, id_)
        if cur is None:
            return self.create(Resource(Metadata(namespace, type_, id_, labels=lbl), spec), owner)
        return self.update(Resource(replace(cur.md, labels=lbl), spec), owner)

    def teardown(self, namespace: str, type_: str, id_: str, owner: str = "") -> bool:
        """Mark a resource as going away; True when nothing holds it (no finalizers)."""
        cur = self.must_get(namespace, type_, id_)
        self._check_owner((namespace, type_), owner, cur)
        if cur.md.phase is Phase.RUNNING:
            cur = self._store(cur, replace(cur.md, phase=Phase.TEARING_DOWN), cur.spec)
        return not cur.md.finalizers

    def destroy(self, namespace: str, type_: str, id_: str, owner: str = "") -> None:
        cur = self.must_get(namespace, type_, id_)
        self._check_owner((namespace, type_), owner, cur)
        if cur.md.finalizers:
            raise FinalizersPendingError(
                f"resource {type_}({namespace}/{id_}) still has finalizers {list(cur.md.finalizers)}"
            )
        del self._items[(namespace, type_)][id_]
        self._emit(Event(EventType.DESTROYED, cur), (namespace, type_), id_)

    def add_finalizer(self, namespace: str, type_: str, id_: str, *names: str) -> Resource:
        """Finalizer changes are allowed in any phase, on behalf of the owner (netd.md §1.3)."""
        cur = self.must_get(namespace, type_, id_)
        new = tuple(dict.fromkeys((*cur.md.finalizers, *names)))
        if new == cur.md.finalizers:
            return cur
        return self._store(cur, replace(cur.md, finalizers=new), cur.spec)

    def remove_finalizer(self, namespace: str, type_: str, id_: str, *names: str) -> Resource:
        cur = self.must_get(namespace, type_, id_)
        new = tuple(f for f in cur.md.finalizers if f not in names)
        if new == cur.md.finalizers:
            return cur
        return self._store(cur, replace(cur.md, finalizers=new), cur.spec)
