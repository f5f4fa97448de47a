"""Load a machine config stream: framing (config.md §A.1), strict keys, models, rules."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .allowlist import unknown_keys
from .errors import ConfigError, Path, Problem, format_path
from .kubespan_peer import check_kubespan_peer, cross_peer_documents
from .models import (
    Config,
    KubeSpanPeerConfig,
    LinkConfig,
    NetworkDefaultActionConfig,
    NetworkRuleConfig,
    RoutingRuleConfig,
)
from .routing import check_link_config, check_routing_rule, cross_document
from .types import to_str
from .validate import Checker
from .yaml import YamlDocument, load_documents

V1ALPHA1_KEYS = ("machine", "cluster", "debug", "persist")

#: Other v1.6 document kinds: accepted (keys checked), not interpreted by networking.
OTHER_KINDS: dict[str, tuple[str, ...]] = {
    "EventSinkConfig": ("endpoint",),
    "KmsgLogConfig": ("name", "url"),
    "SideroLinkConfig": ("apiUrl",),
}
NAMED_KINDS = frozenset(
    {"NetworkRuleConfig", "KmsgLogConfig", "RoutingRuleConfig", "LinkConfig", "KubeSpanPeerConfig"}
)
NETWORK_KINDS = frozenset(
    {
        "NetworkRuleConfig",
        "NetworkDefaultActionConfig",
        "RoutingRuleConfig",
        "LinkConfig",
        "KubeSpanPeerConfig",
    }
)
NETWORK_RULE_KEYS = ("name", "portSelector", "ingress")
ROUTING_RULE_KEYS = ("name", "src", "dst", "table", "action", "iifName", "oifName", "fwMark", "fwMask")
LINK_CONFIG_KEYS = ("name", "up", "mtu", "addresses", "routes", "multicast")
LINK_ADDRESS_KEYS = ("address", "routePriority")
LINK_ROUTE_KEYS = ("destination", "gateway", "source", "metric", "mtu", "table")
KUBESPAN_PEER_KEYS = ("name", "publicKey", "allowedIPs", "endpoint")
PORT_SELECTOR_KEYS = ("ports", "protocol")
INGRESS_RULE_KEYS = ("subnet", "except")
DEFAULT_ACTION_KEYS = ("ingress",)


@dataclass(frozen=True)
class OtherDocument:
    """A v1.6 document networking does not read (EventSinkConfig, ...), kept as data."""

    kind: str
    name: str
    data: dict[str, Any]


@dataclass
class LoadedConfig:
    """A valid machine config: the v1alpha1 document, the firewall, policy-routing and
    KubeSpan static peer documents, and warnings."""

    config: Config | None = None
    default_action: NetworkDefaultActionConfig | None = None
    rules: list[NetworkRuleConfig] = field(default_factory=list)
    routing_rules: list[RoutingRuleConfig] = field(default_factory=list)
    link_configs: list[LinkConfig] = field(default_factory=list)
    kubespan_peers: list[KubeSpanPeerConfig] = field(default_factory=list)
    other_documents: list[OtherDocument] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """No document networking reads (only other kinds, or nothing)."""
        return (
            self.config is None
            and self.default_action is None
            and not (self.rules or self.routing_rules or self.link_configs or self.kubespan_peers)
        )

    @property
    def ingress_default(self) -> str:
        """``accept`` or ``block`` (``accept`` without a NetworkDefaultActionConfig)."""
        return self.default_action.ingress if self.default_action is not None else "accept"


_M = TypeVar("_M", bound=BaseModel)

_PYDANTIC_MESSAGES = {
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "dict_type": "must be a mapping",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "bool_type": "must be a boolean (true/false)",
    "bool_parsing": "must be a boolean (true/false)",
    "missing": "is required",
    "literal_error": "has an unexpected value",
}


def _translate(exc: ValidationError, doc: YamlDocument, label: str) -> list[Problem]:
    problems: list[Problem] = []
    for err in exc.errors(include_url=False):
        path: Path = tuple(elem for elem in err["loc"] if isinstance(elem, str | int))
        etype = err["type"]
        ctx = err.get("ctx") or {}
        if etype == "value_error" and "error" in ctx:
            message = str(ctx["error"])
        else:
            message = _PYDANTIC_MESSAGES.get(etype, "invalid value")
        problems.append(Problem(label, format_path(path), message, line=doc.line_of(path)))
    return problems


def _decode(
    model: type[_M], doc: YamlDocument, label: str, problems: list[Problem]
) -> tuple[_M | None, list[str]]:
    """Validate ``doc.data``; on errors, report them, drop the bad values and try again.

    Returns the model (None if even the repaired data fails) and the paths that were
    dropped: rule checks under those paths would only repeat the same problem.
    """
    data = doc.data
    dropped: list[str] = []
    for _attempt in range(4):
        try:
            return model.model_validate(data), dropped
        except ValidationError as exc:
            found = _translate(exc, doc, label)
            if _attempt == 0:
                problems.extend(found)
            data = _copy_tree(data)
            for err in exc.errors(include_url=False):
                path = [e for e in err["loc"] if isinstance(e, str | int)]
                while path and isinstance(path[-1], int):
                    path.pop()
                if not path or not _drop(data, path):
                    return None, dropped
                dropped.append(format_path(path))
    return None, dropped


def _copy_tree(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _copy_tree(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_copy_tree(v) for v in data]
    return data


def _drop(data: Any, path: list[str | int]) -> bool:
    node = data
    for elem in path[:-1]:
        found = (isinstance(elem, int) and isinstance(node, list) and 0 <= elem < len(node)) or (
            isinstance(elem, str) and isinstance(node, dict) and elem in node
        )
        if not found:
            return False
        node = node[elem]
    if isinstance(node, dict) and path[-1] in node:
        del node[path[-1]]
        return True
    return False


def _related(path: str, dropped: list[str]) -> bool:
    """True if ``path`` is a dropped path, inside one, or one of its parents."""

    def inside(a: str, b: str) -> bool:
        return a == b or a.startswith((b + ".", b + "[")) or not b

    return any(inside(path, d) or inside(d, path) for d in dropped)


def _strict_keys(data: Any, allowed: tuple[str, ...], path: Path) -> list[Path]:
    if not isinstance(data, dict):
        return []
    return [(*path, key) for key in data if key not in allowed]


def _strict_list(data: Any, key: str, allowed: tuple[str, ...]) -> list[Path]:
    items = data.get(key) if isinstance(data, dict) else None
    if not isinstance(items, list):
        return []
    return [p for k, item in enumerate(items) for p in _strict_keys(item, allowed, (key, k))]


def _checked(
    model: type[_M],
    doc: YamlDocument,
    label: str,
    problems: list[Problem],
    check: Callable[[Checker, _M], None],
) -> _M | None:
    """Decode a document and run its rule checks; a check under a dropped (already
    reported) path is not repeated."""
    decoded, dropped = _decode(model, doc, label, problems)
    if decoded is not None:
        checker = Checker(label)
        check(checker, decoded)
        for p in checker.problems:
            if not _related(p.path, dropped):
                problems.append(Problem(p.doc, p.path, p.message, p.warning, doc.line_of(_split(p.path))))
    return decoded


def _kind_label(kind: str, name: Any) -> str:
    if isinstance(name, dict | list) or name is None:
        return f"{kind}/"
    try:
        return f"{kind}/{to_str(name)}"
    except ValueError:
        return f"{kind}/"


def load_config(text: str, *, strict: bool = False) -> LoadedConfig:
    """Parse and validate a machine config stream. Raises :class:`ConfigError` with every problem.

    With ``strict`` warnings are errors too (Talos' strict validation mode).
    """
    docs = load_documents(text)
    problems: list[Problem] = []
    result = LoadedConfig()
    seen: set[str] = set()
    placed: list[tuple[str, YamlDocument]] = []  # RoutingRuleConfig label → its document
    linked: list[tuple[str, YamlDocument]] = []  # LinkConfig label → its document
    peered: list[tuple[str, YamlDocument]] = []  # KubeSpanPeerConfig label → its document
    found = 0
    for doc in docs:
        if doc.data is None:
            continue
        found += 1
        generic = f"document {doc.index + 1}"
        data = doc.data
        if not isinstance(data, dict):
            problems.append(Problem(generic, "", "a config document must be a mapping", line=doc.line))
            continue

        def add(label: str, path: Path, message: str, *, _doc: YamlDocument = doc) -> None:
            problems.append(Problem(label, format_path(path), message, line=_doc.line_of(path)))

        if "kind" not in data:
            if not any(key in data for key in V1ALPHA1_KEYS):
                add(generic, (), "missing kind (and not a v1alpha1 machine config)")
                continue
            label = "v1alpha1"
            if label in seen:
                add(label, (), "duplicate v1alpha1.Config")
                continue
            seen.add(label)
            for path, message in unknown_keys(data):
                add(label, path, message)
            result.config = _checked(Config, doc, label, problems, Checker.config)
            continue

        kind = data.get("kind")
        if not isinstance(kind, str) or not kind:
            add(generic, ("kind",), "kind must be a non-empty string")
            continue
        known = kind in NETWORK_KINDS or kind in OTHER_KINDS
        # unnamed kinds are keyed by kind alone (a stray `name` is an unknown key)
        name = data.get("name", "") if kind in NAMED_KINDS or not known else ""
        label = _kind_label(kind, name)
        if not known:
            add(label, ("kind",), f'unknown kind "{kind}"')
            continue
        api_version = data.get("apiVersion")
        if api_version != "v1alpha1":
            shown = "" if api_version is None else str(api_version)
            add(label, ("apiVersion",), f'unknown apiVersion "{shown}" for kind {kind} (want v1alpha1)')
            continue
        if label in seen:
            add(label, (), f"duplicate document: {label}")
            continue
        seen.add(label)
        base = ("apiVersion", "kind")
        if kind == "NetworkDefaultActionConfig":
            for path in _strict_keys(data, (*base, *DEFAULT_ACTION_KEYS), ()):
                add(label, path, "unknown key")
            action, _ = _decode(NetworkDefaultActionConfig, doc, label, problems)
            result.default_action = action
        elif kind == "NetworkRuleConfig":
            bad = _strict_keys(data, (*base, *NETWORK_RULE_KEYS), ())
            bad += _strict_keys(data.get("portSelector"), PORT_SELECTOR_KEYS, ("portSelector",))
            ingress = data.get("ingress")
            if isinstance(ingress, list):
                for k, item in enumerate(ingress):
                    bad += _strict_keys(item, INGRESS_RULE_KEYS, ("ingress", k))
            for path in bad:
                add(label, path, "unknown key")
            rule = _checked(NetworkRuleConfig, doc, label, problems, Checker.rule)
            if rule is not None:
                result.rules.append(rule)
        elif kind == "RoutingRuleConfig":
            for path in _strict_keys(data, (*base, *ROUTING_RULE_KEYS), ()):
                add(label, path, "unknown key")
            routing_rule = _checked(RoutingRuleConfig, doc, label, problems, check_routing_rule)
            if routing_rule is not None:
                result.routing_rules.append(routing_rule)
                placed.append((label, doc))
        elif kind == "LinkConfig":
            bad = _strict_keys(data, (*base, *LINK_CONFIG_KEYS), ())
            bad += _strict_list(data, "addresses", LINK_ADDRESS_KEYS)
            bad += _strict_list(data, "routes", LINK_ROUTE_KEYS)
            for path in bad:
                add(label, path, "unknown key")
            link = _checked(LinkConfig, doc, label, problems, check_link_config)
            if link is not None:
                result.link_configs.append(link)
                linked.append((label, doc))
        elif kind == "KubeSpanPeerConfig":
            for path in _strict_keys(data, (*base, *KUBESPAN_PEER_KEYS), ()):
                add(label, path, "unknown key")
            peer = _checked(KubeSpanPeerConfig, doc, label, problems, check_kubespan_peer)
            if peer is not None:
                result.kubespan_peers.append(peer)
                peered.append((label, doc))
        else:
            for path in _strict_keys(data, (*base, *OTHER_KINDS[kind]), ()):
                add(label, path, "unknown key")
            result.other_documents.append(OtherDocument(kind, name if isinstance(name, str) else "", data))
    devices = result.config.network.interfaces if result.config is not None else []
    rule_labels = [label for label, _ in placed]
    link_labels = [label for label, _ in linked]
    docs_of = dict(placed) | dict(linked)
    for label, path, message in cross_document(
        list(zip(rule_labels, result.routing_rules, strict=True)),
        list(zip(link_labels, result.link_configs, strict=True)),
        devices,
    ):
        problems.append(Problem(label, format_path(path), message, line=docs_of[label].line_of(path)))
    peer_docs = dict(peered)
    for label, path, message in cross_peer_documents(
        list(zip([label for label, _ in peered], result.kubespan_peers, strict=True))
    ):
        problems.append(Problem(label, format_path(path), message, line=peer_docs[label].line_of(path)))
    if not found and not problems:
        problems.append(Problem("yaml", "", "config not found (the file has no documents)"))
    if strict:
        problems = [
            Problem(p.doc, p.path, "warning: " + p.message, False, p.line) if p.warning else p
            for p in problems
        ]
    errors = [p for p in problems if not p.warning]
    if errors:
        raise ConfigError(problems)
    result.warnings = problems
    return result


def load_config_file(path: str | os.PathLike[str], *, strict: bool = False) -> LoadedConfig:
    """Read and load a machine config file; an unreadable file is a ConfigError too."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise ConfigError([Problem(str(path), "", "cannot read config: file not found")]) from None
    except IsADirectoryError:
        raise ConfigError([Problem(str(path), "", "cannot read config: is a directory")]) from None
    except PermissionError:
        raise ConfigError([Problem(str(path), "", "cannot read config: permission denied")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [Problem(str(path), "", f"cannot read config: not UTF-8 text ({exc.reason} at byte {exc.start})")]
        ) from None
    except OSError as exc:
        raise ConfigError([Problem(str(path), "", f"cannot read config: {exc.strerror or exc}")]) from None
    return load_config(text, strict=strict)


def _split(path: str) -> Path:
    """Inverse of format_path (good enough to look up a line)."""
    out: list[str | int] = []
    for part in path.replace("[", ".[").split("."):
        if not part:
            continue
        if part.startswith("[") and part.endswith("]") and part[1:-1].isdigit():
            out.append(int(part[1:-1]))
        else:
            out.append(part)
    return tuple(out)
