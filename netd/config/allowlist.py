"""Unknown-key detection for the v1alpha1 document against the v1.6 key paths."""

from __future__ import annotations

import difflib
from typing import Any

from .errors import Path
from .v16_schema import TYPES

#: Types whose content is free-form (values and keys not interpreted).
OPEN_TYPES = frozenset({"Unstructured", "Env", "map[string]string"})


def unknown_keys(data: Any, type_name: str = "Config", path: Path = ()) -> list[tuple[Path, str]]:
    """Every key of ``data`` that the v1.6 schema does not define: ``[(path, message), ...]``.

    Values are not interpreted here: a value of the wrong shape is left to the models.
    """
    out: list[tuple[Path, str]] = []
    _walk(data, type_name, path, out)
    return out


def _walk(data: Any, type_name: str, path: Path, out: list[tuple[Path, str]]) -> None:
    if type_name in OPEN_TYPES:
        return
    if type_name.startswith("[]"):
        if isinstance(data, list):
            for i, item in enumerate(data):
                _walk(item, type_name[2:], (*path, i), out)
        return
    if type_name.startswith("map[string]"):
        if isinstance(data, dict):
            for key, value in data.items():
                _walk(value, type_name[len("map[string]") :], (*path, key), out)
        return
    fields = TYPES.get(type_name)
    if fields is None or not isinstance(data, dict):
        return
    for key, value in data.items():
        sub = fields.get(key)
        if sub is None:
            out.append(((*path, key), _unknown_message(key, fields)))
        else:
            _walk(value, sub, (*path, key), out)


def _unknown_message(key: str, fields: dict[str, str]) -> str:
    lowered = {name.lower(): name for name in fields}
    if key.lower() in lowered:
        return f'unknown key (did you mean "{lowered[key.lower()]}"?)'
    close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.75)
    if close:
        return f'unknown key (did you mean "{close[0]}"?)'
    return "unknown key"
