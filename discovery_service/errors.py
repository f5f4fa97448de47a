"""Errors of the service's pure logic; the gRPC adapter maps them to status codes (§4.8)."""

from __future__ import annotations


class ServiceError(Exception):
    """Base: a request the service refuses; the message is what the client sees."""


class InvalidArgument(ServiceError):
    """A request field breaks a §4.8 validation limit (gRPC INVALID_ARGUMENT)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class LimitExceeded(ServiceError):
    """A per-cluster or per-affiliate capacity limit of §4.8 (gRPC RESOURCE_EXHAUSTED)."""


class Conflict(ServiceError):
    """A replicated write lost an optimistic-concurrency race; the caller re-reads and retries."""


class Unavailable(ServiceError):
    """The backing store cannot be reached (gRPC UNAVAILABLE)."""
