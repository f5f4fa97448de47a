"""Transaction building blocks: comparisons and operations, as small immutable values.

    txn([Compare.absent(k)], success=[Op.put(k, v, lease)], failure=[Op.get(k)])

is the election primitive ("create k unless it exists", used by the VIP operator).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CompareTarget = Literal["version", "create", "mod", "value", "lease"]
CompareResult = Literal["==", "!=", ">", "<"]


@dataclass(frozen=True, slots=True)
class Compare:
    key: bytes
    target: CompareTarget
    result: CompareResult = "=="
    operand: int | bytes = 0

    @staticmethod
    def absent(key: bytes) -> Compare:
        """The key does not exist (create revision 0): the election / create-once primitive."""
        return Compare(key, "create", "==", 0)

    @staticmethod
    def mod_revision_is(key: bytes, revision: int) -> Compare:
        """The key was last written at `revision` (0 = absent): optimistic concurrency."""
        return Compare(key, "mod", "==", revision)

    @staticmethod
    def value_is(key: bytes, value: bytes) -> Compare:
        return Compare(key, "value", "==", value)

    @staticmethod
    def create_revision_is(key: bytes, revision: int) -> Compare:
        """The key is the one created at `revision` (not deleted and re-created since): guards the
        election's resign and stale-key delete against removing somebody else's key."""
        return Compare(key, "create", "==", revision)


@dataclass(frozen=True, slots=True)
class Sort:
    """Order of a range read: `Sort("create")` oldest first, `Sort("create", descending=True)`."""

    target: Literal["key", "version", "create", "mod", "value"] = "key"
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Op:
    kind: Literal["put", "delete", "get"]
    key: bytes
    value: bytes = b""
    lease: int = 0
    range_end: bytes = b""

    @staticmethod
    def put(key: bytes, value: bytes, lease: int = 0) -> Op:
        return Op("put", key, value, lease)

    @staticmethod
    def delete(key: bytes, prefix: bool = False) -> Op:
        return Op("delete", key, range_end=prefix_end(key) if prefix else b"")

    @staticmethod
    def get(key: bytes, prefix: bool = False) -> Op:
        return Op("get", key, range_end=prefix_end(key) if prefix else b"")


def prefix_end(prefix: bytes) -> bytes:
    """The range end that makes [prefix, end) cover every key starting with `prefix` (etcd's rule:
    increment the last byte that is not 0xff, drop what follows; all-0xff means "to the end" = \\0)."""
    b = bytearray(prefix)
    while b:
        if b[-1] < 0xFF:
            b[-1] += 1
            return bytes(b)
        b.pop()
    return b"\0"
