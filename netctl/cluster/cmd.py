"""``netctl cluster create|show|destroy``: local clusters of nodes in network namespaces.

Registered in ``netctl.cli`` like every command: ``add_arguments(parser)`` and ``run(args)``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .state import DEFAULT_STATE_DIR, STATE_DIR_ENV


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)

    def common(p: argparse.ArgumentParser, name_required: bool = True) -> None:
        p.add_argument("--name", required=name_required, metavar="N", help="cluster name (a-z, 0-9, '-')")
        p.add_argument(
            "--state-dir",
            type=Path,
            default=None,
            metavar="DIR",
            help=f"cluster records, configs and logs (default ${STATE_DIR_ENV} or {DEFAULT_STATE_DIR})",
        )

    create = sub.add_parser("create", help="create a cluster and leave it running")
    common(create)
    create.add_argument("--nodes", type=int, required=True, metavar="K", help="number of nodes")
    create.add_argument(
        "--sites", type=int, default=1, metavar="S", help="sites, each behind its own NAT router (1)"
    )
    create.add_argument("--kubespan", action="store_true", help="enable KubeSpan in the nodes' configs")
    create.add_argument(
        "--timeout", type=float, default=60.0, metavar="SECONDS", help="start-up deadline (60)"
    )

    show = sub.add_parser("show", help="print a cluster's nodes (every cluster without --name)")
    common(show, name_required=False)

    destroy = sub.add_parser("destroy", help="remove every namespace, process, mount and file of a cluster")
    common(destroy)


def _progress(msg: str) -> None:
    print(f"netctl: {msg}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from .provision import ProvisionError
    from .topology import PlanError

    try:
        if args.cluster_command == "create":
            return _create(args)
        if args.cluster_command == "show":
            return _show(args)
        return _destroy(args)
    except (ProvisionError, PlanError) as e:
        print(f"netctl: {e}", file=sys.stderr)
        return 1


def _create(args: argparse.Namespace) -> int:
    from . import provision, show

    try:
        record = provision.create(
            args.name, args.nodes, args.sites, args.kubespan, args.state_dir,
            timeout=args.timeout, progress=_progress,
        )  # fmt: skip
    except KeyboardInterrupt:
        print(f"netctl: interrupted; cluster {args.name} removed", file=sys.stderr)
        return 130
    sys.stdout.write(show.render_summary(record) + "\n")
    rows = [["NODE", "SITE", "PRIVATE", "PUBLIC", "API"]]
    rows += [[n.name, str(n.site), n.private, n.public, str(record.api_socket(n))] for n in record.plan.nodes]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    sys.stdout.write(show.render_access(record))
    return 0


def _show(args: argparse.Namespace) -> int:
    from . import provision, show

    names = [args.name] if args.name else list(provision.cluster_names(args.state_dir))
    if not names:
        print("no clusters")
        return 0
    for i, name in enumerate(names):
        if i:
            print()
        sys.stdout.write(show.render(show.report(provision.load(name, args.state_dir))))
    return 0


def _destroy(args: argparse.Namespace) -> int:
    from . import provision

    errors = provision.destroy(args.name, args.state_dir)
    for e in errors:
        print(f"netctl: {e}", file=sys.stderr)
    if errors:
        return 1
    print(f"cluster {args.name} destroyed")
    return 0
