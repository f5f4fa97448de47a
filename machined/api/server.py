"""The gRPC (asyncio) server of the machined API: unix socket, optionally TCP with mutual TLS.

Handlers run on the node's event loop, next to the controllers, so a read is
a consistent snapshot of the state and a watch started from a snapshot can
never miss or duplicate an event (``cosi.State.watch``).

The unix socket is created with mode 0600 (root only): the API can change the
node's network. TCP requires a client certificate that chains to ``--tls-ca``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import grpc

from cosi import Event, EventType, Resource, Runtime, State
from cosi.definition import ResourceDefinition
from cosi.errors import AmbiguousTypeError, UnknownTypeError
from cosi.resource import rfc3339, spec_dict
from machined.api import machined_pb2 as pb
from machined.api import machined_pb2_grpc as pb_grpc
from machined.api.configs import ApplyError, ApplyMode, ApplyResult
from netd.resources.hostname import HOSTNAME_STATUS_TYPE, HostnameStatus
from netd.resources.ids import HOSTNAME_ID
from netd.resources.namespaces import NETWORK

log = logging.getLogger("machined.api")

STOP_GRACE = 1.0
_EVENTS = {
    EventType.CREATED: pb.CREATED,
    EventType.UPDATED: pb.UPDATED,
    EventType.DESTROYED: pb.DESTROYED,
    EventType.BOOTSTRAPPED: pb.BOOTSTRAPPED,
    EventType.ERRORED: pb.ERRORED,
}
_MODES = {pb.AUTO: ApplyMode.AUTO, pb.NO_REBOOT: ApplyMode.NO_REBOOT, pb.TRY: ApplyMode.TRY}


class NodeApi(Protocol):
    """What the API needs of the node (``machined.node.Node``)."""

    state: State
    runtime: Runtime

    def apply_config(self, text: str, mode: ApplyMode, timeout: float) -> ApplyResult: ...

    def confirm_config(self) -> None: ...

    async def reset(self) -> list[str]: ...


class ApiError(Exception):
    """The server cannot start (socket or TLS files); one line for stderr."""


def node_name(state: State) -> str:
    """The node's hostname, FQDN when it has a domain (decisions.md "Output of resources")."""
    res = state.get(NETWORK, HOSTNAME_STATUS_TYPE, HOSTNAME_ID)
    if res is not None and isinstance(res.spec, HostnameStatus) and res.spec.hostname:
        return res.spec.fqdn()
    return socket.gethostname()


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("talos-netd")
    except PackageNotFoundError:
        return "unknown"


def definition_pb(d: ResourceDefinition) -> pb.ResourceDefinition:
    return pb.ResourceDefinition(
        type=d.type,
        display_type=d.display_type,
        default_namespace=d.default_namespace,
        aliases=list(d.all_aliases),
        print_columns=[pb.PrintColumn(name=n, json_path=p) for n, p in d.print_columns],
        sensitive=d.sensitive,
    )


# One encoder for every spec: ``json.dumps(x, separators=...)`` makes a new one per call.
# netctl's ``-o json`` pastes this text as it is, so it must stay exactly
# ``json.dumps(spec_dict(spec), separators=(",", ":"))`` (ASCII, compact).
_encode_spec = json.JSONEncoder(separators=(",", ":")).encode


def resource_pb(res: Resource) -> pb.Resource:
    """The message of a resource: metadata as ``cosi.resource.metadata_dict`` renders it,
    the spec as compact JSON. Fields are set one by one (a third of the cost of
    keyword construction) and empty repeated/map fields are left alone."""
    md = res.md
    out = pb.Resource(spec_json=_encode_spec(spec_dict(res.spec)))
    m = out.metadata
    m.namespace = md.namespace
    m.type = md.type
    m.id = md.id
    m.version = md.version
    m.owner = md.owner
    m.phase = str(md.phase)
    m.created = rfc3339(md.created)
    m.updated = rfc3339(md.updated)
    if md.finalizers:
        m.finalizers.extend(md.finalizers)
    if md.labels:
        m.labels.update(md.labels)
    return out


