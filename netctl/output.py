"""Resource output in the shapes of netd.md §1.7 and interface.md: table, yaml, json.

table: ``NODE NAMESPACE TYPE ID VERSION`` + the type's print columns, aligned
like Go's tabwriter with 3 spaces of padding; yaml: one document per resource
(``node``, ``metadata``, ``spec``, 4-space indentation, ``---`` between); json:
one object per line.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.representer import SafeRepresenter

from cosi.definition import ResourceDefinition
from cosi.resource import Resource, metadata_dict, spec_dict

PADDING = 3


class _Timestamp(str):
    """An RFC 3339 time printed plain, as the reference prints metadata times."""


def _represent_timestamp(rep: SafeRepresenter, value: _Timestamp) -> Any:
    return rep.represent_scalar("tag:yaml.org,2002:timestamp", str(value))


def _yaml() -> YAML:
    y = YAML(typ="safe", pure=True)
    y.default_flow_style = False
    y.indent(mapping=4, sequence=6, offset=4)
    y.width = 4096
    y.representer.sort_base_mapping_type_on_output = False  # keep the documented key order
    y.representer.add_representer(_Timestamp, _represent_timestamp)
    return y


def document(node: str, res: Resource, event: str | None = None) -> dict[str, Any]:
    md = metadata_dict(res.md)
    out: dict[str, Any] = {"node": node}
    if event is not None:
        out["event"] = event
    out["metadata"] = md
    out["spec"] = spec_dict(res.spec)
    return out


def render_yaml(docs: Sequence[dict[str, Any]]) -> str:
    y = _yaml()
    parts = []
    for d in docs:
        d = dict(d)
        md = dict(d["metadata"])
        md["created"], md["updated"] = _Timestamp(md["created"]), _Timestamp(md["updated"])
        d["metadata"] = md
        buf = io.StringIO()
        y.dump(d, buf)
        parts.append(buf.getvalue())
    return "---\n".join(parts)


def render_json(docs: Sequence[dict[str, Any]]) -> str:
    return "".join(json.dumps(d, separators=(",", ":")) + "\n" for d in docs)


def json_path(data: Any, path: str) -> Any:
    """The value of a ``{.a.b}`` print-column path; None when missing."""
    cur = data
    for part in path.strip("{}").lstrip(".").split("."):
        if not part:
            continue
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return None
    return cur


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def tabulate(rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to the widest cell plus 3 spaces; the last column unpadded."""
    if not rows:
        return ""
    ncol = max(len(r) for r in rows)
    widths = [max((len(r[i]) for r in rows if i < len(r)), default=0) + PADDING for i in range(ncol - 1)]
    lines = []
    for r in rows:
        cells = [c.ljust(widths[i]) if i < ncol - 1 else c for i, c in enumerate(r)]
        lines.append("".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def table_rows(
    definition: ResourceDefinition,
    items: Sequence[tuple[str, Resource]],
    marks: Sequence[str] | None = None,
) -> list[list[str]]:
    """Header + one row per resource; ``marks`` adds the watch ``*`` column first."""
    header = ["NODE", "NAMESPACE", "TYPE", "ID", "VERSION"] + [n.upper() for n, _ in definition.print_columns]
    if marks is not None:
        header = ["*", *header]
    rows = [header]
    for i, (node, res) in enumerate(items):
        spec = spec_dict(res.spec)
        row = [node, res.md.namespace, definition.display_type, res.md.id, str(res.md.version)]
        row += [cell(json_path(spec, p)) for _, p in definition.print_columns]
        if marks is not None:
            row = [marks[i], *row]
        rows.append(row)
    return rows
