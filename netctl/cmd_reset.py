"""``netctl reset``: tear down the network config this node applied, then stop machined.

KubeSpan and the discovery affiliate (leaving the cluster) are later parts.
"""

from __future__ import annotations

import argparse
import sys

RESET_TIMEOUT = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from netctl.client import add_endpoint_arguments

    add_endpoint_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from machined.api import machined_pb2 as pb
    from netctl.client import Client, ClientError, fail

    try:
        with Client.from_args(args) as client:
            resp = client.call("Reset", pb.ResetRequest(), timeout=RESET_TIMEOUT)
    except ClientError as e:
        return fail(e)
    if resp.remaining:
        print(f"netctl: reset incomplete, still held: {', '.join(resp.remaining)}", file=sys.stderr)
        return 1
    print("reset")
    return 0
