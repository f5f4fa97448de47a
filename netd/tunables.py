"""``NETD_TUNABLES``: protocol timers and limits shortened for tests and benches (decisions.md "Tunables").

Every timer keeps its spec value unless the environment variable
``NETD_TUNABLES`` names a YAML map overriding some of them. The keys are the
spec's constant names; :data:`TUNABLES` is the one table of every key this
daemon knows, with its default and the spec section it comes from, so a new
timer is added here and nowhere else.

The file is read once per process (values never change while the daemon
runs: a controller that read a timer at start and one that reads it later
must agree). An unknown key or a value of the wrong shape is a
:class:`TunablesError` naming the key; machined checks the file before it
starts anything (:func:`check`) and refuses to start on error, so a typo in
a test's tunables fails loudly instead of silently testing the defaults.

Durations are seconds, given as a number (``2``, ``0.5``) or a Go duration
string (``"500ms"``, ``"1m30s"``).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

ENV = "NETD_TUNABLES"

Kind = Literal["seconds", "count", "ratio", "text"]
Value = float | int | str | None


class TunablesError(ValueError):
    """The tunables file is unreadable, or a key/value in it is wrong (the message names it)."""


@dataclass(frozen=True)
class Tunable:
    name: str
    default: Value  # None: derived from other values (documented in ``source``)
    kind: Kind
    source: str  # spec section, and how a None default is derived


def _t(name: str, default: Value, kind: Kind, source: str) -> Tunable:
    return Tunable(name, default, kind, source)


#: Every known key (decisions.md: unknown keys are an error).
TUNABLES: dict[str, Tunable] = {
    t.name: t
    for t in (
        # ---- discovery client (kubespan.md §4.6, §8; discovery_client/constants.py) ----
        _t("DISCOVERY_TTL", 1800.0, "seconds", "kubespan.md §8 discovery TTL 30 min"),
        _t("DISCOVERY_REFRESH_INTERVAL", None, "seconds", "kubespan.md §4.6: None = DISCOVERY_TTL/2"),
        _t("DISCOVERY_HELLO_TIMEOUT", 10.0, "seconds", "kubespan.md §8 Hello timeout"),
        _t("DISCOVERY_REFRESH_TIMEOUT", 30.0, "seconds", "kubespan.md §8 whole refresh timeout"),
        _t("DISCOVERY_BACKOFF_INITIAL", 0.5, "seconds", "kubespan.md §4.6 reconnect backoff"),
        _t("DISCOVERY_BACKOFF_MULTIPLIER", 1.5, "ratio", "kubespan.md §4.6 reconnect backoff"),
        _t("DISCOVERY_BACKOFF_RANDOMIZATION", 0.5, "ratio", "kubespan.md §4.6 ±50 % jitter"),
        _t("DISCOVERY_BACKOFF_MAX_INTERVAL", 60.0, "seconds", "kubespan.md §4.6 interval cap"),
        _t("DISCOVERY_LEAVE_TIMEOUT", 5.0, "seconds", "kubespan.md §4.6 decision: AffiliateDelete on leave"),
        _t("DISCOVERY_KEEPALIVE", None, "seconds", "kubespan.md §4.1: None = max(10 s, TTL/10); 0 = off"),
        # ---- KubeSpan manager (kubespan.md §6.3, §8) ----
        _t("KUBESPAN_RECONCILE_INTERVAL", 30.0, "seconds", "kubespan.md §6.3 RECONCILE_INTERVAL"),
        _t("ENDPOINT_CONNECTION_TIMEOUT", 15.0, "seconds", "kubespan.md §6.3"),
        _t("PEER_DOWN_INTERVAL", 275.0, "seconds", "kubespan.md §6.3 (180 + 5 + 90)"),
        _t("KUBESPAN_KEEPALIVE", 25.0, "seconds", "kubespan.md §8 persistent keepalive"),
        _t("KUBESPAN_MAC_LINK", "", "text", "kubespan.md §11/§12: link whose MAC seeds the KubeSpan IP"),
        # ---- restarts (decisions.md "Restarts and objects that operators and KubeSpan own") ----
        _t("OPERATOR_RESTART_GRACE", 30.0, "seconds", "decisions.md restarts: grace before sweeping"),
        # ---- DHCP (operators.md §2.7, §3.5, §6) ----
        _t("DHCP_MIN_INTERVAL", 5.0, "seconds", "operators.md §2.7 interval floor"),
        _t("DHCP_DEFAULT_LEASE", 1800.0, "seconds", "operators.md §2.7 lease when option 51 is missing"),
        _t("DHCP_HOSTNAME_WINDOW", 1.0, "seconds", "operators.md §6 hostname merge window"),
        _t("DHCP6_LINK_LOCAL_WAIT", 30.0, "seconds", "operators.md §6 link-local wait"),
        # ---- VIP (operators.md §4.3, decisions.md) ----
        _t("VIP_LEASE_TTL", 60.0, "seconds", "operators.md §4.3 lease (session) TTL"),
        _t("VIP_CAMPAIGN_RETRY", 1.0, "seconds", "operators.md §4.3 retry after an error"),
        _t("VIP_RESIGN_TIMEOUT", 10.0, "seconds", "operators.md §4.3 resign timeout"),
        _t("VIP_DIAL_TIMEOUT", 5.0, "seconds", "operators.md §4 etcd dial timeout"),
        _t("VIP_STEPDOWN_MARGIN", 5.0, "seconds", "issue 15: holder gone before its lease may expire"),
        _t("VIP_GARP_COUNT", 3, "count", "operators.md §0 gratuitous ARP / unsolicited NA count"),
        _t("VIP_GARP_INTERVAL", 1.0, "seconds", "operators.md §0 gratuitous ARP spacing"),
        # ---- cloud API base URLs (decisions.md "Tunables"; operators.md §4.6) ----
        _t("EQUINIX_API_URL", "https://api.equinix.com/metal/v1/", "text", "operators.md §4.6"),
        _t("HCLOUD_API_URL", "https://api.hetzner.cloud/v1", "text", "operators.md §4.6"),
        _t("HCLOUD_METADATA_URL", "http://169.254.169.254/hetzner/v1/metadata", "text", "operators.md §4.6"),
    )
}


def _seconds(name: str, raw: Any) -> float:
    from netd.resources.base import parse_go_duration

    if isinstance(raw, bool):
        raise TunablesError(f"{ENV}: {name}: want seconds (a number or a duration like 500ms), got {raw!r}")
    if isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = parse_go_duration(raw.strip()) / dt.timedelta(seconds=1)
        except ValueError:
            raise TunablesError(
                f"{ENV}: {name}: {raw!r} is not a duration (e.g. 2, 0.5, 500ms, 1m)"
            ) from None
    else:
        raise TunablesError(f"{ENV}: {name}: want seconds, got {type(raw).__name__}")
    if not value >= 0 or value == float("inf"):
        raise TunablesError(f"{ENV}: {name}: must be a finite duration ≥ 0, got {raw!r}")
    return value


def parse_value(t: Tunable, raw: Any) -> Value:
    """One value checked against its key's kind; the error names the key."""
    if t.kind == "seconds":
        return _seconds(t.name, raw)
    if t.kind == "ratio":
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not raw >= 0:
            raise TunablesError(f"{ENV}: {t.name}: want a number ≥ 0, got {raw!r}")
        return float(raw)
    if t.kind == "count":
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
            raise TunablesError(f"{ENV}: {t.name}: want an integer ≥ 0, got {raw!r}")
        return raw
    if not isinstance(raw, str):
        raise TunablesError(f"{ENV}: {t.name}: want a string, got {raw!r}")
    return raw


