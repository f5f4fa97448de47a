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
    fsyncs: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)

    def writes() -> int:
        return a.saves

    with a.batch():
        for i in range(1000):
            a.add("route", f"r{i}", {"i": i})
        with a.batch():  # nested: still one write, at the outer end
            a.remove("route", "r0")
        assert writes() == 0
    assert writes() == 1
    assert len(fsyncs) == 2  # the file and its directory: once per batch, not per record
    assert len(json.loads((tmp_path / "applied.json").read_text())["route"]) == 999
    with a.batch():
        a.add("route", "r1", {"i": 1})  # no change: no write
    assert writes() == 1


def test_pending_confirm_abandon(tmp_path: Path) -> None:
    a = Applied.in_dir(str(tmp_path))
    a.add("route", "old", {"gw": "1"})
    with a.batch():
        a.pend("route", "old", {"gw": "2"})  # a replacement: the old record stays beside it
        a.pend("route", "new", {"gw": "3"})
        a.pend("route", "failed", {"gw": "4"})
    # On disk before anything is sent (what a kill -9 leaves).
    crashed = Applied.in_dir(str(tmp_path))
    assert crashed.pending("route") == {"old": {"gw": "2"}, "new": {"gw": "3"}, "failed": {"gw": "4"}}
    assert crashed.items("route") == {"old": {"gw": "1"}}
    with a.batch():
        a.confirm("route", "new")
        a.add("route", "old", {"gw": "2", "x": 1})
        a.abandon("route", "failed")
    again = Applied.in_dir(str(tmp_path))
    assert again.pending("route") == {}
    assert again.items("route") == {"new": {"gw": "3"}, "old": {"gw": "2", "x": 1}}


def test_resolve_after_crash(tmp_path: Path) -> None:
    a = Applied.in_dir(str(tmp_path))
    a.add("route", "kept", {"n": 0})
    with a.batch():
        a.pend("route", "kept", {"n": 1})  # not made: the old record stays
        a.pend("route", "made", {"n": 2})
        a.pend("route", "lost", {"n": 3})
    b = Applied.in_dir(str(tmp_path))
    assert b.resolve("route", lambda key, data: data["n"] == 2) == (1, 2)
    assert b.items("route") == {"kept": {"n": 0}, "made": {"n": 2}}
    assert Applied.in_dir(str(tmp_path)).pending("route") == {}
    assert b.resolve("route", lambda key, data: True) == (0, 0)


@pytest.mark.parametrize("text", ["{not json", "", '{"route": {"a": {"x"', "[1, 2]", "\x00\x00\x00"])
def test_unreadable_file_is_ignored(tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "applied.json").write_text(text)
    a = Applied.in_dir(str(tmp_path))
    assert a.items("route") == {} and a.pending("route") == {}
    assert a.corrupt
    assert "ignoring unreadable" in caplog.text
    a.add("route", "r", {})  # and it is replaced by a good one at the first change
    assert Applied.in_dir(str(tmp_path)).corrupt is None


def test_no_temporary_file_left(tmp_path: Path) -> None:
    a = Applied.in_dir(str(tmp_path))
    for i in range(5):
        a.add("link", f"l{i}", {"kind": "dummy"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["applied.json"]
    assert (tmp_path / "applied.json").stat().st_mode & 0o777 == 0o600
