"""apply-config persistence (decisions.md "Which config"): atomic write-back, try, confirm, rollback."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from machined.api.configs import ApplyError, ApplyMode, ConfigManager
from netctl.cmd_apply_config import parse_duration
from netd.config import LoadedConfig

OLD = "version: v1alpha1\nmachine:\n  type: worker\n  network:\n    nameservers: [1.1.1.1]\n"
NEW = "version: v1alpha1\nmachine:\n  type: worker\n  network:\n    nameservers: [9.9.9.9]\n"
BAD = (
    "version: v1alpha1\nmachine:\n  network:\n    interfaces:\n"
    "      - interface: eth0\n        addresses: [10.0.0.1/255.255.255.0]\n"
    "        vlans:\n          - vlanId: 5000\n"
)


def nameservers(loaded: LoadedConfig) -> list[str]:
    assert loaded.config is not None
    return [str(n) for n in loaded.config.network.nameservers]


def manager(tmp_path: Path) -> tuple[ConfigManager, list[LoadedConfig], Path]:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(OLD)
    published: list[LoadedConfig] = []
    from netd.config import load_config

    m = ConfigManager(str(cfg), str(tmp_path / "config.try.yaml"), load_config(OLD), published.append)
    return m, published, cfg


async def test_auto_writes_the_file_then_publishes(tmp_path: Path) -> None:
    m, published, cfg = manager(tmp_path)
    os.chmod(cfg, 0o640)
    result = m.apply(NEW, ApplyMode.AUTO)
    assert result.rollback_at is None
    assert cfg.read_text() == NEW
    assert cfg.stat().st_mode & 0o777 == 0o640  # mode kept
    assert [nameservers(p) for p in published] == [["9.9.9.9"]]
    assert not (tmp_path / "config.try.yaml").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]  # no temp file left


async def test_invalid_config_changes_nothing(tmp_path: Path) -> None:
    m, published, cfg = manager(tmp_path)
    with pytest.raises(ApplyError) as err:
        m.apply(BAD, ApplyMode.AUTO)
    lines = err.value.lines
    assert any(x.startswith("v1alpha1: machine.network.interfaces[0].addresses[0]:") for x in lines)
    assert any(x.startswith("v1alpha1: machine.network.interfaces[0].vlans[0].vlanId:") for x in lines)
    assert err.value.invalid
    assert cfg.read_text() == OLD
    assert published == []


async def test_try_rolls_back_at_the_deadline(tmp_path: Path) -> None:
    m, published, cfg = manager(tmp_path)
    result = m.apply(NEW, ApplyMode.TRY, timeout=0.2)
    assert result.rollback_at is not None
    assert (tmp_path / "config.try.yaml").read_text() == NEW
    assert cfg.read_text() == OLD  # not written until confirmed
    assert [nameservers(p) for p in published] == [["9.9.9.9"]]
    await asyncio.sleep(0.4)
    assert [nameservers(p) for p in published] == [["9.9.9.9"], ["1.1.1.1"]]
    assert not (tmp_path / "config.try.yaml").exists()
    assert cfg.read_text() == OLD
    assert m.pending is None


async def test_confirm_keeps_the_try_and_writes_it(tmp_path: Path) -> None:
    m, published, cfg = manager(tmp_path)
    m.apply(NEW, ApplyMode.TRY, timeout=0.2)
    m.confirm()
    assert cfg.read_text() == NEW
    assert not (tmp_path / "config.try.yaml").exists()
    await asyncio.sleep(0.4)
    assert [nameservers(p) for p in published] == [["9.9.9.9"]]  # no rollback
    with pytest.raises(ApplyError) as err:
        m.confirm()
    assert "no config applied in try mode" in err.value.lines[0]
    assert not err.value.invalid


async def test_a_second_try_rolls_back_to_the_committed_config(tmp_path: Path) -> None:
    m, published, _ = manager(tmp_path)
    m.apply(NEW, ApplyMode.TRY, timeout=5)
    m.apply(NEW.replace("9.9.9.9", "8.8.8.8"), ApplyMode.TRY, timeout=0.1)
    await asyncio.sleep(0.3)
    assert nameservers(published[-1]) == ["1.1.1.1"]


async def test_auto_during_a_try_cancels_the_rollback(tmp_path: Path) -> None:
    m, published, cfg = manager(tmp_path)
    m.apply(NEW, ApplyMode.TRY, timeout=0.1)
    m.apply(NEW.replace("9.9.9.9", "8.8.8.8"), ApplyMode.NO_REBOOT)
    await asyncio.sleep(0.3)
    assert nameservers(published[-1]) == ["8.8.8.8"]
    assert "8.8.8.8" in cfg.read_text()
    assert not (tmp_path / "config.try.yaml").exists()


async def test_unwritable_config_path_is_an_error_and_nothing_is_published(tmp_path: Path) -> None:
    published: list[LoadedConfig] = []
    blocker = tmp_path / "file"
    blocker.write_text("")
    m = ConfigManager(
        str(blocker / "config.yaml"), str(tmp_path / "t.yaml"), LoadedConfig(), published.append
    )
    with pytest.raises(ApplyError) as err:
        m.apply(NEW, ApplyMode.AUTO)
    assert not err.value.invalid
    assert published == []


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1m", 60.0), ("5s", 5.0), ("1m30s", 90.0), ("500ms", 0.5), ("1h", 3600.0), ("10", 10.0), ("1.5s", 1.5)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1x", "m", "1m 2s", "-1s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
