"""The `--state-file` snapshot: all affiliates with their expirations, so a restart loses nothing.

Format: JSON (version 1), blobs base64; chosen over protobuf because it is self-describing,
readable when debugging, and the state is small (≤ 2 KiB data + 64 x 32 B per affiliate).
Written atomically (temp file in the same directory, fsync, rename, fsync of the directory) so a
crash mid-write leaves the previous snapshot. Entries already expired at load are dropped.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from netd.kernel.files import replace_file

from .model import AffiliateRecord, EndpointRecord

FORMAT_VERSION = 1

Snapshot = dict[str, list[AffiliateRecord]]


class StateFileError(ValueError):
    """The state file exists but cannot be used (the message names the file and the problem)."""


def encode(state: Snapshot, saved_at: float) -> bytes:
    clusters: dict[str, list[dict[str, Any]]] = {}
    for cid, records in state.items():
        clusters[cid] = [
            {
                "id": r.id,
                "data": base64.b64encode(r.data).decode(),
                "expiration": r.expiration,
                "endpoints": [
                    {"blob": base64.b64encode(e.blob).decode(), "expiration": e.expiration}
                    for e in r.endpoints
                ],
            }
            for r in records
        ]
    doc = {"version": FORMAT_VERSION, "saved_at": saved_at, "clusters": clusters}
    return json.dumps(doc, separators=(",", ":")).encode()


def decode(raw: bytes, now: float) -> Snapshot:
    doc = json.loads(raw)
    if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
        raise ValueError(f"unsupported format (want version {FORMAT_VERSION})")
    out: Snapshot = {}
    for cid, records in doc["clusters"].items():
        kept: list[AffiliateRecord] = []
        for r in records:
            exp = float(r["expiration"])
            if exp < now:  # same rule as GC (§4.8): expired affiliates are not restored
                continue
            eps = [
                EndpointRecord(base64.b64decode(e["blob"]), float(e["expiration"]))
                for e in r["endpoints"]
                if float(e["expiration"]) > now
            ]
            kept.append(AffiliateRecord(str(r["id"]), base64.b64decode(r["data"]), exp, eps))
        if kept:
            out[str(cid)] = kept
    return out


def write_atomic(path: Path, payload: bytes) -> None:
    replace_file(path, payload, 0o600)


def save(path: Path, state: Snapshot, now: float) -> None:
    write_atomic(path, encode(state, now))


def load(path: Path, now: float) -> Snapshot:
    """The saved state, or empty when the file does not exist yet."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise StateFileError(f"{path}: cannot read: {e.strerror}") from e
    try:
        return decode(raw, now)
    except (ValueError, KeyError, TypeError) as e:
        raise StateFileError(f"{path}: not a discovery-service state file: {e}") from e
