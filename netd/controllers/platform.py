"""PlatformConfigController: the platform (META) network file as the ``platform`` layer (config.md Part C).

The file is decoded leniently (unknown keys ignored, as the reference does for
META); a file that does not decode contributes nothing. The last good file is
cached in the state dir and used only when ``--platform-config`` names a file
that is missing or unreadable (decisions.md "Platform cache").
"""

from __future__ import annotations

import logging
import os
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from cosi import Context, Controller, Output, OutputKind
from netd.config.errors import ConfigError
from netd.config.yaml import load_documents
from netd.kernel.files import replace_file
from netd.netip import parse_addr
from netd.resources.address import ADDRESS_SPEC_TYPE, ADDRESS_STATUS_TYPE, AddressSpec, AddressStatus
from netd.resources.base import Spec
from netd.resources.enums import ConfigLayer, Family, Scope
from netd.resources.hostname import HOSTNAME_SPEC_TYPE, HostnameSpec
from netd.resources.ids import HOSTNAME_ID, RESOLVERS_ID, TIMESERVERS_ID, external_address_id, layered_id
from netd.resources.link import LINK_SPEC_TYPE, LinkSpec
from netd.resources.namespaces import NETWORK, NETWORK_CONFIG
from netd.resources.operator import OPERATOR_SPEC_TYPE, OperatorSpec
from netd.resources.probe import PROBE_SPEC_TYPE, ProbeSpec
from netd.resources.resolver import RESOLVER_SPEC_TYPE, ResolverSpec
from netd.resources.route import ROUTE_SPEC_TYPE, RouteSpec
from netd.resources.timeserver import TIME_SERVER_SPEC_TYPE, TimeServerSpec

log = logging.getLogger("network.PlatformConfigController")

CACHE_FILE = "platform-network.yaml"
PLATFORM = ConfigLayer.PLATFORM

# document key → (spec model, network-config type)
_LISTS: dict[str, tuple[type[Spec], str]] = {
    "addresses": (AddressSpec, ADDRESS_SPEC_TYPE),
    "links": (LinkSpec, LINK_SPEC_TYPE),
    "routes": (RouteSpec, ROUTE_SPEC_TYPE),
    "operators": (OperatorSpec, OPERATOR_SPEC_TYPE),
}
_SINGLETONS: dict[str, tuple[type[Spec], str, str]] = {
    "hostnames": (HostnameSpec, HOSTNAME_SPEC_TYPE, HOSTNAME_ID),
    "resolvers": (ResolverSpec, RESOLVER_SPEC_TYPE, RESOLVERS_ID),
    "timeServers": (TimeServerSpec, TIME_SERVER_SPEC_TYPE, TIMESERVERS_ID),
}


def _nested_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """(model class, is a list) of a field annotation, if it holds spec models."""
    origin = typing.get_origin(annotation)
    if origin in (list, Sequence):
        inner, _ = _nested_model(typing.get_args(annotation)[0])
        return inner, True
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            m, is_list = _nested_model(arg)
            if m is not None:
                return m, is_list
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def lenient(model: type[BaseModel], data: Any) -> Any:
    """``data`` with the keys the model does not know dropped, recursively."""
    if not isinstance(data, dict):
        return data
    out: dict[str, Any] = {}
    for name, f in model.model_fields.items():
        for key in (f.alias, name):
            if key is not None and key in data:
                nested, is_list = _nested_model(f.annotation)
                value = data[key]
                if nested is not None:
                    value = (
                        [lenient(nested, v) for v in value]
                        if is_list and isinstance(value, list)
                        else (lenient(nested, value))
                    )
                out[key] = value
                break
    return out


@dataclass
class PlatformNetwork:
    """The decoded platform document."""

    specs: dict[str, dict[str, BaseModel]] = field(default_factory=dict)  # type → layered id → spec
    external_ips: list[AddressStatus] = field(default_factory=list)
    probes: list[ProbeSpec] = field(default_factory=list)


class PlatformError(Exception):
    pass


