"""``netctl apply-config FILE [--mode auto|no-reboot|try] [--timeout 1m]`` and ``--confirm``.

machined validates the config and applies it at once (``auto``, ``no-reboot``)
or in try mode, where it rolls back by itself at the deadline unless
``netctl apply-config --confirm`` arrives first. An invalid config prints
every problem (``<doc>: <yaml.path>: <message>``) and exits 1; nothing changes.
"""

from __future__ import annotations

import argparse
import re
import sys

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go duration (``1m``, ``30s``, ``1m30s``, ``500ms``); a bare number is seconds."""
    t = text.strip()
    try:
        return float(t)
    except ValueError:
        pass
    pos, total = 0, 0.0
    while pos < len(t):
        m = _DURATION_PART.match(t, pos)
        if m is None:
            raise ValueError(f"invalid duration {text!r}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not t:
        raise ValueError("empty duration")
    return total


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from netctl.client import add_endpoint_arguments

    parser.add_argument("file", metavar="FILE", nargs="?", help="machine config (multi-document YAML)")
    parser.add_argument("--mode", default="auto", choices=("auto", "no-reboot", "try"))
    parser.add_argument("--timeout", default="1m", help="try mode: roll back after this long (Go duration)")
    parser.add_argument("--confirm", action="store_true", help="keep the config applied in try mode")
    add_endpoint_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.confirm == (args.file is not None):
        print("netctl: apply-config needs FILE, or --confirm alone", file=sys.stderr)
        return 2
    timeout = 0.0
    text = ""
    if not args.confirm:
        try:
            timeout = parse_duration(args.timeout)
        except ValueError as e:
            print(f"netctl: --timeout: {e}", file=sys.stderr)
            return 2
        if args.mode == "try" and timeout <= 0:
            print("netctl: --timeout must be positive in try mode", file=sys.stderr)
            return 2
        try:
            with open(args.file, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            print(f"netctl: cannot read {args.file}: {getattr(e, 'strerror', None) or e}", file=sys.stderr)
            return 1

    from machined.api import machined_pb2 as pb
    from netctl.client import Client, ClientError, fail

    try:
        with Client.from_args(args) as client:
            if args.confirm:
                client.call("ConfirmConfiguration", pb.ConfirmConfigurationRequest())
                print("confirmed")
                return 0
            mode = {"auto": pb.AUTO, "no-reboot": pb.NO_REBOOT, "try": pb.TRY}[args.mode]
            req = pb.ApplyConfigurationRequest(data=text, mode=mode, try_timeout_seconds=timeout)
            resp = client.call("ApplyConfiguration", req)
    except ClientError as e:
        return fail(e, raw=e.code == "INVALID_ARGUMENT")
    for w in resp.warnings:
        print(w, file=sys.stderr)
    if args.mode == "try":
        print(f"applied in try mode; rolls back at {resp.rollback_at} unless confirmed")
    else:
        print("applied")
    return 0
