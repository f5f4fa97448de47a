"""``netctl version``: the client's version, then the server's (``--client``: the client only)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from netctl.client import add_endpoint_arguments

    parser.add_argument("--client", action="store_true", help="print the client version only")
    add_endpoint_arguments(parser)


def client_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("talos-netd")
    except PackageNotFoundError:
        return "unknown"


def run(args: argparse.Namespace) -> int:
    print("Client:")
    print(f"\tVersion: {client_version()}")
    print(f"\tPython: {sys.version.split()[0]}")
    if args.client:
        return 0
    sys.stdout.flush()
    from machined.api import machined_pb2 as pb
    from netctl.client import Client, ClientError, fail

    try:
        with Client.from_args(args) as client:
            resp = client.call("Version", pb.VersionRequest())
    except ClientError as e:
        return fail(e)
    print("Server:")
    print(f"\tNODE: {resp.node}")
    print(f"\tVersion: {resp.version}")
    print(f"\tPython: {resp.python}")
    return 0