def parse_platform(text: str) -> PlatformNetwork:
    """Decode a platform network document; PlatformError names the first bad element."""
    try:
        docs = load_documents(text)
    except ConfigError as e:
        raise PlatformError("; ".join(str(p) for p in e.errors)) from None
    if not docs or docs[0].data is None:
        return PlatformNetwork()
    doc = docs[0].data
    if not isinstance(doc, dict):
        raise PlatformError("platform network config must be a mapping")
    out = PlatformNetwork(specs={t: {} for _, t in _LISTS.values()})
    for _, t, _ in _SINGLETONS.values():
        out.specs[t] = {}

    def items(key: str) -> list[Any]:
        value = doc.get(key) or []
        if not isinstance(value, list):
            raise PlatformError(f"{key}: must be a list")
        return value

    where = ""
    try:
        for key, (model, type_) in _LISTS.items():
            for i, item in enumerate(items(key)):
                where = f"{key}[{i}]: "
                spec = model.model_validate(lenient(model, item)).model_copy(update={"layer": PLATFORM})
                out.specs[type_][layered_id(PLATFORM, spec.id())] = spec  # type: ignore[attr-defined]
        for key, (model, type_, id_) in _SINGLETONS.items():
            where = f"{key}[0]: "
            entries = items(key)
            if entries:
                spec = model.model_validate(lenient(model, entries[0])).model_copy(update={"layer": PLATFORM})
                out.specs[type_][layered_id(PLATFORM, id_)] = spec
        for i, text in enumerate(items("externalIPs")):
            where = f"externalIPs[{i}]: "
            ip = parse_addr(str(text))
            out.external_ips.append(
                AddressStatus(
                    address=f"{ip}/{ip.max_prefixlen}",
                    link_name="external",
                    family=Family.of(ip),
                    scope=Scope.GLOBAL,
                )
            )
        for i, item in enumerate(items("probes")):
            where = f"probes[{i}]: "
            out.probes.append(ProbeSpec.model_validate(lenient(ProbeSpec, item)))
    except (ValidationError, ValueError) as e:
        raise PlatformError(f"{where}{e}") from None
    return out


def read_platform_file(path: str, state_dir: str | None, write_cache: bool) -> tuple[PlatformNetwork, str]:
    """(document, where it came from). A readable file wins and refreshes the cache; a
    missing or unreadable one falls back to the cache."""
    cache = os.path.join(state_dir, CACHE_FILE) if state_dir else None
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        if cache is None or not os.path.exists(cache):
            raise PlatformError(
                f"cannot read {path}: {e.strerror if isinstance(e, OSError) else e}"
            ) from None
        log.warning("cannot read %s (%s); using the cached %s", path, e, cache)
        with open(cache, encoding="utf-8") as f:
            return parse_platform(f.read()), cache
    parsed = parse_platform(text)
    if write_cache and cache is not None:
        _write_cache(cache, text)
    return parsed, path


def _write_cache(cache: str, text: str) -> None:
    try:
        with open(cache, encoding="utf-8") as f:
            if f.read() == text:
                return
    except OSError:
        pass
    replace_file(cache, text.encode(), 0o400)


class PlatformConfigController(Controller):
    name = "network.PlatformConfigController"

    def __init__(self, path: str | None, state_dir: str | None = None, write_cache: bool = True) -> None:
        self.path = path
        self.state_dir = state_dir
        self.write_cache = write_cache

    def outputs(self) -> Sequence[Output]:
        types_ = [t for _, t in _LISTS.values()] + [t for _, t, _ in _SINGLETONS.values()]
        return [Output(NETWORK_CONFIG, t, OutputKind.SHARED) for t in types_] + [
            Output(NETWORK, ADDRESS_STATUS_TYPE, OutputKind.SHARED),
            Output(NETWORK, PROBE_SPEC_TYPE, OutputKind.SHARED),
        ]

    async def reconcile(self, ctx: Context) -> None:
        doc = PlatformNetwork()
        if self.path:
            try:
                doc, source = read_platform_file(self.path, self.state_dir, self.write_cache)
                log.info("platform network config read from %s", source)
            except PlatformError as e:
                log.error("platform network config ignored: %s", e)
        for _, t in _LISTS.values():
            ctx.reconcile_owned(NETWORK_CONFIG, t, doc.specs.get(t, {}))
        for _, t, _ in _SINGLETONS.values():
            ctx.reconcile_owned(NETWORK_CONFIG, t, doc.specs.get(t, {}))
        ctx.reconcile_owned(
            NETWORK,
            ADDRESS_STATUS_TYPE,
            {external_address_id(a.address.ip): a for a in doc.external_ips if a.address},
        )
        ctx.reconcile_owned(NETWORK, PROBE_SPEC_TYPE, {p.id(): p for p in doc.probes})
