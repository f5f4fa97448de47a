"""Scalar field types shared by the config models (YAML values as Go's decoder reads them)."""

from __future__ import annotations

from typing import Annotated, Any, NamedTuple

from pydantic import BeforeValidator

from .yaml import YamlFloat, YamlInt

#: YAML 1.1 spellings accepted for boolean fields (and only there), as Go's yaml.v3 does
#: when it decodes into a typed bool (quoted or not). A quoted "true" stays a string.
_TRUE = frozenset({"y", "Y", "yes", "Yes", "YES", "on", "On", "ON"})
_FALSE = frozenset({"n", "N", "no", "No", "NO", "off", "Off", "OFF"})


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
    raise ValueError("must be a boolean (true/false, yes/no, on/off)")


def to_str(value: Any) -> str:
    """Any scalar into a string field, as its YAML text (Go's yaml.v3 does the same)."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, YamlInt | YamlFloat):
        return value.text
    if isinstance(value, int | float):
        return str(value)
    raise ValueError("must be a string")


def _int_range(lo: int, hi: int) -> Any:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be an integer")
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return int(value)

    return check


YBool = Annotated[bool, BeforeValidator(to_bool)]
YStr = Annotated[str, BeforeValidator(to_str)]
UInt8 = Annotated[int, BeforeValidator(_int_range(0, 0xFF))]
UInt16 = Annotated[int, BeforeValidator(_int_range(0, 0xFFFF))]
UInt32 = Annotated[int, BeforeValidator(_int_range(0, 0xFFFF_FFFF))]
Int64 = Annotated[int, BeforeValidator(_int_range(-(2**63), 2**63 - 1))]
StrList = list[YStr]


class PortRange(NamedTuple):
    """An inclusive port range (a single port has lo == hi)."""

    lo: int
    hi: int

    def __str__(self) -> str:
        return str(self.lo) if self.lo == self.hi else f"{self.lo}-{self.hi}"


def _uint16_text(text: str) -> int | None:
    if not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= 0xFFFF else None


def to_port_range(value: Any) -> PortRange:
    """A YAML integer (one port) or a string ``"<lo>-<hi>"``; a quoted ``"80"`` is rejected."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= 0xFFFF:
            return PortRange(int(value), int(value))
        raise ValueError(f'invalid port range: "{to_str(value)}"')
    if isinstance(value, str):
        lo_text, sep, hi_text = value.partition("-")
        lo, hi = _uint16_text(lo_text), _uint16_text(hi_text)
        if sep and lo is not None and hi is not None:
            return PortRange(lo, hi)
        raise ValueError(f'invalid port range: "{value}"')
    raise ValueError('invalid port range: must be a port number or a string "<lo>-<hi>"')


Port = Annotated[PortRange, BeforeValidator(to_port_range)]
