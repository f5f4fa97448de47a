"""Problems found in a machine config and the one exception type that carries them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PathElem = str | int
Path = tuple[PathElem, ...]


def format_path(path: Iterable[PathElem]) -> str:
    """``("machine", "network", "interfaces", 1, "vlanId")`` -> ``machine.network.interfaces[1].vlanId``."""
    out = ""
    for elem in path:
        if isinstance(elem, int):
            out += f"[{elem}]"
        elif not out:
            out = elem
        else:
            out += "." + elem
    return out


def _one_line(text: str) -> str:
    """Control characters (from user values) escaped, so one problem stays one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


@dataclass(frozen=True)
class Problem:
    """One error or warning: the document it is in, the YAML path and a plain-words message."""

    doc: str
    path: str
    message: str
    warning: bool = False
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.doc}: {self.path}: " if self.path else f"{self.doc}: "
        return _one_line(("warning: " if self.warning else "") + where + self.message)


class ConfigError(Exception):
    """A machine config that cannot be used; ``problems`` lists every error (and the warnings)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__(self.render())

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if not p.warning]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.warning]

    def lines(self) -> list[str]:
        return [str(p) for p in self.problems]

    def render(self) -> str:
        return "\n".join(self.lines())
