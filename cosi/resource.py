"""Resources: metadata plus a typed pydantic spec.

Stored resources are immutable by convention: every write stores a new
``Resource`` object, so a reader (a watcher, an API response being encoded)
can keep the object it got without copying it and never sees a half-done
change.
"""

from __future__ import annotations

import enum
import functools
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel


class Phase(enum.StrEnum):
    RUNNING = "running"
    TEARING_DOWN = "tearingDown"


@dataclass(frozen=True, slots=True)
class Metadata:
    namespace: str
    type: str
    id: str
    version: int = 0
    owner: str = ""
    phase: Phase = Phase.RUNNING
    created: float = 0.0
    updated: float = 0.0
    finalizers: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.namespace, self.type, self.id)

    def label(self, name: str) -> str | None:
        for k, v in self.labels:
            if k == name:
                return v
        return None


@dataclass(frozen=True, slots=True)
class Resource:
    md: Metadata
    spec: BaseModel

    @property
    def id(self) -> str:
        return self.md.id

    @property
    def type(self) -> str:
        return self.md.type

    @property
    def namespace(self) -> str:
        return self.md.namespace

    def with_spec(self, spec: BaseModel) -> Resource:
        return replace(self, spec=spec)


def new_resource(
    namespace: str, type_: str, id_: str, spec: BaseModel, labels: dict[str, str] | None = None
) -> Resource:
    """A resource not yet stored (version 0)."""
    lbl = tuple(sorted(labels.items())) if labels else ()
    return Resource(Metadata(namespace, type_, id_, labels=lbl), spec)


class EventType(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DESTROYED = "destroyed"
    BOOTSTRAPPED = "bootstrapped"
    ERRORED = "errored"


@dataclass(frozen=True, slots=True)
class Event:
    """One change. ``resource`` is the new state (the last state for DESTROYED);
    ``old`` is the previous state for UPDATED. Both are None for BOOTSTRAPPED."""

    type: EventType
    resource: Resource | None
    old: Resource | None = None
    # Monotonic time of the write, for delivery-latency measurements.
    at: float = field(default_factory=time.monotonic)


def rfc3339(ts: float) -> str:
    """RFC 3339 UTC to the second, as decisions.md fixes for output.

    Memoised per whole second: resources written together share their
    timestamps' second, and ``strftime`` was most of the cost of encoding a
    resource's metadata (two per resource, 10,000 routes per ``get``).
    ``gmtime`` floors a float to its second, so the floor is the key.
    """
    return _rfc3339_second(math.floor(ts))


@functools.lru_cache(maxsize=4096)
def _rfc3339_second(sec: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sec))


def metadata_dict(md: Metadata) -> dict[str, Any]:
    """Metadata in the key order of netd.md §1.1; finalizers always present (decisions.md)."""
    out: dict[str, Any] = {
        "namespace": md.namespace,
        "type": md.type,
        "id": md.id,
        "version": md.version,
        "owner": md.owner,
        "phase": str(md.phase),
        "created": rfc3339(md.created),
        "updated": rfc3339(md.updated),
    }
    if md.labels:
        out["labels"] = dict(md.labels)
    out["finalizers"] = list(md.finalizers)
    return out


def spec_dict(spec: BaseModel) -> dict[str, Any]:
    """The spec as plain data with its documented (camelCase) keys."""
    return spec.model_dump(mode="json", by_alias=True)


def resource_dict(res: Resource) -> dict[str, Any]:
    return {"metadata": metadata_dict(res.md), "spec": spec_dict(res.spec)}
