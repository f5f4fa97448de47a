"""COSI-like resource state and controller runtime.

Knows nothing about networking: ``netd`` defines resource types and
controllers on top of it, ``machined`` wires them together.
"""

from cosi.controller import Backoff, Context, Controller, Input, InputKind, Output, OutputKind
from cosi.definition import ResourceDefinition
from cosi.errors import (
    AccessError,
    AlreadyExistsError,
    FinalizersPendingError,
    NotFoundError,
    OwnerConflictError,
    PhaseConflictError,
    StateError,
    VersionConflictError,
)
from cosi.resource import Event, EventType, Metadata, Phase, Resource
from cosi.runtime import Runtime
from cosi.state import State, Watcher

__all__ = [
    "AccessError",
    "AlreadyExistsError",
    "Backoff",
    "Context",
    "Controller",
    "Event",
    "EventType",
    "FinalizersPendingError",
    "Input",
    "InputKind",
    "Metadata",
    "NotFoundError",
    "Output",
    "OutputKind",
    "OwnerConflictError",
    "Phase",
    "PhaseConflictError",
    "Resource",
    "ResourceDefinition",
    "Runtime",
    "State",
    "StateError",
    "VersionConflictError",
    "Watcher",
]
