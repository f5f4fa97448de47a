"""The machined API client shared by the netctl commands that talk to a daemon.

``--endpoint`` is a unix socket path (default ``/run/machined/machined.sock``,
env ``NETCTL_ENDPOINT``) or ``tcp://HOST:PORT`` with ``--tls-ca`` (and the
client certificate ``--tls-cert``/``--tls-key``: the server requires one).

Every failure becomes a :class:`ClientError` whose message is the one line
netctl prints: daemon not running, permission denied, TLS failure, unknown
type, resource not found. grpc is imported here only, so commands that do not
talk to a daemon (validate, plan) never load it. Resources arrive as metadata
plus spec JSON and are turned into plain dicts: no resource models needed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import grpc

    from machined.api import machined_pb2 as pb

DEFAULT_ENDPOINT = "/run/machined/machined.sock"
ENDPOINT_ENV = "NETCTL_ENDPOINT"
TIMEOUT = 30.0


class ClientError(Exception):
    """One line for stderr; ``lines`` when the server sent several (config problems)."""

    def __init__(self, message: str, lines: list[str] | None = None, code: str = "") -> None:
        super().__init__(message)
        self.lines = lines or [message]
        self.code = code


def add_endpoint_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint",
        default=None,
        metavar="ENDPOINT",
        help=f"unix socket path or tcp://HOST:PORT (default ${ENDPOINT_ENV} or {DEFAULT_ENDPOINT})",
    )
    parser.add_argument("--tls-cert", metavar="F", help="client certificate (tcp endpoints)")
    parser.add_argument("--tls-key", metavar="F", help="client key (tcp endpoints)")
    parser.add_argument("--tls-ca", metavar="F", help="CA the server certificate must chain to (tcp)")


@dataclass
class Definition:
    """What the server resolved a type word to (plain data, for printing)."""

    type: str
    display_type: str
    default_namespace: str
    print_columns: list[tuple[str, str]] = field(default_factory=list)


def definition_from_pb(d: pb.ResourceDefinition) -> Definition:
    return Definition(
        d.type, d.display_type, d.default_namespace, [(c.name, c.json_path) for c in d.print_columns]
    )


def resource_from_pb(r: pb.Resource) -> tuple[dict[str, Any], Any]:
    """(metadata, spec) in the documented key order (netd.md §1.1, decisions.md)."""
    m = r.metadata
    md: dict[str, Any] = {
        "namespace": m.namespace,
        "type": m.type,
        "id": m.id,
        "version": m.version,
        "owner": m.owner,
        "phase": m.phase,
        "created": m.created,
        "updated": m.updated,
    }
    if m.labels:
        md["labels"] = dict(sorted(m.labels.items()))
    md["finalizers"] = list(m.finalizers)
    return md, json.loads(r.spec_json) if r.spec_json else {}


def resource_json(r: pb.Resource) -> str:
    """``"metadata":{...},"spec":{...}``: exactly how ``json.dumps(..., separators=(",", ":"))``
    prints the two entries of :func:`resource_from_pb`, built straight from the message.

    For ``-o json`` of 10,000 routes, decoding every spec and encoding it again
    (plus a dict and an encoder call per metadata) was a third of the command.
    The server encodes ``spec_json`` with that same compact ``json.dumps``
    (machined/api/server.py), so it is pasted as it is; the metadata strings
    go through the encoder's own string escaping, ints print as ``json`` prints
    them, labels are sorted as :func:`resource_from_pb` sorts them.
    """
    from json.encoder import encode_basestring_ascii as q

    m = r.metadata
    labels = ""
    if m.labels:
        labels = ',"labels":{' + ",".join(q(k) + ":" + q(v) for k, v in sorted(m.labels.items())) + "}"
    return (
        f'"metadata":{{"namespace":{q(m.namespace)},"type":{q(m.type)},"id":{q(m.id)},'
        f'"version":{int.__repr__(m.version)},"owner":{q(m.owner)},"phase":{q(m.phase)},'
        f'"created":{q(m.created)},"updated":{q(m.updated)}{labels},'
        f'"finalizers":[{",".join(map(q, m.finalizers))}]}},"spec":{r.spec_json or "{}"}'
    )


def parse_endpoint(endpoint: str) -> tuple[str, str]:
    """("unix", absolute path) or ("tcp", "HOST:PORT")."""
    if endpoint.startswith("tcp://"):
        hostport = endpoint[len("tcp://") :].rstrip("/")
        host, sep, port = hostport.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ClientError(f"bad endpoint {endpoint!r}: want tcp://HOST:PORT")
        return "tcp", hostport
    if endpoint.startswith("unix://"):
        endpoint = endpoint[len("unix://") :]
    elif endpoint.startswith("unix:"):
        endpoint = endpoint[len("unix:") :]
    if not endpoint:
        raise ClientError("empty endpoint")
    return "unix", os.path.abspath(endpoint)


def _check_unix_socket(path: str) -> None:
    """A clear reason before grpc's generic UNAVAILABLE: not running, or not allowed."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(path)
    except FileNotFoundError:
        raise ClientError(f"machined is not running (no API socket at {path})") from None
    except ConnectionRefusedError:
        raise ClientError(f"machined is not running ({path} refuses connections)") from None
    except PermissionError:
        raise ClientError(f"permission denied on {path}: the machined API needs root") from None
    except OSError as e:
        raise ClientError(f"cannot connect to {path}: {e.strerror or e}") from None
    finally:
        s.close()


