"""A YAML 1.2 loader for machine configs, on top of ruamel.yaml's composer.

What it adds to a plain ``yaml.load``:

* YAML 1.2 resolution: ``52:54:00:12:34:56``, ``on``, ``yes`` stay strings.
* Quoted scalars come back as :class:`QuotedStr`, so a quoted ``"80"`` and a
  bare ``80`` stay distinguishable (and ``"yes"`` is not a boolean).
* Integers and floats remember their source text (``YamlInt.text``), so a
  string field given ``1.10`` gets ``"1.10"``, as Go's decoder does.
* Duplicate keys are errors; custom tags are errors.
* Alias expansion is capped (a "billion laughs" document fails at once).
* The position of every node is kept by path, so errors can name
  ``machine.network.interfaces[1].vlans[0].vlanId`` and its line.

Every failure is a :class:`~netd.config.errors.ConfigError`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.resolver import VersionedResolver

from .errors import ConfigError, Path, Problem, format_path

#: At most this many nodes after alias expansion, per stream.
MAX_NODES = 200_000
#: At most this deep.
MAX_DEPTH = 200
#: At most this many characters of input.
MAX_CHARS = 16 * 1024 * 1024

_TAG = "tag:yaml.org,2002:"
_COLLECTION_TAGS = frozenset({"", _TAG + "map", _TAG + "seq", _TAG + "omap"})


class _Yaml12Resolver(VersionedResolver):
    """YAML 1.2 resolution always, even under a ``%YAML 1.1`` directive."""

    @property
    def processing_version(self) -> tuple[int, int]:
        return (1, 2)


class QuotedStr(str):
    """A scalar that was quoted (or a block scalar) in the YAML text."""

    __slots__ = ()


class YamlInt(int):
    """An integer scalar that remembers its source text."""

    text: str

    def __new__(cls, value: int, text: str) -> YamlInt:
        obj = super().__new__(cls, value)
        obj.text = text
        return obj


class YamlFloat(float):
    """A float scalar that remembers its source text."""

    text: str

    def __new__(cls, value: float, text: str) -> YamlFloat:
        obj = super().__new__(cls, value)
        obj.text = text
        return obj


@dataclass
class YamlDocument:
    """One document of a stream: its data and where each node came from."""

    index: int
    """0-based position in the stream."""
    data: Any
    line: int
    """1-based line where the document starts."""
    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)
    """path -> (line, column), both 1-based (for mapping entries: the key's position)."""

    def line_of(self, path: Path) -> int | None:
        """The line of ``path`` or of its nearest ancestor that has one."""
        p = tuple(path)
        while True:
            pos = self.positions.get(p)
            if pos is not None:
                return pos[0]
            if not p:
                return None
            p = p[:-1]


def _problem(doc: str, path: Path, message: str, line: int | None = None) -> Problem:
    return Problem(doc, format_path(path), message, line=line)


class _Builder:
    def __init__(self, doc_label: str) -> None:
        self.doc_label = doc_label
        self.problems: list[Problem] = []
        self.positions: dict[Path, tuple[int, int]] = {}
        self._sizes: dict[int, int] = {}

    # -- alias bomb guard: expanded size of every node, computed once per node
    def size(self, node: Node, depth: int = 0) -> int:
        key = id(node)
        cached = self._sizes.get(key)
        if cached is not None:
            return cached
        if depth > MAX_DEPTH:
            raise _TooDeep(node)
        self._sizes[key] = 1  # a recursive alias counts once (then fails in build)
        total = 1
        if isinstance(node, MappingNode):
            for k, v in node.value:
                total += self.size(k, depth + 1) + self.size(v, depth + 1)
                if total > MAX_NODES:
                    break
        elif isinstance(node, SequenceNode):
            for v in node.value:
                total += self.size(v, depth + 1)
                if total > MAX_NODES:
                    break
        self._sizes[key] = total
        return total

    def build(self, node: Node, path: Path, active: frozenset[int]) -> Any:
        if len(path) > MAX_DEPTH:
            raise _TooDeep(node)
        if id(node) in active:
            raise _Recursive(node)
        mark = node.start_mark
        self.positions.setdefault(path, (mark.line + 1, mark.column + 1))
        tag = str(node.tag) if node.tag is not None else ""
        if isinstance(node, ScalarNode):
            return self.scalar(node, tag, path)
        if tag not in _COLLECTION_TAGS:
            self.problems.append(_problem(self.doc_label, path, f"unsupported YAML tag {tag}", mark.line + 1))
        inner = active | {id(node)}
        if isinstance(node, SequenceNode):
            return [self.build(child, (*path, i), inner) for i, child in enumerate(node.value)]
        if isinstance(node, MappingNode):
            return self.mapping(node, path, inner)
        raise ValueError("unknown YAML node")  # pragma: no cover

    def mapping(self, node: MappingNode, path: Path, active: frozenset[int]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        seen: dict[str, int] = {}
        merges: list[dict[str, Any]] = []
        for knode, vnode in node.value:
            if not isinstance(knode, ScalarNode):
                self.problems.append(
                    _problem(
                        self.doc_label, path, "mapping keys must be plain scalars", knode.start_mark.line + 1
                    )
                )
                continue
            ktag = str(knode.tag) if knode.tag is not None else ""
            if ktag == _TAG + "merge" and knode.style is None:
                merges.extend(self.merge_sources(vnode, path, active))
                continue
            key = str(knode.value)
            line = knode.start_mark.line + 1
            kpath = (*path, key)
            if key in seen:
                self.problems.append(
                    _problem(
                        self.doc_label,
                        kpath,
                        f'duplicate key "{key}" (first defined at line {seen[key]})',
                        line,
                    )
                )
                continue
            seen[key] = line
            self.positions[kpath] = (line, knode.start_mark.column + 1)
            out[key] = self.build(vnode, kpath, active)
        for src in merges:
            for k, v in src.items():
                out.setdefault(k, v)
        return out

    def merge_sources(self, vnode: Node, path: Path, active: frozenset[int]) -> list[dict[str, Any]]:
        value = self.build(vnode, (*path, "<<"), active)
        sources = value if isinstance(value, list) else [value]
        if not all(isinstance(s, dict) for s in sources):
            self.problems.append(
                _problem(
                    self.doc_label,
                    path,
                    "a merge key (<<) needs a mapping or a list of mappings",
                    vnode.start_mark.line + 1,
                )
            )
            return []
        return list(sources)

    def scalar(self, node: ScalarNode, tag: str, path: Path) -> Any:
        text = str(node.value)
        line = node.start_mark.line + 1
        if tag and not tag.startswith(_TAG):
            self.problems.append(_problem(self.doc_label, path, f"unsupported YAML tag {tag}", line))
            return text
        kind = tag[len(_TAG) :] if tag else "str"
        if kind in ("str", "binary", "timestamp"):
            return text if node.style is None else QuotedStr(text)
        if kind == "null":
            return None
        if kind == "bool":
            low = text.lower()
            if low in ("true", "false"):
                return low == "true"
            self.problems.append(_problem(self.doc_label, path, f"invalid boolean {text!r}", line))
            return None
        if kind == "int":
            value = _parse_int(text)
            if value is None:
                self.problems.append(_problem(self.doc_label, path, f"invalid integer {text!r}", line))
                return None
            return YamlInt(value, text)
        if kind == "float":
            fvalue = _parse_float(text)
            if fvalue is None:
                self.problems.append(_problem(self.doc_label, path, f"invalid number {text!r}", line))
                return None
            return YamlFloat(fvalue, text)
        self.problems.append(_problem(self.doc_label, path, f"unsupported YAML tag {tag}", line))
        return text


def _parse_int(text: str) -> int | None:
    s = text.replace("_", "")
    sign = 1
    if s[:1] in ("+", "-"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    try:
        low = s.lower()
        if low.startswith("0o"):
            return sign * int(s[2:], 8)
        if low.startswith("0x"):
            return sign * int(s[2:], 16)
        if low.startswith("0b"):
            return sign * int(s[2:], 2)
        if not s.isdigit():
            return None
        return sign * int(s, 10)
    except ValueError:
        return None


def _parse_float(text: str) -> float | None:
    low = text.lower().replace("_", "")
    if low in (".inf", "+.inf"):
        return math.inf
    if low == "-.inf":
        return -math.inf
    if low == ".nan":
        return math.nan
    try:
        return float(low)
    except ValueError:
        return None


class _TooDeep(Exception):
    def __init__(self, node: Node) -> None:
        self.node = node


class _Recursive(Exception):
    def __init__(self, node: Node) -> None:
        self.node = node


def _yaml_error_problem(exc: Exception, index: int) -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or "invalid YAML"
    problem = " ".join(str(problem).split())
    where = f"document {index + 1}"
    if mark is not None:
        line = int(mark.line) + 1
        return Problem("yaml", f"line {line} column {int(mark.column) + 1}", problem, line=line)
    return Problem("yaml", where, problem)


def load_documents(text: str) -> list[YamlDocument]:
    """Parse a multi-document YAML 1.2 stream; raises ConfigError on any YAML problem.

    Empty documents (nothing, or only ``null``) are kept with ``data`` None.
    """
    if not isinstance(text, str):
        raise ConfigError([Problem("yaml", "", "config must be text")])
    if len(text) > MAX_CHARS:
        raise ConfigError([Problem("yaml", "", f"config is too large (more than {MAX_CHARS} characters)")])
    if "\x00" in text:
        raise ConfigError([Problem("yaml", "", "config contains a NUL character")])
    loader = YAML(typ="rt")
    loader.Resolver = _Yaml12Resolver
    with warnings.catch_warnings():
        # ruamel warns (on stderr) about redefined anchors, which YAML allows
        warnings.simplefilter("ignore")
        return _load(loader, text)


def _load(loader: YAML, text: str) -> list[YamlDocument]:
    docs: list[YamlDocument] = []
    problems: list[Problem] = []
    index = 0
    try:
        for node in loader.compose_all(text):
            label = f"document {index + 1}"
            builder = _Builder(label)
            line = node.start_mark.line + 1 if node is not None else 1
            try:
                if node is None:
                    data = None
                else:
                    if builder.size(node) > MAX_NODES:
                        problems.append(
                            Problem(
                                label,
                                "",
                                f"document expands to more than {MAX_NODES} YAML nodes (too many aliases?)",
                                line=line,
                            )
                        )
                        index += 1
                        continue
                    data = builder.build(node, (), frozenset())
            except _TooDeep as exc:
                problems.append(
                    Problem(
                        label,
                        "",
                        f"nesting is deeper than {MAX_DEPTH} levels",
                        line=exc.node.start_mark.line + 1,
                    )
                )
                index += 1
                continue
            except _Recursive as exc:
                problems.append(Problem(label, "", "recursive alias", line=exc.node.start_mark.line + 1))
                index += 1
                continue
            problems.extend(builder.problems)
            docs.append(YamlDocument(index, data, line, builder.positions))
            index += 1
    except RecursionError:
        problems.append(Problem("yaml", "", f"nesting is deeper than {MAX_DEPTH} levels"))
    except ConfigError:
        raise
    except Exception as exc:  # ruamel raises many types (YAMLError, and worse on odd input)
        problems.append(_yaml_error_problem(exc, index))
    if problems:
        raise ConfigError(problems)
    return docs
