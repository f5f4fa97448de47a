"""The record of kernel objects our specs created: ``<state-dir>/applied.json``.

machined may restart with a changed config. The new run has no memory of the
old specs, yet what only the old config had must leave the kernel, while
objects that none of our configs created (added by hand, by other software)
must stay. So every spec controller records what it creates (and forgets what
it removes); on its first reconcile after a start it removes the recorded
objects that no current spec wants (decisions.md "What it applied").

Keys are the spec IDs (AddressID, RouteID, link name); ``data`` is whatever the
controller needs to find and remove the object again.

Intent before action (issue 16). A creation is recorded as *pending*
(:meth:`Applied.pend`, durably) BEFORE the request that makes it is sent, and
*confirmed* (:meth:`Applied.add`) or *abandoned* (:meth:`Applied.abandon`) after
the kernel answered. A ``kill -9`` between the two leaves the pending record on
disk; at the next start the controller resolves it (:meth:`Applied.resolve`):
the object exists in the kernel and matches the record → ours (confirmed); it
does not → the record is dropped. A pending record sits beside the confirmed
record of the same key (a route replaced by one with another gateway: the old
one may still be in the kernel when we crash), so neither is lost.

Durability: every save is :func:`netd.kernel.files.replace_file` (write, fsync,
rename, fsync of the directory). Controllers write many records per pass
inside :meth:`Applied.batch`, so a pass costs one save for its intents and
one for its outcome, not one per object.

A truncated or corrupt file (a power loss on a file system that lost the data)
is logged and ignored: the controllers then own only what they create from now
on, and adopt the rest without ever deleting it (a foreign object is never
removed because a record was lost).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

from netd.kernel.files import replace_file

log = logging.getLogger("netd.applied")

APPLIED_FILE = "applied.json"

#: The section of the file holding pending records (kind → key → data); not a kind.
PENDING = "~pending"


class Applied:
    """Kind → key → data, written through to disk on every change (atomically)."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self._data: dict[str, dict[str, dict[str, Any]]] = {}
        self._pending: dict[str, dict[str, dict[str, Any]]] = {}
        self.corrupt: str | None = None  # why the file on disk could not be read
        self.saves = 0  # writes of the file (tests, benches)
        self._deferred = 0  # > 0 inside batch(): changes are saved once at its end
        self._dirty = False
        if path is not None:
            try:
                with open(path, encoding="utf-8") as f:
                    raw = json.load(f)
                if not isinstance(raw, dict):
                    raise ValueError(f"want a JSON object, got {type(raw).__name__}")
                pending = raw.pop(PENDING, {})
                self._data = _sections(raw)
                self._pending = _sections(pending if isinstance(pending, dict) else {})
            except FileNotFoundError:
                pass
            except (OSError, ValueError) as e:
                self.corrupt = str(e)
                log.error(
                    "ignoring unreadable %s (%s): objects created by an earlier run and no longer "
                    "configured stay in the kernel; those the current specs want are adopted",
                    path,
                    e,
                )

    @classmethod
    def in_dir(cls, state_dir: str | None) -> Applied:
        return cls(os.path.join(state_dir, APPLIED_FILE) if state_dir else None)

    def items(self, kind: str) -> dict[str, dict[str, Any]]:
        return dict(self._data.get(kind, {}))

    def pending(self, kind: str) -> dict[str, dict[str, Any]]:
        """The creations of ``kind`` announced but not confirmed (after a crash: to resolve)."""
        return dict(self._pending.get(kind, {}))

    def add(self, kind: str, key: str, data: dict[str, Any] | None = None) -> None:
        """Record the object as ours (confirms a pending creation of ``key``)."""
        entry = data or {}
        had_pending = self._pending.get(kind, {}).pop(key, None) is not None
        if not had_pending and self._data.get(kind, {}).get(key) == entry:
            return
        self._data.setdefault(kind, {})[key] = entry
        self._save()

    def pend(self, kind: str, key: str, data: dict[str, Any] | None = None) -> None:
        """Announce the creation of an object BEFORE the request that makes it is sent.
        The caller saves it durably before acting: call it inside :meth:`batch` and
        send after the block (or alone: it is written at once)."""
        entry = data or {}
        if self._pending.get(kind, {}).get(key) == entry:
            return
        self._pending.setdefault(kind, {})[key] = entry
        self._save()

    def abandon(self, kind: str, key: str) -> None:
        """The announced creation did not happen: forget the pending record only."""
        if self._pending.get(kind, {}).pop(key, None) is not None:
            self._save()

    def confirm(self, kind: str, key: str) -> None:
        """The announced creation happened, with the data announced."""
        data = self._pending.get(kind, {}).get(key)
        if data is not None:
            self.add(kind, key, data)

    def remove(self, kind: str, key: str) -> None:
        """Forget the object (removed, or not ours any more), pending creation included."""
        changed = self._pending.get(kind, {}).pop(key, None) is not None
        if key in self._data.get(kind, {}):
            del self._data[kind][key]
            changed = True
        if changed:
            self._save()

    def resolve(self, kind: str, exists: Callable[[str, dict[str, Any]], bool]) -> tuple[int, int]:
        """After a start: each pending record of ``kind`` whose object ``exists`` (is in the
        kernel and matches the record) becomes ours, the others are dropped (a confirmed
        record of the same key stays). Returns (confirmed, dropped); one save."""
        pending = self._pending.pop(kind, {})
        if not pending:
            return 0, 0
        ok = 0
        with self.batch():
            self._dirty = True
            for key, data in pending.items():
                if exists(key, data):
                    ok += 1
                    self._data.setdefault(kind, {})[key] = data
        return ok, len(pending) - ok

    def __contains__(self, kind_key: tuple[str, str]) -> bool:
        kind, key = kind_key
        return key in self._data.get(kind, {})

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Many changes, one write of the file at the end (10,000 routes recorded one
        by one would be 10,000 ever larger writes). The block must not await: another
        controller shares this record and would write meanwhile."""
        self._deferred += 1
        try:
            yield
        finally:
            self._deferred -= 1
            if self._deferred == 0 and self._dirty:
                self._save()

    def _save(self) -> None:
        if self._deferred:
            self._dirty = True
            return
        self._dirty = False
        if self.path is None:
            return
        doc: dict[str, Any] = {k: v for k, v in self._data.items() if v}
        pending = {k: v for k, v in self._pending.items() if v}
        if pending:
            doc[PENDING] = pending
        # Compact JSON: 10,000 routes are ~1.5 MB indented, written twice per pass.
        text = json.dumps(doc, separators=(",", ":"), sort_keys=True)
        try:
            replace_file(self.path, text.encode(), 0o600)
            self.saves += 1
        except OSError as e:
            log.error("cannot write %s: %s", self.path, e)


def _sections(raw: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """kind → key → data, keeping only well-formed entries."""
    return {
        k: {kk: vv for kk, vv in v.items() if isinstance(vv, dict)}
        for k, v in raw.items()
        if isinstance(v, dict)
    }
