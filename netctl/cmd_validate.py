"""``netctl validate --config F``: load and validate a machine config offline."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", required=True, metavar="FILE", help="machine config (multi-document YAML)"
    )


def run(args: argparse.Namespace) -> int:
    from netd.config import ConfigError, load_config_file

    try:
        loaded = load_config_file(args.config)
    except ConfigError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return 1
    for warning in loaded.warnings:
        print(warning, file=sys.stderr)
    print("valid")
    return 0
