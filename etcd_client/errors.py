"""Client errors; every message names the endpoint or the operation involved."""

from __future__ import annotations


class EtcdError(Exception):
    """An etcd request failed (the server answered with an error)."""


class EtcdUnavailable(EtcdError):
    """No endpoint could be reached."""


class WatchCompacted(EtcdError):
    """The watch's start revision was compacted away: re-read (get) and watch from the new revision."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"watch start revision compacted (oldest kept revision {compact_revision})")
        self.compact_revision = compact_revision
