"""Errors raised by the state and runtime.

Each error names the resource it is about, so that a controller's log line is
enough to find the conflicting writer.
"""

from __future__ import annotations


class StateError(Exception):
    """Base of every error the state raises."""


class NotFoundError(StateError):
    """The resource does not exist."""


class AlreadyExistsError(StateError):
    """A create found a resource with the same (namespace, type, id)."""


class OwnerConflictError(StateError):
    """A writer that is not the resource's owner (or not the type's exclusive writer) tried to change it."""


class VersionConflictError(StateError):
    """An update presented a version that is no longer current (optimistic concurrency)."""


class PhaseConflictError(StateError):
    """An ordinary update hit a resource that is being torn down."""


class FinalizersPendingError(StateError):
    """Destroy was called while finalizers still hold the resource."""


class AccessError(StateError):
    """A controller touched a type it did not declare as input or output."""


class UnknownTypeError(StateError):
    """A type word matches no registered resource definition."""


class AmbiguousTypeError(StateError):
    """A type word matches several resource definitions."""
