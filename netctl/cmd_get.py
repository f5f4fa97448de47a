"""``netctl get TYPE [ID] [-n NS] [-o table|yaml|json] [-w]``: read resources from machined.

Shapes (interface.md, netd.md §1.7): table ``NODE NAMESPACE TYPE ID VERSION``
+ print columns; yaml one document per resource with ``---`` between; json one
object per line. With ``--watch`` the current resources come first as created
events, then one entry per change: table adds a first ``*`` column (``+``
created, ``-`` destroyed, blank updated), yaml and json add ``event``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from netctl.client import add_endpoint_arguments

    parser.add_argument("type", metavar="TYPE", help="resource type or alias (case-insensitive)")
    parser.add_argument("id", metavar="ID", nargs="?", help="one resource")
    parser.add_argument("-n", "--namespace", default="", help="namespace (default: the type's)")
    parser.add_argument("-o", "--output", default="table", choices=("table", "yaml", "json"))
    parser.add_argument("-w", "--watch", action="store_true", help="print changes as they happen")
    add_endpoint_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from netctl.client import Client, ClientError, fail

    try:
        with Client.from_args(args) as client:
            if args.watch:
                return _watch(client, args)
            return _get(client, args)
    except ClientError as e:
        return fail(e)


def _get(client: Any, args: argparse.Namespace) -> int:
    from netctl.output import document_rows, make_document, render_json_lines, render_yaml, tabulate

    if args.output == "json":
        # Encoded straight from the messages, the specs pasted as the server sent them.
        from netctl.client import resource_json

        if args.id is not None:
            node, _, r = client.get_pb(args.type, args.id, args.namespace)
            resources = [r]
        else:
            node, _, resources = client.list_pb(args.type, args.namespace)
        sys.stdout.write(render_json_lines(node, map(resource_json, resources)))
        return 0
    if args.id is not None:
        node, d, md, spec = client.get(args.type, args.id, args.namespace)
        items = [(md, spec)]
    else:
        node, d, items = client.list(args.type, args.namespace)
    docs = [make_document(node, md, spec) for md, spec in items]
    if args.output == "table":
        sys.stdout.write(tabulate(document_rows(d.display_type, d.print_columns, docs)))
    else:
        sys.stdout.write(render_yaml(docs))
    return 0


class _WatchTable:
    """Rows printed as they come; columns as wide as the widest cell so far (plus padding)."""

    def __init__(self, header: list[str]) -> None:
        self.widths = [0] * len(header)
        self.pending: list[list[str]] = [header]

    def add(self, row: list[str]) -> None:
        self.pending.append(row)

    def flush(self) -> None:
        from netctl.output import PADDING

        for row in self.pending:
            for i, c in enumerate(row[:-1]):
                self.widths[i] = max(self.widths[i], len(c) + PADDING)
        for row in self.pending:
            cells = [c.ljust(self.widths[i]) if i < len(row) - 1 else c for i, c in enumerate(row)]
            sys.stdout.write("".join(cells).rstrip() + "\n")
        self.pending = []
        sys.stdout.flush()


def _watch(client: Any, args: argparse.Namespace) -> int:
    from netctl.output import WATCH_MARKS, document_row, make_document, render_yaml, table_header

    if args.output == "json":
        return _watch_json(client, args)
    d, events = client.watch(args.type, args.id or "", args.namespace)
    table = _WatchTable(table_header(d.print_columns, watch=True)) if args.output == "table" else None
    first = True
    bootstrapped = False
    stream: Iterator[tuple[str, str, dict[str, Any] | None, Any]] = events
    for node, event, md, spec in stream:
        if event == "bootstrapped":
            bootstrapped = True
            if table is not None:
                table.flush()  # the initial list as one aligned block
            continue
        doc = make_document(node, md or {}, spec, event)
        if table is not None:
            table.add(document_row(d.display_type, d.print_columns, doc, WATCH_MARKS[event]))
            if bootstrapped:
                table.flush()
        else:
            out = render_yaml([doc])
            sys.stdout.write(out if first else "---\n" + out)
            sys.stdout.flush()
        first = False
    if table is not None:
        table.flush()
    return 0


def _watch_json(client: Any, args: argparse.Namespace) -> int:
    """``--watch -o json``: one line per event, encoded straight from the message."""
    from netctl.client import resource_json
    from netctl.output import render_json_lines

    _, events = client.watch_pb(args.type, args.id or "", args.namespace)
    for node, event, r in events:
        if r is None:
            continue  # bootstrapped: nothing to print in json
        sys.stdout.write(render_json_lines(node, [resource_json(r)], event))
        sys.stdout.flush()
    return 0