def _read(path: str | None, flag: str) -> bytes | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ClientError(f"cannot read {flag} {path}: {e.strerror or e}") from None


class Client:
    """A connection to one machined."""

    def __init__(
        self,
        endpoint: str,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        tls_ca: str | None = None,
    ) -> None:
        # grpc's own log lines (TLS handshake failures, ...) would add to our one-line errors.
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
        import grpc

        from machined.api import machined_pb2_grpc as pb_grpc

        kind, where = parse_endpoint(endpoint)
        self.endpoint = where
        self.kind = kind
        if kind == "unix":
            _check_unix_socket(where)
            self.channel = grpc.insecure_channel(f"unix:{where}")
        else:
            if tls_ca is None:
                raise ClientError("a tcp endpoint needs --tls-ca, --tls-cert and --tls-key (mutual TLS)")
            if (tls_cert is None) != (tls_key is None):
                raise ClientError("--tls-cert and --tls-key go together")
            creds = grpc.ssl_channel_credentials(
                root_certificates=_read(tls_ca, "--tls-ca"),
                private_key=_read(tls_key, "--tls-key"),
                certificate_chain=_read(tls_cert, "--tls-cert"),
            )
            self.channel = grpc.secure_channel(where, creds)
        self.resources = pb_grpc.ResourceServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self.machine = pb_grpc.MachineServiceStub(self.channel)  # type: ignore[no-untyped-call]

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Client:
        endpoint = args.endpoint or os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT
        return cls(endpoint, args.tls_cert, args.tls_key, args.tls_ca)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def error(self, exc: grpc.RpcError) -> ClientError:
        """The one-line message for a failed call."""
        import grpc

        code = exc.code() if isinstance(exc, grpc.Call) else None
        details = (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc)
        name = code.name if code is not None else ""
        if code is grpc.StatusCode.UNAVAILABLE:
            if self.kind == "unix":
                return ClientError(f"machined is not reachable at {self.endpoint}: {details}", code=name)
            return ClientError(
                f"cannot connect to {self.endpoint} (TLS or network failure): {details}", code=name
            )
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return ClientError(f"machined at {self.endpoint} did not answer in time", code=name)
        if code is grpc.StatusCode.UNAUTHENTICATED:
            return ClientError(f"refused by {self.endpoint}: {details}", code=name)
        lines = details.splitlines() or [details]
        return ClientError(lines[0], lines=lines, code=name)

    # ---- resources ---------------------------------------------------------------

    def get(self, type_: str, id_: str, namespace: str = "") -> tuple[str, Definition, dict[str, Any], Any]:
        node, d, r = self.get_pb(type_, id_, namespace)
        md, spec = resource_from_pb(r)
        return node, d, md, spec

    def get_pb(self, type_: str, id_: str, namespace: str = "") -> tuple[str, Definition, pb.Resource]:
        """:meth:`get` with the resource as the server sent it (see :func:`resource_json`)."""
        import grpc

        from machined.api import machined_pb2 as pb

        try:
            r = self.resources.Get(pb.GetRequest(namespace=namespace, type=type_, id=id_), timeout=TIMEOUT)
        except grpc.RpcError as e:
            raise self.error(e) from None
        return r.node, definition_from_pb(r.definition), r.resource

    def list(
        self, type_: str, namespace: str = ""
    ) -> tuple[str, Definition, list[tuple[dict[str, Any], Any]]]:
        node, d, resources = self.list_pb(type_, namespace)
        return node, d, [resource_from_pb(x) for x in resources]

    def list_pb(self, type_: str, namespace: str = "") -> tuple[str, Definition, Sequence[pb.Resource]]:
        """:meth:`list` with the resources as the server sent them (see :func:`resource_json`)."""
        import grpc

        from machined.api import machined_pb2 as pb

        try:
            r = self.resources.List(pb.ListRequest(namespace=namespace, type=type_), timeout=TIMEOUT)
        except grpc.RpcError as e:
            raise self.error(e) from None
        return r.node, definition_from_pb(r.definition), r.resources

    def watch(
        self, type_: str, id_: str = "", namespace: str = ""
    ) -> tuple[Definition, Iterator[tuple[str, str, dict[str, Any] | None, Any]]]:
        """The definition, then (node, event, metadata, spec) per event; event is
        ``created``/``updated``/``destroyed``/``bootstrapped``."""
        d, stream = self.watch_pb(type_, id_, namespace)

        def events() -> Iterator[tuple[str, str, dict[str, Any] | None, Any]]:
            try:
                for node, event, r in stream:
                    if r is None:
                        yield node, event, None, None
                    else:
                        md, spec = resource_from_pb(r)
                        yield node, event, md, spec
            finally:
                stream.close()  # cancels the call

        return d, events()

    def watch_pb(
        self, type_: str, id_: str = "", namespace: str = ""
    ) -> tuple[Definition, Generator[tuple[str, str, pb.Resource | None], None, None]]:
        """:meth:`watch` with the resources as the server sent them: (node, event, resource),
        resource None for ``bootstrapped``."""
        import grpc

        from machined.api import machined_pb2 as pb

        stream = self.resources.Watch(pb.WatchRequest(namespace=namespace, type=type_, id=id_))
        try:
            first = next(stream)
        except grpc.RpcError as e:
            raise self.error(e) from None
        names = {pb.CREATED: "created", pb.UPDATED: "updated", pb.DESTROYED: "destroyed"}

        def events() -> Generator[tuple[str, str, pb.Resource | None], None, None]:
            try:
                for msg in stream:
                    if msg.event == pb.BOOTSTRAPPED:
                        yield msg.node, "bootstrapped", None
                    elif msg.event in names:
                        yield msg.node, names[msg.event], msg.resource
            except grpc.RpcError as e:
                raise self.error(e) from None
            finally:
                stream.cancel()

        return definition_from_pb(first.definition), events()

    # ---- machine -----------------------------------------------------------------

    def call(self, method: str, request: Any, timeout: float = TIMEOUT) -> Any:
        import grpc

        try:
            return getattr(self.machine, method)(request, timeout=timeout)
        except grpc.RpcError as e:
            raise self.error(e) from None


def fail(exc: ClientError, raw: bool = False) -> int:
    """Print a client error and return the exit code 1.

    ``raw``: the server's lines as they are (config problems in the
    ``<doc>: <path>: <message>`` format); otherwise one ``netctl: ...`` line.
    """
    import sys

    if raw:
        for line in exc.lines:
            print(line, file=sys.stderr)
    else:
        print(f"netctl: {exc}", file=sys.stderr)
    return 1
