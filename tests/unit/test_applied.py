"""applied.json: the record of what our specs created."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from netd.kernel.applied import Applied


def test_changes_persist_and_reload(tmp_path: Path) -> None:
    a = Applied.in_dir(str(tmp_path))
    a.add("route", "inet4/10.0.0.1//1024", {"table": 254})
    a.add("link", "br0", {"kind": "bridge"})
    a.remove("link", "br0")
    again = Applied.in_dir(str(tmp_path))
    assert again.items("route") == {"inet4/10.0.0.1//1024": {"table": 254}}
    assert again.items("link") == {}
    assert ("route", "inet4/10.0.0.1//1024") in again


def test_batch_writes_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = Applied.in_dir(str(tmp_path))
    writes = 0
    real_replace = os.replace

    def counting_replace(src: str, dst: str) -> None:
        nonlocal writes
        writes += 1
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", counting_replace)
    with a.batch():
        for i in range(1000):
            a.add("route", f"r{i}", {"i": i})
        with a.batch():  # nested: still one write, at the outer end
            a.remove("route", "r0")
        assert writes == 0
    assert writes == 1
    assert len(json.loads((tmp_path / "applied.json").read_text())["route"]) == 999
    with a.batch():
        a.add("route", "r1", {"i": 1})  # no change: no write
    assert writes == 1


def test_unreadable_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "applied.json").write_text("{not json")
    assert Applied.in_dir(str(tmp_path)).items("route") == {}
