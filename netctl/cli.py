"""``netctl``: the command-line client.

Subcommands are registered lazily: each entry names a module and the functions
that add its arguments and run it, so ``netctl validate`` never imports the
resource API, pyroute2 or grpc. Later commands add one line to ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    module: str
    """Module with ``add_arguments(parser)`` and ``run(args) -> int``."""


COMMANDS: list[Command] = [
    Command("validate", "load and validate a machine config (no daemon, no root)", "netctl.cmd_validate"),
    Command("plan", "print the specs a config would produce here (no daemon, no root)", "netctl.cmd_plan"),
    Command("get", "print resources of a type (or one), optionally watching changes", "netctl.cmd_get"),
    Command("apply-config", "apply a new machine config (auto, no-reboot, try)", "netctl.cmd_apply_config"),
    Command("reset", "tear down the network config this node applied and stop machined", "netctl.cmd_reset"),
    Command("inspect", "inspect machined (dependencies: controller graph as graphviz)", "netctl.cmd_inspect"),
    Command("version", "print the client and server versions", "netctl.cmd_version"),
    Command("cluster", "local clusters in network namespaces (create, show, destroy)", "netctl.cluster.cmd"),
    Command("kubespan", "KubeSpan: showconf joins a machine that is not a node", "netctl.cmd_kubespan"),
]


def _add_arguments(module: str) -> Callable[[argparse.ArgumentParser], None]:
    add: Callable[[argparse.ArgumentParser], None] = importlib.import_module(module).add_arguments
    return add


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netctl", description="Talk to machined, or work on configs offline."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only the chosen command's module is imported (its arguments are needed to parse).
    names = {cmd.name for cmd in COMMANDS}
    chosen = next((a for a in argv if a in names), None)
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        p.set_defaults(_module=cmd.module)
        if cmd.name == chosen:
            _add_arguments(cmd.module)(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list)
    args = parser.parse_args(args_list)
    module = getattr(args, "_module", None)
    if module is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        run: Callable[[Any], int] = importlib.import_module(module).run
        return run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:  # never a traceback for users
        print(f"netctl: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
