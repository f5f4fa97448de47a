"""Replicated state in etcd: several service replicas serve the same clusters.

Key layout under the prefix P (default `/discovery/`), ids percent-encoded so they never contain `/`:

    P<cluster>/<affiliate>/a            {"d": data (base64), "x": expiration}   the affiliate exists
    P<cluster>/<affiliate>/e/<sha256>   {"b": blob (base64), "x": expiration, "s": insertion seq}

An endpoint's key is the hash of its blob, so the byte-equal dedupe of §4.8 is a key identity and
"extend to max(old, exp)" is a put of the same key. Payloads stay the opaque encrypted blobs.

Writes: every replica computes the new record with the shared §4.8 rules (model.merge_update) from
its cache, and commits it in one txn guarded by the `a` key's mod revision, so two replicas
updating the same affiliate serialize (the loser waits for the winner's event and retries). The
1024-affiliates limit is checked against the replica's cache: two replicas creating affiliates in
the same cluster at the same instant may overshoot it by the number of concurrent creates.

Reads and fan-out: each replica loads the prefix, then follows one etcd watch from the next
revision and keeps an in-memory cache; Watch/List are served from the cache, and a notification is
published when an affiliate's exported view (id, data, endpoint blobs) changed in a revision, so
every replica's watchers see every replica's writes, and a fresh replica rebuilds everything from
etcd. An RPC returns only once the replica's own cache has seen its write (read-your-writes).

Expiry: keys carry etcd leases so that nothing outlives its TTL even when no replica runs. One
lease per *expiration bucket* (expirations rounded up to `lease_bucket` seconds) rather than per
affiliate: a per-affiliate lease would cost a grant (a raft write) on every update and cannot
express per-endpoint expirations, while with buckets all updates of a few seconds share one lease
(at 200 updates/s and a 30 min TTL: one grant per bucket, ~360 live leases). A bucket makes keys
live up to `lease_bucket` (+ etcd's lease granularity) longer than their expiration; the replicas'
GC (every gc interval, same rule as the memory store, guarded txns so replicas don't race) removes
expired entries on time. Expired endpoints of a live affiliate produce a normal update (quirk Q1,
as in memory_store).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from etcd_client import (
    Compare,
    EtcdClient,
    EtcdError,
    EtcdUnavailable,
    EventType,
    Op,
    WatchBatch,
    WatchCompacted,
)

from .constants import ETCD_LEASE_BUCKET, ETCD_PREFIX
from .errors import LimitExceeded, Unavailable
from .limits import Limits
from .model import AffiliateRecord, AffiliateView, EndpointRecord, Notification, expire, merge_update
from .store import StoreStats
from .subscriptions import Hub, Subscription

log = logging.getLogger(__name__)

MAX_CONFLICT_RETRIES = 20
RESYNC_BACKOFF = 1.0


@dataclass(slots=True)
class _Endpoint:
    blob: bytes
    expiration: float
    seq: int
    mod_revision: int


@dataclass(slots=True)
class _Entry:
    """What etcd holds for one affiliate; `a_mod == 0` means no `a` key (the affiliate does not
    exist; endpoint keys left without it are orphans the GC removes)."""

    data: bytes = b""
    expiration: float = 0.0
    a_mod: int = 0
    endpoints: dict[str, _Endpoint] = field(default_factory=dict)

    def record(self, affiliate_id: str) -> AffiliateRecord | None:
        if not self.a_mod:
            return None
        eps = sorted(self.endpoints.values(), key=lambda e: e.seq)
        return AffiliateRecord(
            affiliate_id, self.data, self.expiration, [EndpointRecord(e.blob, e.expiration) for e in eps]
        )

    def view(self, affiliate_id: str) -> AffiliateView | None:
        if not self.a_mod:
            return None
        eps = sorted(self.endpoints.values(), key=lambda e: e.seq)
        return AffiliateView(affiliate_id, self.data, tuple(e.blob for e in eps))


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def endpoint_key_suffix(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()[:32]


class EtcdStore:
    def __init__(
        self,
        client: EtcdClient,
        limits: Limits | None = None,
        prefix: str = ETCD_PREFIX,
        lease_bucket: float = ETCD_LEASE_BUCKET,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limits = limits or Limits()
        self.client = client
        self.prefix = prefix.encode()
        self.lease_bucket = lease_bucket
        self._clock = clock
        self._clusters: dict[str, dict[str, _Entry]] = {}
        self._hub = Hub(on_empty=self._maybe_drop)
        self._revision = 0
        self._advanced = asyncio.Event()
        self._leases: dict[float, asyncio.Future[int]] = {}
        self._watch_task: asyncio.Task[None] | None = None
        self._synced = False

    # --- keys ------------------------------------------------------------------------------------

    def _aff_prefix(self, cid: str, aid: str) -> bytes:
        return self.prefix + f"{quote(cid, safe='')}/{quote(aid, safe='')}/".encode()

    def _parse_key(self, key: bytes) -> tuple[str, str, str] | None:
        """(cluster, affiliate, "a" or "e/<hash>") or None for a foreign key."""
        parts = key[len(self.prefix) :].decode(errors="replace").split("/", 2)
        if len(parts) != 3:
            return None
        return unquote(parts[0]), unquote(parts[1]), parts[2]

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        await self._load()
        self._watch_task = asyncio.create_task(self._follow(), name="etcd-store-watch")

    async def close(self) -> None:
        self._hub.close_all()
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch_task
            self._watch_task = None
        await self.client.close()

    async def _load(self) -> None:
        """(Re)build the cache from a full read; publish what differs from the previous cache."""
        try:
            res = await self.client.get_prefix(self.prefix)
        except EtcdError as e:
            raise Unavailable(f"etcd: {e}") from e
        old = self._clusters
        fresh: dict[str, dict[str, _Entry]] = {}
        for kv in res.kvs:
            self._apply_put(fresh, kv.key, kv.value, kv.mod_revision)
        self._clusters = fresh
        for cid in set(old) | set(fresh) | self._hub.cluster_ids():
            before, after = old.get(cid, {}), fresh.get(cid, {})
            for aid in set(before) | set(after):
                self._publish_diff(cid, aid, before.get(aid), after.get(aid))
            if cid not in fresh and self._hub.has_subscribers(cid):
                fresh[cid] = {}
        self._set_revision(res.revision)
        self._synced = True
        log.info("etcd store: loaded %d keys at revision %d", len(res.kvs), res.revision)

    async def _follow(self) -> None:
        while True:
            try:
                async for batch in self.client.watch(
                    self.prefix, prefix=True, start_revision=self._revision + 1
                ):
                    self._apply_batch(batch)
            except asyncio.CancelledError:
                raise
            except WatchCompacted as e:
                log.warning("etcd store: %s; reloading", e)
            except Exception as e:  # keep following whatever happens; the cache resyncs below
                log.warning("etcd store: watch failed: %s; reloading", e)
                await asyncio.sleep(RESYNC_BACKOFF)
            while True:
                try:
                    await self._load()
                    break
                except Unavailable as e:
                    log.warning("etcd store: reload failed: %s", e)
                    await asyncio.sleep(RESYNC_BACKOFF)

    def _set_revision(self, rev: int) -> None:
        if rev > self._revision:
            self._revision = rev
            ev, self._advanced = self._advanced, asyncio.Event()
            ev.set()

    async def _caught_up(self, rev: int) -> None:
        deadline = asyncio.get_running_loop().time() + self.client.timeout
        while self._revision < rev:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise Unavailable(f"etcd: watch did not reach revision {rev} within {self.client.timeout:g}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._advanced.wait(), left)

    # --- cache maintenance -----------------------------------------------------------------------

    def _apply_put(self, clusters: dict[str, dict[str, _Entry]], key: bytes, value: bytes, mod: int) -> None:
        parsed = self._parse_key(key)
        if parsed is None:
            return
        cid, aid, kind = parsed
        try:
            doc = json.loads(value)
            entry = clusters.setdefault(cid, {}).setdefault(aid, _Entry())
            if kind == "a":
                entry.data, entry.expiration, entry.a_mod = base64.b64decode(doc["d"]), float(doc["x"]), mod
            elif kind.startswith("e/"):
                blob = base64.b64decode(doc["b"])
                entry.endpoints[kind[2:]] = _Endpoint(blob, float(doc["x"]), int(doc["s"]), mod)
        except (ValueError, KeyError, TypeError) as e:
            log.warning("etcd store: ignoring malformed key %r: %s", key, e)

    def _apply_delete(self, key: bytes) -> None:
        parsed = self._parse_key(key)
        if parsed is None:
            return
        cid, aid, kind = parsed
        entry = self._clusters.get(cid, {}).get(aid)
        if entry is None:
            return
        if kind == "a":
            entry.a_mod, entry.data, entry.expiration = 0, b"", 0.0
        elif kind.startswith("e/"):
            entry.endpoints.pop(kind[2:], None)
        if not entry.a_mod and not entry.endpoints:
            del self._clusters[cid][aid]

    def _apply_batch(self, batch: WatchBatch) -> None:
        before: dict[tuple[str, str], AffiliateView | None] = {}
        for ev in batch.events:
            parsed = self._parse_key(ev.kv.key)
            if parsed is None:
                continue
            cid, aid, _ = parsed
            if (cid, aid) not in before:
                entry = self._clusters.get(cid, {}).get(aid)
                before[(cid, aid)] = entry.view(aid) if entry else None
            if ev.type is EventType.PUT:
                self._apply_put(self._clusters, ev.kv.key, ev.kv.value, ev.kv.mod_revision)
            else:
                self._apply_delete(ev.kv.key)
        for (cid, aid), old in before.items():
            entry = self._clusters.get(cid, {}).get(aid)
            new = entry.view(aid) if entry else None
            self._notify(cid, aid, old, new)
            if not self._clusters.get(cid) and cid in self._clusters:
                self._maybe_drop(cid)
        self._set_revision(batch.revision)

    def _publish_diff(self, cid: str, aid: str, old: _Entry | None, new: _Entry | None) -> None:
        self._notify(cid, aid, old.view(aid) if old else None, new.view(aid) if new else None)

    def _notify(self, cid: str, aid: str, old: AffiliateView | None, new: AffiliateView | None) -> None:
        if old == new:
            return  # e.g. only an expiration moved: not a change for watchers (§4.8)
        if new is None:
            self._hub.publish(cid, Notification(AffiliateView(aid), deleted=True))
        else:
            self._hub.publish(cid, Notification(new))

    def _maybe_drop(self, cid: str) -> None:
        entries = self._clusters.get(cid)
        if entries is not None and not entries and not self._hub.has_subscribers(cid):
            del self._clusters[cid]

    # --- leases ----------------------------------------------------------------------------------

    async def _lease_for(self, expiration: float) -> int:
        bucket = math.ceil(expiration / self.lease_bucket) * self.lease_bucket
        now = self._clock()
        for b in [b for b in self._leases if b < now - self.lease_bucket]:
            del self._leases[b]
        fut = self._leases.get(bucket)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._leases[bucket] = fut
            try:
                lease = await self.client.lease_grant(max(1, math.ceil(bucket - now) + 1))
                fut.set_result(lease.id)
            except BaseException as e:
                del self._leases[bucket]
                fut.set_exception(e)
                fut.exception()  # retrieved: other waiters get it too
                raise
        return await asyncio.shield(fut)

    def _forget_leases(self) -> None:
        self._leases.clear()

    # --- Store API -------------------------------------------------------------------------------

    def _cluster_entries(self, cid: str) -> dict[str, _Entry]:
        return self._clusters.setdefault(cid, {})

    def _live_count(self, cid: str) -> int:
        return sum(1 for e in self._clusters.get(cid, {}).values() if e.a_mod)

    async def update(
        self, cluster_id: str, affiliate_id: str, data: bytes | None, endpoints: list[bytes], ttl: float
    ) -> None:
        base = self._aff_prefix(cluster_id, affiliate_id)
        for _ in range(MAX_CONFLICT_RETRIES):
            # Everything read from the cache is taken before the first await: the watch mutates
            # entries in place, and the txn must compare against exactly what we merged from.
            entry = self._cluster_entries(cluster_id).get(affiliate_id) or _Entry()
            a_mod = entry.a_mod
            seqs = {k: e.seq for k, e in entry.endpoints.items()}
            old = entry.record(affiliate_id)
            if old is None and self._live_count(cluster_id) >= self.limits.max_affiliates:
                raise LimitExceeded(f"cluster already has {self.limits.max_affiliates} affiliates")
            new, _ = merge_update(
                old, affiliate_id, data, endpoints, self._clock() + ttl, self.limits.max_endpoints
            )
            try:
                ops = await self._update_ops(base, old, new, seqs)
                res = await self.client.txn([Compare.mod_revision_is(base + b"a", a_mod)], ops)
            except EtcdError as e:
                if "lease not found" in str(e):
                    self._forget_leases()
                    continue
                raise Unavailable(f"etcd: {e}") from e
            if res.succeeded:
                await self._caught_up(res.revision)
                return
            await self._await_change(cluster_id, affiliate_id, a_mod)
        raise Unavailable(f"affiliate {affiliate_id!r}: too many concurrent updates, try again")

    async def _update_ops(
        self, base: bytes, old: AffiliateRecord | None, new: AffiliateRecord, seqs: dict[str, int]
    ) -> list[Op]:
        """Puts for the `a` key and for every endpoint that is new or got a later expiration."""
        ops = [Op.put(base + b"a", self._a_value(new), await self._lease_for(new.expiration))]
        have = {e.blob: e for e in (old.endpoints if old else [])}
        seq = max(seqs.values(), default=-1) + 1
        wanted: set[str] = set()
        for ep in new.endpoints:
            suffix = endpoint_key_suffix(ep.blob)
            wanted.add(suffix)
            prev = have.get(ep.blob)
            if prev is not None and prev.expiration == ep.expiration:
                continue  # untouched
            if prev is not None:
                s = seqs[suffix]
            else:
                s, seq = seq, seq + 1
            value = json.dumps({"b": _b64(ep.blob), "x": ep.expiration, "s": s}).encode()
            ops.append(Op.put(base + b"e/" + suffix.encode(), value, await self._lease_for(ep.expiration)))
        if old is None:  # orphans of an earlier incarnation must not reappear in the new one
            ops += [Op.delete(base + b"e/" + s.encode()) for s in seqs if s not in wanted]
        return ops

    async def _await_change(self, cid: str, aid: str, a_mod: int) -> None:
        """After a lost compare: wait until the winning write reached our cache."""
        deadline = asyncio.get_running_loop().time() + self.client.timeout
        while True:
            entry = self._clusters.get(cid, {}).get(aid)
            if (entry.a_mod if entry else 0) != a_mod:
                return
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise Unavailable("etcd: cache did not catch up with a concurrent update")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._advanced.wait(), left)

    @staticmethod
    def _a_value(r: AffiliateRecord) -> bytes:
        return json.dumps({"d": _b64(r.data), "x": r.expiration}).encode()

    async def delete(self, cluster_id: str, affiliate_id: str) -> None:
        self._cluster_entries(cluster_id)
        base = self._aff_prefix(cluster_id, affiliate_id)
        try:
            res = await self.client.txn(
                [Compare(base + b"a", "create", ">", 0)], [Op.delete(base, prefix=True)]
            )
        except EtcdError as e:
            raise Unavailable(f"etcd: {e}") from e
        if res.succeeded:
            await self._caught_up(res.revision)

    async def list_affiliates(self, cluster_id: str) -> list[AffiliateView]:
        entries = self._cluster_entries(cluster_id)
        return [v for aid, e in entries.items() if (v := e.view(aid)) is not None]

    def watch(self, cluster_id: str) -> tuple[list[AffiliateView], Subscription]:
        entries = self._cluster_entries(cluster_id)
        sub = self._hub.subscribe(cluster_id, self.limits.watch_buffer)
        return [v for aid, e in entries.items() if (v := e.view(aid)) is not None], sub

    async def gc(self) -> None:
        now = self._clock()
        for cid, entries in list(self._clusters.items()):
            for aid, entry in list(entries.items()):
                base = self._aff_prefix(cid, aid)
                rec = entry.record(aid)
                guard = [Compare.mod_revision_is(base + b"a", entry.a_mod)]
                if rec is None:  # orphan endpoint keys (their affiliate expired first)
                    ops = [Op.delete(base + b"e/" + s.encode()) for s in entry.endpoints]
                else:
                    new, changed = expire(rec, now)
                    if not changed:
                        continue
                    if new is None:
                        ops = [Op.delete(base, prefix=True)]
                    else:
                        kept = {endpoint_key_suffix(e.blob) for e in new.endpoints}
                        ops = [Op.delete(base + b"e/" + s.encode()) for s in entry.endpoints if s not in kept]
                if not ops:
                    continue
                try:
                    await self.client.txn(guard, ops)  # a lost guard: someone refreshed it meanwhile
                except (EtcdError, EtcdUnavailable) as e:
                    log.warning("etcd store gc: %s", e)
                    return
            self._maybe_drop(cid)

    def stats(self) -> StoreStats:
        live = [e for entries in self._clusters.values() for e in entries.values() if e.a_mod]
        return StoreStats(
            clusters=len(self._clusters),
            affiliates=len(live),
            endpoints=sum(len(e.endpoints) for e in live),
            subscriptions=self._hub.count(),
        )
