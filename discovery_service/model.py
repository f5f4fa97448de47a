"""Affiliate records and the pure merge/expiry rules of kubespan.md §4.8.

Both stores (memory and etcd) run exactly these functions, so the semantics (data replacement,
byte-equal endpoint dedupe with max expiration, the 64-endpoint limit, what counts as a change,
which endpoints expire) live in one place and are tested without gRPC.

Times are wall-clock seconds (time.time()): expirations must survive a restart through the state
file and be comparable between replicas, which a monotonic clock is not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import LimitExceeded


@dataclass(frozen=True, slots=True)
class AffiliateView:
    """What clients see of an affiliate (§4.8 "full export"): blobs stay encrypted and opaque."""

    id: str
    data: bytes = b""
    endpoints: tuple[bytes, ...] = ()


@dataclass(slots=True)
class Notification:
    """One Watch delta: an updated affiliate, or `deleted` (only `view.id` meaningful).

    The same object goes to every subscriber of the cluster; `wire` caches its serialized
    `affiliates` entry (servicer.encode_notification) so fan-out to N watchers encodes it once,
    not N times.
    """

    view: AffiliateView
    deleted: bool = False
    wire: bytes | None = field(default=None, compare=False, repr=False)


@dataclass(slots=True)
class EndpointRecord:
    blob: bytes
    expiration: float


@dataclass(slots=True)
class AffiliateRecord:
    id: str
    data: bytes = b""
    expiration: float = 0.0
    endpoints: list[EndpointRecord] = field(default_factory=list)

    def view(self) -> AffiliateView:
        return AffiliateView(self.id, self.data, tuple(e.blob for e in self.endpoints))

    def copy(self) -> AffiliateRecord:
        eps = [EndpointRecord(e.blob, e.expiration) for e in self.endpoints]
        return AffiliateRecord(self.id, self.data, self.expiration, eps)


def merge_update(
    record: AffiliateRecord | None,
    affiliate_id: str,
    data: bytes | None,
    endpoints: list[bytes],
    expiration: float,
    max_endpoints: int,
) -> tuple[AffiliateRecord, bool]:
    """Apply one AffiliateUpdate to a copy of `record`; return (new record, whether watchers see a change).

    §4.8: non-empty data replaces the blob and *sets* the expiration; each endpoint blob either
    extends its byte-equal twin to max(old, exp) or is appended (refused past `max_endpoints`);
    finally the affiliate's expiration becomes max(its expiration, exp). Deviation (decided here):
    re-sending byte-identical data is not a change, so a periodic refresh does not wake every
    watcher; a new affiliate always is. The input record is never modified, so a refused update
    (LimitExceeded) leaves the stored state untouched.
    """
    created = record is None
    new = AffiliateRecord(affiliate_id) if record is None else record.copy()
    changed = created
    if data:
        if data != new.data:
            changed = True
        new.data = data
        new.expiration = expiration
    index = {e.blob: e for e in new.endpoints}
    for blob in endpoints:
        twin = index.get(blob)
        if twin is not None:
            twin.expiration = max(twin.expiration, expiration)
            continue
        if len(new.endpoints) >= max_endpoints:
            raise LimitExceeded(f"affiliate {affiliate_id!r} already has {max_endpoints} endpoints")
        ep = EndpointRecord(blob, expiration)
        new.endpoints.append(ep)
        index[blob] = ep
        changed = True
    new.expiration = max(new.expiration, expiration)
    return new, changed


def expire(record: AffiliateRecord, now: float) -> tuple[AffiliateRecord | None, bool]:
    """GC one affiliate (§4.8): None when it expired (`expiration < now`), else the record without
    endpoints whose expiration is ≤ now and whether any were dropped."""
    if record.expiration < now:
        return None, True
    kept = [e for e in record.endpoints if e.expiration > now]
    if len(kept) == len(record.endpoints):
        return record, False
    new = record.copy()
    new.endpoints = [EndpointRecord(e.blob, e.expiration) for e in kept]
    return new, True