def parse(data: Any) -> dict[str, Value]:
    """The overrides of a loaded YAML document (pure: no environment, no file)."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise TunablesError(f"{ENV}: want a map of NAME: value, got {type(data).__name__}")
    out: dict[str, Value] = {}
    for key, raw in data.items():
        t = TUNABLES.get(str(key))
        if t is None:
            import difflib

            close = difflib.get_close_matches(str(key), TUNABLES, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise TunablesError(f"{ENV}: unknown key {key!r}{hint}")
        out[t.name] = parse_value(t, raw)
    return out


def load_file(path: str) -> dict[str, Value]:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise TunablesError(f"{ENV}: cannot read {path}: {e.strerror or e}") from None
    try:
        data = YAML(typ="safe", pure=True).load(text)
    except YAMLError as e:
        raise TunablesError(f"{ENV}: {path}: not YAML: {e}") from None
    return parse(data)


@functools.cache
def _overrides_for(path: str) -> dict[str, Value]:
    return load_file(path) if path else {}


def overrides() -> dict[str, Value]:
    """The keys the tunables file sets (cached per process and path)."""
    return dict(_overrides_for(os.environ.get(ENV, "")))


def check() -> None:
    """Raise :class:`TunablesError` if ``NETD_TUNABLES`` names a bad file (machined start-up)."""
    _overrides_for(os.environ.get(ENV, ""))


def get(name: str) -> Value:
    """The value of one key: the override if set, else the spec default (KeyError: unknown key)."""
    t = TUNABLES[name]
    over = _overrides_for(os.environ.get(ENV, ""))
    return over.get(name, t.default)


def seconds(name: str) -> float:
    """A duration key that has a fixed default (not a derived ``None`` one)."""
    v = get(name)
    if not isinstance(v, float):
        raise TypeError(f"tunable {name} has no fixed value in seconds")
    return v


def set_values(name_prefix: str) -> dict[str, Value]:
    """Every key with the prefix whose value is not None (e.g. the ``DISCOVERY_`` timers for
    ``ClientTimers.from_tunables``, which must not see derived ``None`` defaults)."""
    return {n: v for n in TUNABLES if n.startswith(name_prefix) and (v := get(n)) is not None}


def reset_cache() -> None:
    """Forget the cached file (tests that change the environment)."""
    _overrides_for.cache_clear()
