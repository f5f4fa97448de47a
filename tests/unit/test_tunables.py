"""NETD_TUNABLES (decisions.md "Tunables"): one table, spec defaults, clear errors naming the key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from discovery_client import ClientTimers
from discovery_client import constants as dc
from netd import tunables


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(tunables.ENV, raising=False)
    tunables.reset_cache()
    yield
    tunables.reset_cache()


def use(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str) -> None:
    path = tmp_path / "tunables.yaml"
    path.write_text(text)
    monkeypatch.setenv(tunables.ENV, str(path))
    tunables.reset_cache()


def test_defaults_are_the_spec_values() -> None:
    assert tunables.get("DISCOVERY_TTL") == 1800.0
    assert tunables.get("KUBESPAN_RECONCILE_INTERVAL") == 30.0
    assert tunables.get("ENDPOINT_CONNECTION_TIMEOUT") == 15.0
    assert tunables.get("PEER_DOWN_INTERVAL") == 275.0
    assert tunables.get("VIP_LEASE_TTL") == 60.0
    assert tunables.get("OPERATOR_RESTART_GRACE") == 30.0
    assert tunables.get("EQUINIX_API_URL") == "https://api.equinix.com/metal/v1/"
    assert tunables.get("HCLOUD_API_URL") == "https://api.hetzner.cloud/v1"
    assert str(tunables.get("HCLOUD_METADATA_URL")).startswith("http://169.254.169.254/")
    assert tunables.get("DISCOVERY_REFRESH_INTERVAL") is None  # derived: TTL/2
    tunables.check()  # no file: fine


def test_every_discovery_client_timer_is_known_with_its_default() -> None:
    for key in ClientTimers.tunable_keys():
        assert key in tunables.TUNABLES, key
        default = getattr(dc, key, None)
        if default is not None:
            assert tunables.TUNABLES[key].default == default, key
    # what the daemon hands the client: the spec timers exactly, no derived None values
    assert ClientTimers.from_tunables(tunables.set_values("DISCOVERY_")) == ClientTimers()


def test_every_key_has_a_source() -> None:
    for t in tunables.TUNABLES.values():
        assert t.source and t.name.isupper(), t


def test_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    text = "DISCOVERY_TTL: 6\nKUBESPAN_RECONCILE_INTERVAL: 500ms\nVIP_LEASE_TTL: '1m30s'\n"
    use(monkeypatch, tmp_path, text + "VIP_GARP_COUNT: 1\nHCLOUD_API_URL: http://127.0.0.1:8080/v1\n")
    assert tunables.get("DISCOVERY_TTL") == 6.0
    assert tunables.get("KUBESPAN_RECONCILE_INTERVAL") == 0.5
    assert tunables.get("VIP_LEASE_TTL") == 90.0
    assert tunables.get("VIP_GARP_COUNT") == 1
    assert tunables.get("HCLOUD_API_URL") == "http://127.0.0.1:8080/v1"
    assert tunables.get("PEER_DOWN_INTERVAL") == 275.0  # untouched keys keep the spec value
    assert tunables.overrides()["DISCOVERY_TTL"] == 6.0
    timers = ClientTimers.from_tunables(tunables.set_values("DISCOVERY_"))
    assert timers.ttl == 6.0 and timers.effective_refresh_interval == 3.0


def test_values_are_cached_per_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use(monkeypatch, tmp_path, "DISCOVERY_TTL: 6\n")
    assert tunables.get("DISCOVERY_TTL") == 6.0
    (tmp_path / "tunables.yaml").write_text("DISCOVERY_TTL: 7\n")
    assert tunables.get("DISCOVERY_TTL") == 6.0  # read once


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("DISCOVERY_TT: 5\n", "unknown key 'DISCOVERY_TT' (did you mean DISCOVERY_TTL?)"),
        ("FOO: 1\n", "unknown key 'FOO'"),
        ("DISCOVERY_TTL: soon\n", "DISCOVERY_TTL: 'soon' is not a duration"),
        ("DISCOVERY_TTL: -1\n", "DISCOVERY_TTL: must be a finite duration ≥ 0"),
        ("DISCOVERY_TTL: true\n", "DISCOVERY_TTL: want seconds"),
        ("DISCOVERY_TTL: [1]\n", "DISCOVERY_TTL: want seconds, got list"),
        ("VIP_GARP_COUNT: 1.5\n", "VIP_GARP_COUNT: want an integer ≥ 0"),
        ("DISCOVERY_BACKOFF_MULTIPLIER: x\n", "DISCOVERY_BACKOFF_MULTIPLIER: want a number ≥ 0"),
        ("HCLOUD_API_URL: 3\n", "HCLOUD_API_URL: want a string"),
        ("- DISCOVERY_TTL\n", "want a map of NAME: value, got list"),
        ("a: [\n", "not YAML"),
    ],
)
def test_bad_files_name_the_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str, message: str
) -> None:
    use(monkeypatch, tmp_path, text)
    with pytest.raises(tunables.TunablesError) as e:
        tunables.check()
    assert message in str(e.value)
    assert str(e.value).startswith("NETD_TUNABLES: ")


def test_missing_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(tunables.ENV, str(tmp_path / "nope.yaml"))
    with pytest.raises(tunables.TunablesError, match="cannot read"):
        tunables.get("DISCOVERY_TTL")


def test_empty_file_is_no_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use(monkeypatch, tmp_path, "")
    assert tunables.overrides() == {}
    assert tunables.get("DISCOVERY_TTL") == 1800.0


def test_unknown_name_in_code_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        tunables.get("NOT_A_TUNABLE")


def test_machined_refuses_to_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from machined.cli import build_parser
    from machined.node import NodeOptions, StartError

    use(monkeypatch, tmp_path, "VIP_LEASE: 5\n")
    args = build_parser().parse_args(["--state-dir", str(tmp_path / "state")])
    with pytest.raises(StartError) as e:
        NodeOptions.from_args(args)
    assert e.value.lines == ["machined: NETD_TUNABLES: unknown key 'VIP_LEASE' (did you mean VIP_LEASE_TTL?)"]
    assert not (tmp_path / "state").exists()  # refused before touching anything
