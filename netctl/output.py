"""Resource output in the shapes of netd.md §1.7 and interface.md: table, yaml, json.

table: ``NODE NAMESPACE TYPE ID VERSION`` + the type's print columns, aligned
like Go's tabwriter with 3 spaces of padding; yaml: one document per resource
(``node``, ``metadata``, ``spec``, 4-space indentation, ``---`` between); json:
one object per line.

The renderers work on plain documents (``{node, event?, metadata, spec}``
dicts), so ``netctl get`` prints what the API sent without importing pydantic
or the resource models; ``document``/``table_rows`` adapt in-process
``cosi`` resources (``netctl plan``). Imports are lazy for a fast start.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ruamel.yaml import YAML
    from ruamel.yaml.representer import SafeRepresenter

    from cosi.definition import ResourceDefinition
    from cosi.resource import Resource

PADDING = 3
WATCH_MARKS = {"created": "+", "destroyed": "-", "updated": ""}


class _Timestamp(str):
    """An RFC 3339 time printed plain, as the reference prints metadata times."""


def _represent_timestamp(rep: SafeRepresenter, value: _Timestamp) -> Any:
    return rep.represent_scalar("tag:yaml.org,2002:timestamp", str(value))


def _yaml() -> YAML:
    from ruamel.yaml import YAML

    y = YAML(typ="safe", pure=True)
    y.default_flow_style = False
    y.indent(mapping=4, sequence=6, offset=4)
    y.width = 4096
    y.representer.sort_base_mapping_type_on_output = False  # keep the documented key order
    y.representer.add_representer(_Timestamp, _represent_timestamp)
    return y


def document(node: str, res: Resource, event: str | None = None) -> dict[str, Any]:
    from cosi.resource import metadata_dict, spec_dict

    return make_document(node, metadata_dict(res.md), spec_dict(res.spec), event)


def make_document(
    node: str, metadata: dict[str, Any], spec: Any, event: str | None = None
) -> dict[str, Any]:
    """The output document: ``node``, then ``event`` in watch mode, ``metadata``, ``spec``."""
    out: dict[str, Any] = {"node": node}
    if event is not None:
        out["event"] = event
    out["metadata"] = metadata
    out["spec"] = spec
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


# ``json.dumps(x, separators=(",", ":"))`` builds a new encoder per call; the same
# encoder made once gives the same bytes at a fraction of the cost per document.
_encode = json.JSONEncoder(separators=(",", ":")).encode


def render_json(docs: Sequence[dict[str, Any]]) -> str:
    return "".join(_encode(d) + "\n" for d in docs)


def render_json_lines(node: str, resources: Iterable[str], event: str | None = None) -> str:
    """:func:`render_json` of ``make_document(node, md, spec, event)`` per resource,
    with each resource's ``"metadata":...,"spec":...`` already encoded
    (``netctl.client.resource_json``): the same bytes, no dict per resource."""
    head = '{"node":' + _encode(node)
    if event is not None:
        head += ',"event":' + _encode(event)
    head += ","
    return "".join(f"{head}{r}}}\n" for r in resources)


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
    docs = [document(node, res) for node, res in items]
    return document_rows(definition.display_type, definition.print_columns, docs, marks)


def table_header(print_columns: Sequence[tuple[str, str]], watch: bool = False) -> list[str]:
    header = ["NODE", "NAMESPACE", "TYPE", "ID", "VERSION"] + [n.upper() for n, _ in print_columns]
    return ["*", *header] if watch else header


def document_row(
    display_type: str, print_columns: Sequence[tuple[str, str]], doc: dict[str, Any], mark: str | None = None
) -> list[str]:
    """One table row of an output document; ``mark`` fills the watch ``*`` column."""
    md = doc["metadata"]
    row = [doc["node"], md["namespace"], display_type, md["id"], str(md["version"])]
    row += [cell(json_path(doc["spec"], p)) for _, p in print_columns]
    return row if mark is None else [mark, *row]


def document_rows(
    display_type: str,
    print_columns: Sequence[tuple[str, str]],
    docs: Sequence[dict[str, Any]],
    marks: Sequence[str] | None = None,
) -> list[list[str]]:
    """Header + one row per document; ``marks`` adds the watch ``*`` column first."""
    rows = [table_header(print_columns, watch=marks is not None)]
    for i, doc in enumerate(docs):
        rows.append(document_row(display_type, print_columns, doc, None if marks is None else marks[i]))
    return rows
