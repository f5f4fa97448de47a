"""Protocol constants of the discovery client, with the spec section each comes from.

Timer names are the keys the daemon accepts in ``NETD_TUNABLES`` (decisions.md
"Tunables"); everything else is wire format and must not change.
"""

from __future__ import annotations

# §4.1 — the public instance; the machine config default is "https://discovery.talos.dev/".
DEFAULT_ENDPOINT = "discovery.talos.dev:443"
DEFAULT_TLS_PORT = 443
DEFAULT_PLAINTEXT_PORT = 80

# §4.6 / §8 — client timers (seconds).
DISCOVERY_TTL = 30 * 60.0  # affiliate TTL sent with every update; refresh every TTL/2
DISCOVERY_HELLO_TIMEOUT = 10.0
DISCOVERY_REFRESH_TIMEOUT = 30.0  # the whole refresh (own update + every "other endpoints" update)
# §4.6 backoff (cenkalti/backoff v4 defaults), reset after each successful refresh.
DISCOVERY_BACKOFF_INITIAL = 0.5
DISCOVERY_BACKOFF_MULTIPLIER = 1.5
DISCOVERY_BACKOFF_RANDOMIZATION = 0.5  # wait drawn uniformly from [0.5*cur, 1.5*cur]
DISCOVERY_BACKOFF_MAX_INTERVAL = 60.0  # caps the current interval, not the jittered wait
# §4.6 product decision (interface.md): leaving sends AffiliateDelete directly, best effort;
# S10 requires the whole leave to finish within 10 s.
DISCOVERY_LEAVE_TIMEOUT = 5.0
# §4.1 (HEAD) — client keepalive max(10 s, TTL/10); the server rejects pings more often than 10 s.
DISCOVERY_KEEPALIVE_MIN = 10.0

# §8 server limits — enforced by discovery_service, used here to avoid publishing what it would reject.
MAX_ID_LENGTH = 256
MAX_AFFILIATE_DATA = 2048
MAX_ENDPOINT_BLOB = 32
MAX_ENDPOINTS_PER_AFFILIATE = 64
MAX_AFFILIATES_PER_CLUSTER = 1024
MAX_TTL = 30 * 60.0

# Largest full snapshot the limits above allow is about 1024 * (256 + 2048 + 64 * 34) ~ 4.6 MB,
# beyond gRPC's 4 MiB default; anything bigger than this is a hostile or broken server.
DISCOVERY_MAX_RECEIVE_MESSAGE = 8 * 1024 * 1024

# §4.5 cryptography.
AES_KEY_SIZES = (16, 24, 32)
AES_BLOCK_SIZE = 16
GCM_NONCE_SIZE = 12
GCM_TAG_SIZE = 16

# §4.4 binary IP lengths.
IPV4_LEN = 4
IPV6_LEN = 16

# §4.3 machine_type strings.
MACHINE_TYPES = ("unknown", "init", "controlplane", "worker")