class PbCache:
    """The encoded ``pb.Resource`` of every current resource the API has sent.

    Encoding a resource (pydantic dump, two timestamps, JSON) costs ~25 µs, so
    listing 10,000 routes cost ~280 ms per ``List``, every time, although
    stored resources never change in place: each write stores a new
    ``Resource`` object (cosi/resource.py). The cache maps (kind, id) to the
    resource object it encoded and its message; an entry is used only for
    that very object (``is``), and it is dropped synchronously on every
    event of its id (a state subscription per kind, taken on first use), so
    the cache holds current resources only: an update or a destroy frees the
    old message at once, a destroyed-then-recreated id never sees a stale one.
    Entries are added only for the resource the state holds at that moment,
    so a watcher encoding an old event cannot put a stale entry back.

    The cached messages are never mutated: callers copy them into their
    responses (``ListResponse(resources=...)``/``CopyFrom`` copy).
    """

    def __init__(self, state: State) -> None:
        self.state = state
        self._kinds: dict[tuple[str, str], dict[str, tuple[Resource, pb.Resource]]] = {}
        self._unsubscribe: list[Callable[[], None]] = []

    def _entries(self, namespace: str, type_: str) -> dict[str, tuple[Resource, pb.Resource]]:
        kind = (namespace, type_)
        entries = self._kinds.get(kind)
        if entries is None:
            entries = self._kinds[kind] = {}

            def evict(ev: Event) -> None:
                if ev.resource is not None:
                    entries.pop(ev.resource.md.id, None)

            self._unsubscribe.append(self.state.subscribe(namespace, type_, evict))
        return entries

    def get(self, res: Resource) -> pb.Resource:
        """The message of ``res`` (built once per stored resource object)."""
        md = res.md
        entries = self._entries(md.namespace, md.type)
        hit = entries.get(md.id)
        if hit is not None and hit[0] is res:
            return hit[1]
        msg = resource_pb(res)
        if self.state.get(md.namespace, md.type, md.id) is res:
            entries[md.id] = (res, msg)
        return msg

    def close(self) -> None:
        """Unsubscribe and forget everything (the server stops)."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        self._kinds.clear()


class _Resolver:
    def __init__(self, state: State) -> None:
        self.state = state

    async def resolve(
        self, word: str, namespace: str, context: grpc.aio.ServicerContext[object, object]
    ) -> tuple[ResourceDefinition, str]:
        try:
            d = self.state.registry.resolve(word)
        except (UnknownTypeError, AmbiguousTypeError) as e:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(e))
            raise  # unreachable: abort raises
        return d, namespace or d.default_namespace


class ResourceService(pb_grpc.ResourceServiceServicer):
    def __init__(self, node: NodeApi) -> None:
        self.node = node
        self.state = node.state
        self._resolver = _Resolver(node.state)
        self.cache = PbCache(node.state)

    async def Get(
        self, request: pb.GetRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.GetResponse:
        d, ns = await self._resolver.resolve(request.type, request.namespace, context)
        res = self.state.get(ns, d.type, request.id)
        if res is None:
            msg = f"resource {d.type}({ns}/{request.id}) does not exist"
            await context.abort(grpc.StatusCode.NOT_FOUND, msg)
            raise AssertionError("unreachable")
        return pb.GetResponse(
            node=node_name(self.state), definition=definition_pb(d), resource=self.cache.get(res)
        )

    async def List(
        self, request: pb.ListRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ListResponse:
        d, ns = await self._resolver.resolve(request.type, request.namespace, context)
        return pb.ListResponse(
            node=node_name(self.state),
            definition=definition_pb(d),
            resources=[self.cache.get(r) for r in self.state.list(ns, d.type)],
        )

    async def Watch(
        self, request: pb.WatchRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> AsyncIterator[pb.WatchResponse]:
        d, ns = await self._resolver.resolve(request.type, request.namespace, context)
        with self.state.watch(ns, d.type, request.id or None) as watcher:
            yield pb.WatchResponse(node=node_name(self.state), definition=definition_pb(d))
            while True:
                batch = await watcher.next_batch()
                if not batch:
                    return
                node = node_name(self.state)
                for ev in batch:
                    if ev.type is EventType.ERRORED:
                        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "watch fell too far behind")
                    msg = pb.WatchResponse(node=node, event=_EVENTS[ev.type])
                    if ev.resource is not None:
                        msg.resource.CopyFrom(self.cache.get(ev.resource))
                    if ev.old is not None:
                        msg.old.CopyFrom(self.cache.get(ev.old))
                    yield msg


class MachineService(pb_grpc.MachineServiceServicer):
    def __init__(self, node: NodeApi) -> None:
        self.node = node

    async def ApplyConfiguration(
        self, request: pb.ApplyConfigurationRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ApplyConfigurationResponse:
        mode = _MODES.get(request.mode)
        if mode is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown apply mode {request.mode}")
            raise AssertionError("unreachable")
        try:
            result = self.node.apply_config(request.data, mode, request.try_timeout_seconds or 60.0)
        except ApplyError as e:
            code = grpc.StatusCode.INVALID_ARGUMENT if e.invalid else grpc.StatusCode.FAILED_PRECONDITION
            await context.abort(code, "\n".join(e.lines))
            raise AssertionError("unreachable") from None
        return pb.ApplyConfigurationResponse(
            mode=request.mode,
            rollback_at=rfc3339(result.rollback_at) if result.rollback_at is not None else "",
            warnings=result.warnings,
        )

    async def ConfirmConfiguration(
        self, request: pb.ConfirmConfigurationRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ConfirmConfigurationResponse:
        try:
            self.node.confirm_config()
        except ApplyError as e:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "\n".join(e.lines))
        return pb.ConfirmConfigurationResponse()

    async def Reset(
        self, request: pb.ResetRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ResetResponse:
        remaining = await self.node.reset()
        return pb.ResetResponse(remaining=remaining)

    async def Dependencies(
        self, request: pb.DependenciesRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.DependenciesResponse:
        return pb.DependenciesResponse(dot=self.node.runtime.dependencies())

    async def Version(
        self, request: pb.VersionRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.VersionResponse:
        return pb.VersionResponse(
            node=node_name(self.node.state),
            version=package_version(),
            python=sys.version.split()[0],
        )


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ApiError(f"machined: cannot read {what} {path}: {e.strerror or e}") from None


class ApiServer:
    """The API on the unix socket and, optionally, on TCP with mutual TLS."""

    def __init__(
        self,
        node: NodeApi,
        unix_path: str,
        listen_tcp: str | None = None,
        tls: tuple[str, str, str] | None = None,
    ) -> None:
        self.node = node
        self.unix_path = os.path.abspath(unix_path)
        self.listen_tcp = listen_tcp
        self.tls = tls
        self.server: grpc.aio.Server | None = None
        self.resources: ResourceService | None = None

    async def start(self) -> None:
        """Bind and serve; :class:`ApiError` when a socket or a TLS file is unusable."""
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        self.resources = ResourceService(self.node)
        pb_grpc.add_ResourceServiceServicer_to_server(self.resources, server)  # type: ignore[no-untyped-call]
        pb_grpc.add_MachineServiceServicer_to_server(MachineService(self.node), server)  # type: ignore[no-untyped-call]
        self._bind_unix(server)
        try:
            if self.listen_tcp:
                self._bind_tcp(server, self.listen_tcp)
            await server.start()
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(self.unix_path)  # ours: bound above
            raise
        os.chmod(self.unix_path, 0o600)
        self.server = server
        tcp = f" and {self.listen_tcp} (mutual TLS)" if self.listen_tcp else ""
        log.info("API listening on %s%s", self.unix_path, tcp)

    def _bind_tcp(self, server: grpc.aio.Server, addr: str) -> None:
        if self.tls is None:
            raise ApiError("machined: --listen-tcp needs --tls-cert, --tls-key and --tls-ca")
        cert, key, ca = self.tls
        creds = grpc.ssl_server_credentials(
            [(_read(key, "--tls-key"), _read(cert, "--tls-cert"))],
            root_certificates=_read(ca, "--tls-ca"),
            require_client_auth=True,  # mutual TLS: no certificate from --tls-ca, no API
        )
        try:
            server.add_secure_port(addr, creds)
        except RuntimeError as e:
            raise ApiError(f"machined: cannot listen on {addr}: {e}") from None

    def _bind_unix(self, server: grpc.aio.Server) -> None:
        path = self.unix_path
        try:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            if os.path.exists(path):
                _remove_stale_socket(path)
        except OSError as e:
            raise ApiError(f"machined: cannot use --api {path}: {e.strerror or e}") from None
        # The socket is born 0600: no window in which another user could connect.
        old = os.umask(0o177)
        try:
            server.add_insecure_port(f"unix:{path}")
        except RuntimeError as e:
            raise ApiError(f"machined: cannot listen on --api {path}: {e}") from None
        finally:
            os.umask(old)

    async def stop(self, grace: float = STOP_GRACE) -> None:
        if self.server is not None:
            await self.server.stop(grace)
            self.server = None
        if self.resources is not None:
            self.resources.cache.close()
            self.resources = None
        with contextlib.suppress(OSError):
            os.unlink(self.unix_path)


def _remove_stale_socket(path: str) -> None:
    """Remove the socket of a previous run; refuse when another machined still serves on it."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)
        return
    except OSError:
        os.unlink(path)
        return
    finally:
        s.close()
    raise ApiError(f"machined: another process is serving on --api {path}")
