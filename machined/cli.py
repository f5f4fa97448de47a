"""The ``machined`` command line (interface.md)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

LOG_LEVELS = ("debug", "info", "warning", "error")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="machined", description="Run one node in the current network namespace.")
    p.add_argument("--config", metavar="PATH", help="machine config (multi-document YAML)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--cmdline", metavar="STRING", help="kernel command line to parse")
    src.add_argument(
        "--cmdline-file", metavar="PATH", help="read the command line from a file (/proc/cmdline)"
    )
    p.add_argument("--platform-config", metavar="PATH", help="META-format network YAML (platform layer)")
    p.add_argument("--state-dir", default="/var/lib/machined", metavar="DIR")
    p.add_argument("--etc-dir", default="/etc", metavar="DIR")
    p.add_argument("--api", default="/run/machined/machined.sock", metavar="PATH")
    p.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    p.add_argument(
        "--leave", action="store_true", help="on SIGTERM, leave the cluster as `netctl reset` does"
    )
    p.add_argument("--allow-host-network", action="store_true", help="allow the machine's initial netns")
    p.add_argument("--listen-tcp", metavar="ADDR:PORT", help="also serve the API over TCP with mutual TLS")
    p.add_argument("--tls-cert", metavar="F")
    p.add_argument("--tls-key", metavar="F")
    p.add_argument("--tls-ca", metavar="F")
    p.add_argument("--etcd-endpoints", default="http://127.0.0.1:2379", metavar="URLS")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.listen_tcp and not (args.tls_cert and args.tls_key and args.tls_ca):
        print("machined: --listen-tcp needs --tls-cert, --tls-key and --tls-ca", file=sys.stderr)
        return 2

    from machined.safety import in_initial_netns

    if in_initial_netns() and not args.allow_host_network:
        print(
            "machined: refusing to run in the machine's initial network namespace "
            "(run it inside a node's namespace, or pass --allow-host-network on a real node)",
            file=sys.stderr,
        )
        return 1

    from machined.node import NodeOptions, StartError, run_node

    try:
        opts = NodeOptions.from_args(args)
    except StartError as e:
        for line in e.lines:
            print(line, file=sys.stderr)
        return 1
    try:
        return run_node(opts)
    except StartError as e:
        for line in e.lines:
            print(line, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
