"""Desired WireguardSpec vs. the device: what to write (netd.md §5.1 step 5). Pure.

Equality (:func:`in_sync`): private key equal; listen port equal **or desired
0** (any port); fwmark equal; the same peers by public key, each with equal
preshared key (empty = zero key), keepalive and allowed IPs, and an equal
endpoint **unless the desired endpoint is empty** (then the roaming endpoint
the device learnt is kept).

Two deliberate deviations from a literal string comparison, both so that the
steady state writes nothing: allowed IPs are compared masked and as sets (the
kernel stores ``10.0.0.5/24`` as ``10.0.0.0/24`` and drops duplicates), and a
desired endpoint is compared in canonical IP form after DNS resolution (done
by the caller, :func:`netd.kernel.wireguard.backend.resolve_endpoints`).

The write (:func:`compute_diff`) carries only the difference: private key,
port, fwmark when they differ; vanished peers removed; new and changed peers
(re-)added with their whole configuration and ``replace_allowed_ips``. Peers
that did not change are not mentioned, so their sessions (handshake, counters)
are untouched.

One exception, for endpoint rotation (kubespan.md §6.3): a peer whose endpoint
changes while it has no live session (never a handshake, or none for longer
than WireGuard's REJECT_AFTER_TIME) is removed and re-added in the same write.
WireGuard sends at most one handshake initiation per REKEY_TIMEOUT (5 s) and
would otherwise keep the new endpoint waiting for the retry of the failed
one; a fresh peer initiates at once. Nothing is lost: there is no session.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from netd.kernel.wireguard.model import (
    DeviceConfig,
    PeerConfig,
    PeerInfo,
    WireguardDevice,
    canonical_allowed_ips,
    key_from_b64,
    normalize_endpoint,
)
from netd.resources.link import WireguardPeer, WireguardSpec


def _keepalive(p: WireguardPeer) -> int:
    return int(p.persistent_keepalive_interval.total_seconds())


def peer_in_sync(want: WireguardPeer, have: PeerInfo, applied_endpoint: str | None = None) -> bool:
    """Whether the device's peer ``have`` satisfies ``want`` (same public key assumed).

    ``applied_endpoint`` is the endpoint this process last wrote for the peer: when the
    desired one is still that, a different device endpoint is WireGuard's roaming (the peer
    talked to us from elsewhere, e.g. through NAT) and is kept, as wg-quick and
    systemd-networkd do: an endpoint is configured when it changes, not enforced.
    """
    if key_from_b64(want.preshared_key) != have.preshared_key:
        return False
    if _keepalive(want) != have.persistent_keepalive:
        return False
    if canonical_allowed_ips(want.allowed_ips) != canonical_allowed_ips(have.allowed_ips):
        return False
    if not want.endpoint:
        return True
    wanted = normalize_endpoint(want.endpoint)
    return wanted in (normalize_endpoint(have.endpoint), applied_endpoint)


def peer_config(want: WireguardPeer) -> PeerConfig:
    """The full (re-)add of one peer: endpoint only if given, preshared key and keepalive
    always (zero clears a previous value), allowed IPs replacing the old ones."""
    return PeerConfig(
        public_key=key_from_b64(want.public_key),
        preshared_key=key_from_b64(want.preshared_key),
        endpoint=normalize_endpoint(want.endpoint) or None,
        persistent_keepalive=_keepalive(want),
        replace_allowed_ips=True,
        allowed_ips=canonical_allowed_ips(want.allowed_ips),
    )


#: WireGuard's REJECT_AFTER_TIME: a session whose last handshake is older is dead.
REJECT_AFTER_TIME = 180.0


def session_dead(have: PeerInfo, now: float) -> bool:
    return not have.last_handshake or now - have.last_handshake > REJECT_AFTER_TIME


def compute_diff(
    desired: WireguardSpec,
    device: WireguardDevice,
    now: float | None = None,
    applied_endpoints: Mapping[bytes, str] | None = None,
) -> DeviceConfig:
    """The write that brings ``device`` to ``desired``; empty (``is_empty()``) when in sync.

    Desired endpoints must be IP literals (resolve hostnames first). Desired peers with a
    repeated public key count once (the first wins, as in the merge controller).
    """
    cfg = DeviceConfig()
    priv = key_from_b64(desired.private_key)
    if priv != device.private_key:
        cfg.private_key = priv
    if desired.listen_port != 0 and desired.listen_port != device.listen_port:
        cfg.listen_port = desired.listen_port
    if desired.firewall_mark != device.fwmark:
        cfg.fwmark = desired.firewall_mark
    have = {p.public_key: p for p in device.peers}
    want: dict[bytes, WireguardPeer] = {}
    for p in desired.peers:
        want.setdefault(key_from_b64(p.public_key), p)
    for key in sorted(have.keys() - want.keys()):
        cfg.peers.append(PeerConfig(public_key=key, remove=True))
    t = time.time() if now is None else now
    for key, p in sorted(want.items()):
        old = have.get(key)
        applied = applied_endpoints.get(key) if applied_endpoints else None
        if old is None or not peer_in_sync(p, old, applied):
            new = peer_config(p)
            if old is not None and new.endpoint and new.endpoint != old.endpoint and session_dead(old, t):
                cfg.peers.append(PeerConfig(public_key=key, remove=True))
            cfg.peers.append(new)
    return cfg


def in_sync(desired: WireguardSpec, device: WireguardDevice) -> bool:
    """netd.md §5.1 step 5 equality (with the normalisations in the module doc)."""
    return compute_diff(desired, device).is_empty()
