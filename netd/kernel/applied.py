"""The record of kernel objects our specs created: ``<state-dir>/applied.json``.

machined may restart with a changed config. The new run has no memory of the
old specs, yet what only the old config had must leave the kernel, while
objects that none of our configs created (added by hand, by other software)
must stay. So every spec controller records what it creates (and forgets what
it removes); on its first reconcile after a start it removes the recorded
objects that no current spec wants (decisions.md "What it applied").

Keys are the spec IDs (AddressID, RouteID, link name); ``data`` is whatever the
controller needs to find and remove the object again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("netd.applied")

APPLIED_FILE = "applied.json"


class Applied:
    """Kind → key → data, written through to disk on every change (atomically)."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self._data: dict[str, dict[str, dict[str, Any]]] = {}
        self._deferred = 0  # > 0 inside batch(): changes are saved once at its end
        self._dirty = False
        if path is not None:
            try:
                with open(path, encoding="utf-8") as f:
                    raw = json.load(f)
                if isinstance(raw, dict):
                    self._data = {
                        k: {kk: vv for kk, vv in v.items() if isinstance(vv, dict)}
                        for k, v in raw.items()
                        if isinstance(v, dict)
                    }
            except FileNotFoundError:
                pass
            except (OSError, ValueError) as e:
                log.error("ignoring unreadable %s: %s", path, e)

    @classmethod
    def in_dir(cls, state_dir: str | None) -> Applied:
        return cls(os.path.join(state_dir, APPLIED_FILE) if state_dir else None)

    def items(self, kind: str) -> dict[str, dict[str, Any]]:
        return dict(self._data.get(kind, {}))

    def add(self, kind: str, key: str, data: dict[str, Any] | None = None) -> None:
        entry = data or {}
        if self._data.get(kind, {}).get(key) == entry:
            return
        self._data.setdefault(kind, {})[key] = entry
        self._save()

    def remove(self, kind: str, key: str) -> None:
        if key in self._data.get(kind, {}):
            del self._data[kind][key]
            self._save()

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
        tmp = f"{self.path}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(self._data, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as e:
            log.error("cannot write %s: %s", self.path, e)
