"""kubespan.md §7.8 on Linux: ``kubespan`` ends with rp_filter 0 and every other link keeps its
effective value max(all, link), over a fake /proc/sys/net/ipv4/conf tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubespan.controllers.manager import rp_filter_off


def tree(tmp: Path, values: dict[str, int]) -> Path:
    for name, v in values.items():
        (tmp / name).mkdir()
        (tmp / name / "rp_filter").write_text(f"{v}\n")
    return tmp


def read(conf: Path) -> dict[str, int]:
    return {d.name: int((d / "rp_filter").read_text()) for d in conf.iterdir()}


def effective(values: dict[str, int]) -> dict[str, int]:
    return {k: max(values["all"], v) for k, v in values.items() if k != "all"}


@pytest.mark.parametrize("strict", [0, 1, 2])
@pytest.mark.parametrize("own", [0, 1, 2])
def test_only_kubespan_changes_effectively(tmp_path: Path, strict: int, own: int) -> None:
    before = {"all": strict, "default": 0, "lo": 0, "eth0": 2, "eth1": 0, "kubespan": own}
    conf = tree(tmp_path, before)
    rp_filter_off(conf, "kubespan")
    after = read(conf)
    eff_before, eff_after = effective(before), effective(after)
    assert eff_after["kubespan"] == 0
    assert {k: v for k, v in eff_after.items() if k != "kubespan"} == {
        k: v for k, v in eff_before.items() if k != "kubespan"
    }
    # a second run writes nothing
    assert rp_filter_off(conf, "kubespan") is None
