"""``netctl kubespan showconf --node X --name laptop``: join a machine that is not a node.

Like Kilo's ``kgctl showconf``: reads node X's KubeSpan identity (public fields only: the
resource also holds X's private key), its KubeSpanPeerSpecs (every other node) and its own
affiliate (X's endpoints), then prints

1. a wg-quick file for the outside machine: a new key pair (or ``--key-file``), an address
   from the cluster's KubeSpan /64 (kubespan/showconf.py says which), every node as a peer;
2. the ``KubeSpanPeerConfig`` document to add to every node's machine config
   (``netctl apply-config``), which makes each node add the machine to its ``kubespan`` link.

``--out-dir DIR`` writes them as ``DIR/<name>.conf`` (0600: it holds the private key) and
``DIR/<name>-peer.yaml`` instead. ``--endpoint ip:port``: where the nodes can reach the
machine (its ``ListenPort`` then); without it the machine dials in and WireGuard learns it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
#: wg-quick takes the interface name from the file name (wg-quick(8)).
_WG_QUICK_NAME = re.compile(r"[a-zA-Z0-9_=+.-]{1,15}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from netctl.client import DEFAULT_ENDPOINT, ENDPOINT_ENV

    sub = parser.add_subparsers(dest="kubespan_command", metavar="ACTION", required=True)
    show = sub.add_parser(
        "showconf",
        help="a wg-quick file and a KubeSpanPeerConfig that join a machine that is not a node",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument(
        "--node",
        metavar="API",
        help=f"the node to ask: its API, a unix socket path or tcp://HOST:PORT "
        f"(default ${ENDPOINT_ENV} or {DEFAULT_ENDPOINT})",
    )
    show.add_argument("--name", required=True, metavar="NAME", help="the outside machine's name, e.g. laptop")
    show.add_argument("--key-file", metavar="F", help="reuse this WireGuard private key (`wg genkey` output)")
    show.add_argument(
        "--endpoint",
        dest="peer_endpoint",
        metavar="IP:PORT",
        default="",
        help="where the nodes reach the machine (KubeSpanPeerConfig endpoint, and its ListenPort)",
    )
    show.add_argument("--out-dir", metavar="DIR", help="write <name>.conf (0600) and <name>-peer.yaml there")
    show.add_argument("--tls-cert", metavar="F", help="client certificate (tcp --node)")
    show.add_argument("--tls-key", metavar="F", help="client key (tcp --node)")
    show.add_argument("--tls-ca", metavar="F", help="CA the node's certificate must chain to (tcp --node)")


def run(args: argparse.Namespace) -> int:
    from netctl.client import ClientError, fail

    try:
        return _showconf(args)
    except ClientError as e:
        return fail(e)


def _error(message: str) -> int:
    print(f"netctl: {message}", file=sys.stderr)
    return 1


def _showconf(args: argparse.Namespace) -> int:
    from kubespan import showconf as sc
    from netctl.client import DEFAULT_ENDPOINT, ENDPOINT_ENV, Client, ClientError
    from netd.config import ConfigError, load_config
    from netd.config.kubespan_peer import parse_peer_endpoint

    name = args.name
    if not _NAME.fullmatch(name):
        return _error(f'--name "{name}": 1-63 letters, digits, ".", "-" or "_" (KubeSpanPeerConfig name)')
    if args.peer_endpoint:
        try:
            _, listen_port = parse_peer_endpoint(args.peer_endpoint)
        except ValueError as e:
            return _error(f"--endpoint: {e}")
    else:
        listen_port = None
    if args.key_file:
        try:
            private_key = Path(args.key_file).read_text().strip()
        except OSError as e:
            return _error(f"cannot read --key-file {args.key_file}: {e.strerror or e}")
    else:
        private_key = sc.generate_private_key()
    try:
        public_key = sc.public_key_of(private_key)
    except sc.ShowconfError as e:
        return _error(f"--key-file {args.key_file}: {e}")

    api = args.node or os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT
    with Client(api, args.tls_cert, args.tls_key, args.tls_ca) as client:
        try:
            node, _, _, identity = client.get("kubespanidentities", "local")
        except ClientError as e:
            if e.code == "NOT_FOUND":
                return _error(f"{client.endpoint}: no KubeSpan identity: is KubeSpan enabled on that node?")
            raise
        # Only the public fields: the resource also holds the node's private key.
        identity = {k: identity.get(k) for k in ("address", "subnet", "publicKey")}
        _, _, specs = client.list("kubespanpeerspecs")
        _, _, affiliates = client.list("affiliates")
    local = _local_affiliate(affiliates, str(identity.get("publicKey") or ""))
    try:
        mesh = sc.mesh_from_resources(identity, [(md["id"], spec) for md, spec in specs], local)
    except sc.ShowconfError as e:
        return _error(f"node {node}: {e}")
    address = sc.outside_address(mesh.subnet, public_key, mesh.addresses())
    conf = sc.wg_quick(
        mesh, name=name, private_key=private_key, address=address, listen_port=listen_port, node=node
    )
    doc = sc.peer_document(
        name=name, public_key=public_key, allowed_ips=[address], endpoint=args.peer_endpoint
    )
    try:
        load_config(doc)  # the nodes will: the same strict validation, before anything is written
    except ConfigError as e:
        for line in e.lines():
            print(line, file=sys.stderr)
        return 1
    if args.out_dir:
        return _write(Path(args.out_dir), name, conf, doc)
    sys.stdout.write(f"# ---- {name}.conf: wg-quick file for {name} (holds its private key) ----\n")
    sys.stdout.write(conf)
    sys.stdout.write(f"\n# ---- {name}-peer.yaml: add to every node's machine config ----\n")
    sys.stdout.write(doc)
    return 0


def _local_affiliate(affiliates: list[tuple[dict[str, Any], Any]], public_key: str) -> dict[str, Any] | None:
    """The node's own merged affiliate: the one advertising its KubeSpan public key."""
    for _, spec in affiliates:
        if isinstance(spec, dict) and ((spec.get("kubespan") or {}).get("publicKey")) == public_key:
            return spec
    return None


def _write(directory: Path, name: str, conf: str, doc: str) -> int:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        conf_path = directory / f"{name}.conf"
        fd = os.open(conf_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o600)  # an existing file keeps its mode otherwise
            f.write(conf)
        doc_path = directory / f"{name}-peer.yaml"
        doc_path.write_text(doc)
    except OSError as e:
        return _error(f"cannot write to {directory}: {e.strerror or e}")
    print(f"wrote {conf_path} (wg-quick, 0600) and {doc_path} (KubeSpanPeerConfig)")
    if not _WG_QUICK_NAME.fullmatch(name):
        print(
            f"netctl: note: wg-quick names the interface after the file: rename {conf_path.name} "
            "to at most 15 characters before `wg-quick up`",
            file=sys.stderr,
        )
    return 0
