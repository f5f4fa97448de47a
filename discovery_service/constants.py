"""Protocol limits and default timings of the discovery service, each with its source.

Every value is the default of an ordinary command-line flag (cli.py): tests shorten the
intervals through flags or constructor parameters, never by patching this module.
"""

from __future__ import annotations

# kubespan.md §4.8 validation table / §8 "server limits".
MAX_ID_LENGTH = 256  # cluster_id and affiliate_id, bytes (UTF-8), minimum 1
MAX_AFFILIATE_DATA = 2048  # encrypted affiliate blob, bytes
MAX_ENDPOINT_BLOB = 32  # one encrypted endpoint, bytes
MAX_TTL = 30 * 60.0  # seconds; no minimum (missing ttl = 0 = expires at the next GC)
MAX_AFFILIATES_PER_CLUSTER = 1024  # §4.8 AffiliateUpdate: the 1025th is RESOURCE_EXHAUSTED
MAX_ENDPOINTS_PER_AFFILIATE = 64  # §4.8 endpoint merge: the 65th distinct blob is RESOURCE_EXHAUSTED

# §4.8 Watch / §8 "watch buffer per subscriber".
WATCH_BUFFER = 32  # notifications queued per subscriber before the stream ends ABORTED "lost update"

# §4.8 Garbage collection / §8 "server GC interval".
GC_INTERVAL = 60.0  # seconds

# §4.8 Rate limiting, HEAD values (v0.1.x/v1.0.x used 5 req/s burst 30).
RATE_LIMIT_PER_SECOND = 15.0
RATE_LIMIT_BURST = 60
LIMITER_GC_INTERVAL = 60.0  # idle per-IP limiters are dropped this often (§4.8)

# §4.8 "Other reference defaults": HEAD snapshots the state every 10 min and on shutdown.
SNAPSHOT_INTERVAL = 10 * 60.0

# §4.1 / §8: the server enforces at least 10 s between client keepalive pings.
KEEPALIVE_MIN_TIME = 10.0

# §4.8 "Other reference defaults": gRPC listen :3000, metrics :2122.
DEFAULT_LISTEN = "0.0.0.0:3000"

# §4.6: the server keeps client_version as vX.Y for metrics, anything else is "unknown".
UNKNOWN_CLIENT_VERSION = "unknown"

# Replicated store (beyond the reference): key prefix in etcd and lease granularity, see etcd_store.py.
ETCD_PREFIX = "/discovery/"
ETCD_LEASE_BUCKET = 5.0  # seconds: expirations rounded up to this share one etcd lease

# How long a graceful stop waits for in-flight RPCs before cancelling them (Watch streams never end
# on their own).
SHUTDOWN_GRACE = 2.0
