"""Shared machinery for resource spec models.

Every spec model derives from :class:`Spec`:

* Python fields are snake_case; the documented YAML/JSON keys are their aliases
  (camelCase, generated, or given explicitly where the reference spells them
  differently: ``pciID``, ``DUID``, ``allowedIPs`` ...). Input accepts either.
* Unknown keys are errors.
* ``omitempty`` (netd.md conventions, ``(oe)``) is one mechanism: a model lists
  the fields in ``OMITEMPTY`` (dropped on dump when zero, Go's yaml ``isZero``:
  ``None``, ``""``, ``0``, ``False``, empty list/dict, a nested model whose
  fields are all zero) and in ``OMITNONE`` (Go pointers: dropped only when
  ``None``). All other keys are always emitted, in field order.

Scalar value types that need Go-compatible text live here too: IP addresses
and prefixes (``netd.netip``; empty = ``None`` = ``""``), Go durations, RFC 3339
UTC timestamps.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, PlainSerializer, PlainValidator, model_serializer
from pydantic.alias_generators import to_camel
from pydantic_core.core_schema import SerializationInfo, SerializerFunctionWrapHandler

from netd.netip import Addr, Prefix, format_addr, format_prefix, parse_addr, parse_prefix


def is_zero(value: Any) -> bool:
    """Go's yaml.v3 ``isZero`` for the values our models hold."""
    if value is None:
        return True
    if isinstance(value, BaseModel):
        return all(is_zero(getattr(value, name)) for name in type(value).model_fields)
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return False  # a valid netip.Addr is never zero, not even 0.0.0.0
    if isinstance(value, ipaddress.IPv4Interface | ipaddress.IPv6Interface):
        return False
    if isinstance(value, dt.datetime):
        return False
    return not value


