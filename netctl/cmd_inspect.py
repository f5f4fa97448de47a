"""``netctl inspect dependencies``: the controller ↔ resource graph of machined, as graphviz."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from netctl.client import add_endpoint_arguments

    parser.add_argument("what", choices=("dependencies",), help="what to inspect")
    add_endpoint_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from machined.api import machined_pb2 as pb
    from netctl.client import Client, ClientError, fail

    try:
        with Client.from_args(args) as client:
            resp = client.call("Dependencies", pb.DependenciesRequest())
    except ClientError as e:
        return fail(e)
    sys.stdout.write(resp.dot)
    return 0
