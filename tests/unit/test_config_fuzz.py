"""Fuzzing the config loader: whatever comes in, only ConfigError may come out."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from netd.config import ConfigError, LoadedConfig, load_config
from netd.config.v16_schema import TYPES
from netd.config.yaml import load_documents

KEYS = sorted({k for fields in TYPES.values() for k in fields} | {"kind", "apiVersion", "name", "except"})
EXAMPLE = (Path(__file__).parent / "configs" / "spec-a20-example.yaml").read_text()

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(text: str) -> None:
    try:
        result = load_config(text)
    except ConfigError as exc:
        assert exc.problems
        for line in exc.lines():
            assert ": " in line and "\n" not in line
        return
    assert isinstance(result, LoadedConfig)


def dump(data: Any) -> str:
    out = io.StringIO()
    yaml = YAML(typ="safe", pure=True)
    yaml.dump_all(data, out)
    return out.getvalue()


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "yes",
            "off",
            "52:54:00:12:34:56",
            "10.0.0.1/24",
            "10.0.0.1",
            "::/0",
            "0.0.0.0/0",
            "802.3ad",
            "balance-rr",
            "controlplane",
            "worker",
            "join",
            "tcp",
            "80-90",
            "80",
            "block",
            "accept",
            "NetworkRuleConfig",
            "NetworkDefaultActionConfig",
            "v1alpha1",
            "",
            "!10.0.0.0/8",
            "25s",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            "https://x/",
            "eth0",
        ]
    ),
    st.text(max_size=20),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8))
trees = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)),
    max_leaves=40,
)


@SETTINGS
@given(st.text(max_size=300))
def test_arbitrary_text(text: str) -> None:
    check(text)


@SETTINGS
@given(
    st.lists(
        st.sampled_from(
            [
                "a:",
                " b",
                "- ",
                "&x",
                "*x",
                "<<:",
                "{",
                "}",
                "[",
                "]",
                "---",
                "\n",
                "'",
                '"',
                "!!str",
                "? ",
                "|",
                "#",
                "\t",
                "%YAML 1.1",
                "machine",
                "kind",
            ]
        ),
        max_size=40,
    )
)
def test_yaml_like_tokens(parts: list[str]) -> None:
    check("".join(parts))


@SETTINGS
@given(st.lists(trees, min_size=1, max_size=3))
def test_arbitrary_trees(docs: list[Any]) -> None:
    check(dump(docs))


@SETTINGS
@given(
    st.dictionaries(st.sampled_from(["machine", "cluster", "debug", "persist", "version"]), trees, min_size=1)
)
def test_arbitrary_v1alpha1_trees(doc: dict[str, Any]) -> None:
    check(dump([doc]))


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*path, i))
    return out


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


BASE = [_plain(d.data) for d in load_documents(EXAMPLE)]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_example(data: st.DataObject) -> None:
    import copy

    docs = copy.deepcopy(BASE)
    for _ in range(data.draw(st.integers(1, 4))):
        di = data.draw(st.integers(0, len(docs) - 1))
        paths = _paths(docs[di])[1:]
        path = data.draw(st.sampled_from(paths))
        node = docs[di]
        for elem in path[:-1]:
            node = node[elem]
        node[path[-1]] = data.draw(trees)
    check(dump(docs))