class Spec(BaseModel):
    """Base of every resource spec (and nested spec struct)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_assignment=True,
    )

    # Python field names dropped on dump when zero / when None.
    OMITEMPTY: ClassVar[frozenset[str]] = frozenset()
    OMITNONE: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _omit(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        data = handler(self)
        cls = type(self)
        if not (cls.OMITEMPTY or cls.OMITNONE) or not isinstance(data, dict):
            return data
        fields = cls.model_fields
        for name in cls.OMITEMPTY | cls.OMITNONE:
            value = getattr(self, name)
            drop = value is None if name in cls.OMITNONE else is_zero(value)
            if drop:
                alias = fields[name].alias if info.by_alias else None
                data.pop(alias or name, None)
        return data

    def is_zero(self) -> bool:
        return is_zero(self)


# ---- IP addresses and prefixes ---------------------------------------------------------


def _v_addr_opt(value: Any) -> Addr | None:
    if value is None or value == "":
        return None
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    return parse_addr(value)


def _v_addr(value: Any) -> Addr:
    out = _v_addr_opt(value)
    if out is None:
        raise ValueError("empty IP address")
    return out


def _s_addr(value: Addr | None) -> str:
    return "" if value is None else format_addr(value)


def _v_prefix_opt(value: Any) -> Prefix | None:
    if value is None or value == "":
        return None
    if isinstance(value, ipaddress.IPv4Interface | ipaddress.IPv6Interface):
        return value
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return ipaddress.ip_interface((value.network_address, value.prefixlen))
    return parse_prefix(value)


def _v_prefix(value: Any) -> Prefix:
    out = _v_prefix_opt(value)
    if out is None:
        raise ValueError("empty IP prefix")
    return out


def _s_prefix(value: Prefix | None) -> str:
    return "" if value is None else format_prefix(value)


#: An IP address; ``None`` is Go's zero ``netip.Addr`` and renders as ``""``.
OptAddr = Annotated[Addr | None, PlainValidator(_v_addr_opt), PlainSerializer(_s_addr, when_used="json")]
#: An IP address that must be present (list elements).
IPAddr = Annotated[Addr, PlainValidator(_v_addr), PlainSerializer(_s_addr, when_used="json")]
#: A prefix keeping its host bits (``172.20.0.2/24``); ``None`` renders as ``""``.
OptPrefix = Annotated[
    Prefix | None, PlainValidator(_v_prefix_opt), PlainSerializer(_s_prefix, when_used="json")
]
IPPrefix = Annotated[Prefix, PlainValidator(_v_prefix), PlainSerializer(_s_prefix, when_used="json")]


# ---- Go durations ----------------------------------------------------------------------

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DUR_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> dt.timedelta:
    """``time.ParseDuration``: ``"1m30s"``, ``"1.5h"``, ``"-2s"``, ``"0"``."""
    s = text
    if not s:
        raise ValueError('time: invalid duration ""')
    neg = s[0] == "-"
    if s[0] in "+-":
        s = s[1:]
    if s == "0":
        return dt.timedelta(0)
    if not s:
        raise ValueError(f"time: invalid duration {text!r}")
    total_ns = 0
    pos = 0
    while pos < len(s):
        m = _DUR_PART.match(s, pos)
        if not m or m.group(1) in ("", "."):
            raise ValueError(f"time: invalid duration {text!r}")
        num = m.group(1)
        whole, _, frac = num.partition(".")
        unit = _UNITS_NS[m.group(2)]
        total_ns += int(whole or "0") * unit
        if frac:
            total_ns += int(frac) * unit // 10 ** len(frac)
        pos = m.end()
    us = total_ns // 1000
    return dt.timedelta(microseconds=-us if neg else us)


def _fmt_frac(v: int, prec: int) -> str:
    """``v`` as a decimal with ``prec`` fractional digits, trailing zeros trimmed."""
    whole, frac = divmod(v, 10**prec)
    fs = f"{frac:0{prec}d}".rstrip("0")
    return f"{whole}.{fs}" if fs else str(whole)


def format_go_duration(value: dt.timedelta) -> str:
    """``time.Duration.String``: ``"0s"``, ``"25s"``, ``"1m30s"``, ``"1h0m0s"``, ``"500ms"``."""
    ns = (value.days * 86_400 + value.seconds) * 1_000_000_000 + value.microseconds * 1000
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        if ns < 1_000:
            return f"{sign}{ns}ns"
        if ns < 1_000_000:
            return f"{sign}{_fmt_frac(ns, 3)}µs"
        return f"{sign}{_fmt_frac(ns, 6)}ms"
    hours, rem = divmod(ns, 3_600_000_000_000)
    minutes, rem = divmod(rem, 60_000_000_000)
    secs = _fmt_frac(rem, 9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}"
    if minutes:
        return f"{sign}{minutes}m{secs}"
    return f"{sign}{secs}"


def _v_duration(value: Any) -> dt.timedelta:
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration is not a boolean")
    if isinstance(value, int):
        return dt.timedelta(microseconds=value // 1000)  # Go's integer form: nanoseconds
    if isinstance(value, str):
        return parse_go_duration(value)
    raise ValueError(f"not a duration: {value!r}")


#: A Go ``time.Duration``, rendered like ``"1m30s"`` (microsecond precision here).
Duration = Annotated[
    dt.timedelta, PlainValidator(_v_duration), PlainSerializer(format_go_duration, when_used="json")
]


# ---- timestamps ------------------------------------------------------------------------


def _v_time_opt(value: Any) -> dt.datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("z", "Z"))
    if not isinstance(value, dt.datetime):
        raise ValueError(f"not a timestamp: {value!r}")
    if value.tzinfo is None:
        raise ValueError("timestamp needs a time zone (RFC 3339)")
    return value.astimezone(dt.UTC).replace(microsecond=0)


def format_rfc3339(value: dt.datetime | None) -> str:
    if value is None:
        return ""
    v = value.astimezone(dt.UTC)
    return f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}Z"


#: RFC 3339 UTC to the second; ``None`` = absent.
OptTime = Annotated[
    dt.datetime | None, PlainValidator(_v_time_opt), PlainSerializer(format_rfc3339, when_used="json")
]
