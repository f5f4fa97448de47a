"""Resource definitions: canonical type names, aliases, default namespace, print columns.

Definitions are themselves resources (``ResourceDefinitions.meta.cosi.dev`` in
namespace ``meta``), as are namespaces, so a client lists them with the same
API it uses for everything else (netd.md §1.7, decisions.md "Meta types").
"""

from __future__ import annotations

import builtins
import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from cosi.errors import AmbiguousTypeError, UnknownTypeError

META_NAMESPACE = "meta"
RESOURCE_DEFINITION_TYPE = "ResourceDefinitions.meta.cosi.dev"
NAMESPACE_TYPE = "Namespaces.meta.cosi.dev"


class PrintColumn(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)
    name: str
    json_path: str = Field(alias="jsonPath")


@dataclass(frozen=True)
class ResourceDefinition:
    """How a resource type is named, found and printed."""

    type: str  # canonical, e.g. "AddressStatuses.net.talos.dev"
    display_type: str  # singular, e.g. "AddressStatus"
    default_namespace: str
    spec_model: builtins.type[BaseModel]
    aliases: tuple[str, ...] = ()  # explicit extra aliases, e.g. ("address", "addresses")
    print_columns: tuple[tuple[str, str], ...] = ()  # (NAME, jsonpath)
    sensitive: bool = False
    all_aliases: tuple[str, ...] = field(init=False)
    # Names, as opposed to derived initials: they win when a word is both
    # (``ns`` is Namespaces' alias and NetworkStatuses' initials).
    names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        all_ = compute_aliases(self.type, self.display_type, self.aliases)
        initials = set(initials_of(self.type)) - {a.lower() for a in self.aliases}
        object.__setattr__(self, "all_aliases", all_)
        object.__setattr__(self, "names", frozenset({self.id, *(a for a in all_ if a not in initials)}))

    @property
    def id(self) -> str:
        """The definition's resource id: the lower-cased canonical type."""
        return self.type.lower()

    def matches(self, word: str) -> bool:
        w = word.lower()
        return w == self.id or w in self.all_aliases


def compute_aliases(type_: str, display_type: str, explicit: Iterable[str]) -> tuple[str, ...]:
    """All the words that name a type (netd.md §1.7).

    The plural, the singular display name, the plural with each longer prefix of
    the group (``addressstatuses.net``), the explicit aliases, and for a
    multi-word plural its initials (``as``; ``rd`` plus ``rds``).
    """
    plural, _, group = type_.partition(".")
    out: list[str] = [plural.lower(), display_type.lower()]
    parts = group.split(".") if group else []
    for i in range(1, len(parts)):
        out.append(".".join([plural.lower(), *parts[:i]]))
    out.extend(initials_of(type_))
    out.extend(a.lower() for a in explicit)
    seen: dict[str, None] = {}
    for a in out:
        seen.setdefault(a, None)
    return tuple(seen)


def initials_of(type_: str) -> list[str]:
    """``AddressStatuses`` → ``as``; ``ResourceDefinitions`` → ``rd``, ``rds``."""
    plural = type_.partition(".")[0]
    capitals = "".join(c for c in plural if c.isupper()).lower()
    if len(capitals) < 2:
        return []
    return [capitals] if capitals.endswith("s") else [capitals, capitals + "s"]


class ResourceDefinitionSpec(BaseModel):
    """The spec of a ResourceDefinitions.meta.cosi.dev resource (keys as the reference prints them)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)
    type: str
    display_type: str = Field(alias="displayType")
    aliases: list[str]
    print_columns: list[PrintColumn] = Field(alias="printColumns")
    default_namespace: str = Field(alias="defaultNamespace")
    sensitivity: int = 0


class NamespaceSpec(BaseModel):
    model_config = ConfigDict(frozen=True)
    description: str = ""


def definition_spec(d: ResourceDefinition) -> ResourceDefinitionSpec:
    return ResourceDefinitionSpec(
        type=d.type,
        display_type=d.display_type,
        aliases=list(d.all_aliases),
        print_columns=[PrintColumn(name=n, json_path=p) for n, p in d.print_columns],
        default_namespace=d.default_namespace,
        sensitivity=1 if d.sensitive else 0,
    )


RESOURCE_DEFINITION_DEF = ResourceDefinition(
    type=RESOURCE_DEFINITION_TYPE,
    display_type="ResourceDefinition",
    default_namespace=META_NAMESPACE,
    spec_model=ResourceDefinitionSpec,
)
NAMESPACE_DEF = ResourceDefinition(
    type=NAMESPACE_TYPE,
    display_type="Namespace",
    default_namespace=META_NAMESPACE,
    spec_model=NamespaceSpec,
    aliases=("ns", "namespace", "namespaces"),
)


class Registry:
    """Known resource definitions, looked up by canonical type or by any alias."""

    def __init__(self) -> None:
        self._by_type: dict[str, ResourceDefinition] = {}

    def add(self, d: ResourceDefinition) -> None:
        prev = self._by_type.get(d.type)
        if prev is not None and prev != d:
            raise ValueError(f"resource type {d.type} registered twice with different definitions")
        self._by_type[d.type] = d

    def get(self, type_: str) -> ResourceDefinition | None:
        return self._by_type.get(type_)

    def all(self) -> list[ResourceDefinition]:
        return sorted(self._by_type.values(), key=lambda d: d.id)

    def resolve(self, word: str) -> ResourceDefinition:
        """The definition a user's word names, case-insensitively; errors say what was meant."""
        w = word.lower()
        found = [d for d in self._by_type.values() if w in d.names]
        if not found:
            found = [d for d in self._by_type.values() if d.matches(w)]
        if len(found) == 1:
            return found[0]
        if found:
            names = ", ".join(sorted(d.type for d in found))
            raise AmbiguousTypeError(f"resource type {word!r} is ambiguous: {names}")
        words = sorted({a for d in self._by_type.values() for a in d.all_aliases})
        close = difflib.get_close_matches(word.lower(), words, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownTypeError(f"resource type {word!r} is not registered{hint}")
