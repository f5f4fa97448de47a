"""The node identity (kubespan.md §2): 32 random bytes in jxskiss/base62, persisted in the state dir.

The node ID is the affiliate ID everywhere in discovery, so it must be the
same across restarts and must not silently change: a file that exists but
holds no ID is an error, never a reason to make up a new one (§2).

The base62 here is NOT the big-integer base62 of most libraries: it is
jxskiss/base62 v1.1.0's bit-packing scheme (§2.1), which is what Talos nodes
put on the wire; the vectors of §9.6 pin it.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

from netd.kernel.files import write_if_changed, yaml_map

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
NODE_IDENTITY_FILE = "node-identity.yaml"
NODE_ID_BYTES = 32
FILE_MODE = 0o600


class IdentityError(Exception):
    """An identity file exists but cannot be used (the message names the file and the field)."""


def b62encode(data: bytes) -> str:
    """jxskiss/base62 v1.1.0 encoding (§2.1): low 6 bits first; values 30/31/62/63 consume only 5
    bits (except 30/31 as the last ≤6 bits), so every character stays below 62."""
    n = int.from_bytes(data, "big")
    remaining = 8 * len(data)
    out: list[str] = []
    while remaining > 0:
        b = n & 0x3F
        size = 6
        if (b & 0x1E) == 0x1E:
            if remaining > 6 or b > 31:
                size = 5
            b &= 0x1F
        out.append(ALPHABET[b])
        n >>= size
        remaining -= size
    return "".join(out)


def b62decode(text: str) -> bytes:
    """The inverse of :func:`b62encode` (§2.1); ValueError on a character outside the alphabet."""
    acc = 0
    pos = 0
    out = bytearray()
    last = len(text) - 1
    for i, ch in enumerate(text):
        x = _INDEX.get(ch)
        if x is None:
            raise ValueError(f"base62: invalid character {ch!r} at {i}")
        acc |= x << pos
        if i == last:
            pos += x.bit_length()
        elif (x & 0x1E) == 0x1E:
            pos += 5
        else:
            pos += 6
        while pos >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            pos -= 8
    if pos > 0:
        out.append(acc & 0xFF)
    out.reverse()
    return bytes(out)


def generate_node_id() -> str:
    return b62encode(secrets.token_bytes(NODE_ID_BYTES))


def machine_id(node_id: str) -> str:
    """§2 (optional): ``/etc/machine-id`` = hex of the first 16 decoded bytes."""
    return b62decode(node_id)[:16].hex()


@dataclass(frozen=True)
class NodeIdentity:
    node_id: str


def parse_node_identity(text: str, path: str) -> NodeIdentity:
    """The one-key YAML document ``nodeId: <base62>``; an empty or missing value is an error."""
    data = yaml_map(text, path, IdentityError, "a map with nodeId")
    value = data.get("nodeId")
    if not isinstance(value, str) or not value:
        raise IdentityError(f"{path}: nodeId: empty (refusing to make up a new node identity)")
    if any(c not in _INDEX for c in value):
        raise IdentityError(f"{path}: nodeId: {value!r} is not base62")
    return NodeIdentity(value)


def load_or_create_node_identity(state_dir: str) -> tuple[NodeIdentity, bool]:
    """The persisted identity, or a new one written 0600 (§2); True when it was created.

    Written whole through the repo's atomic writer (temporary file + fsync +
    rename) only when no file exists: a crash mid-write leaves no file rather
    than an empty one, which the next start would (rightly) refuse.
    """
    path = os.path.join(state_dir, NODE_IDENTITY_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            return parse_node_identity(f.read(), path), False
    except FileNotFoundError:
        pass
    except OSError as e:
        raise IdentityError(f"{path}: cannot read: {e.strerror or e}") from None
    ident = NodeIdentity(generate_node_id())
    create_exclusive(path, f"nodeId: {ident.node_id}\n".encode())
    return ident, True


def create_exclusive(path: str, contents: bytes) -> None:
    """Write a new state file (0600); an existing file is never replaced (exclusive create, §2/§3.1)."""
    if os.path.lexists(path):
        raise IdentityError(f"{path}: exists already, not overwriting")
    write_if_changed(path, contents, FILE_MODE)
