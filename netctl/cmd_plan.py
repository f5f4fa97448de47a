"""``netctl plan``: run the config and merge controllers in-process and print their specs.

Touches nothing and needs neither a daemon nor root: the links and addresses
of the current network namespace are read (netlink dumps only) as the
controllers' view of the kernel.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="machine config (multi-document YAML)")
    parser.add_argument("--cmdline", default="", metavar="STRING", help="kernel command line to parse")
    parser.add_argument("--platform-config", metavar="FILE", help="platform (META) network config")
    parser.add_argument("-n", "--namespace", default="network", help="network (merged) or network-config")
    parser.add_argument("-o", "--output", default="table", choices=("table", "yaml", "json"))


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from netd.config import ConfigError, load_config_file
    from netd.config.loader import LoadedConfig

    loaded = LoadedConfig()
    if args.config:
        try:
            loaded = load_config_file(args.config)
        except ConfigError as exc:
            for line in exc.lines():
                print(line, file=sys.stderr)
            return 1
        for warning in loaded.warnings:
            print(warning, file=sys.stderr)
    logging.basicConfig(level=logging.ERROR, format="%(message)s", stream=sys.stderr)
    from netd.plan import PlanError, plan

    try:
        result = asyncio.run(plan(loaded, args.cmdline, args.platform_config, args.namespace))
    except PlanError as exc:
        print(f"netctl: {exc}", file=sys.stderr)
        return 1
    for problem in result.problems:
        print(problem, file=sys.stderr)
    from netctl.output import document, render_json, render_yaml, table_rows, tabulate

    if args.output == "table":
        blocks = [tabulate(table_rows(d, [("", r) for r in items])) for d, items in result.groups]
        sys.stdout.write("\n".join(blocks))
    else:
        docs = [document("", r) for _, items in result.groups for r in items]
        sys.stdout.write(render_yaml(docs) if args.output == "yaml" else render_json(docs))
    return 0
