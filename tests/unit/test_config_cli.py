"""``netctl validate`` end to end, through the installed console script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CONFIGS = Path(__file__).parent / "configs"
NETCTL = Path(sys.executable).parent / "netctl"


def netctl(*args: str) -> subprocess.CompletedProcess[str]:
    if not NETCTL.exists():
        pytest.skip("netctl console script not installed (pip install -e .)")
    return subprocess.run([str(NETCTL), *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("name", ["spec-a20-example.yaml", "talos-v1.6-worker.yaml"])
def test_valid(name: str) -> None:
    res = netctl("validate", "--config", str(CONFIGS / name))
    assert (res.returncode, res.stdout, res.stderr) == (0, "valid\n", "")


def test_valid_with_warning(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("machine:\n  type: join\n")
    res = netctl("validate", "--config", str(f))
    assert res.returncode == 0
    assert res.stdout == "valid\n"
    assert res.stderr == 'warning: v1alpha1: machine.type: use "worker" instead of "join" for machine type\n'


def test_invalid_prints_every_problem(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(
        "machine:\n  type: controlplane\n  network:\n    interfaces:\n"
        "      - interface: eth0\n        vlans: [{vlanId: 5000}]\n"
        "      - interface: eth1\n        vlans: [{vlanId: 10, addresses: [10.0.0.1/255.255.255.0]}]\n"
        "---\napiVersion: v1alpha1\nkind: NetworkRuleConfig\nname: web\n"
        "portSelector: {ports: ['80'], protocol: tcp}\n"
    )
    res = netctl("validate", "--config", str(f))
    assert res.returncode == 1
    assert res.stdout == ""
    assert res.stderr.splitlines() == [
        "v1alpha1: machine.network.interfaces[0].vlans[0].vlanId: must be 1-4094",
        "v1alpha1: machine.network.interfaces[1].vlans[0].addresses[0]: "
        'invalid CIDR address "10.0.0.1/255.255.255.0"',
        'NetworkRuleConfig/web: portSelector.ports[0]: invalid port range: "80"',
    ]


def test_yaml_error(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("machine: [\n")
    res = netctl("validate", "--config", str(f))
    assert res.returncode == 1
    assert res.stderr.startswith("yaml: line 2 column 1: ")
    assert "Traceback" not in res.stderr


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    res = netctl("validate", "--config", str(missing))
    assert (res.returncode, res.stdout, res.stderr) == (
        1,
        "",
        f"{missing}: cannot read config: file not found\n",
    )


def test_directory(tmp_path: Path) -> None:
    res = netctl("validate", "--config", str(tmp_path))
    assert (res.returncode, res.stderr) == (1, f"{tmp_path}: cannot read config: is a directory\n")


def test_not_utf8(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_bytes(b"machine:\n  type: \xff\n")
    res = netctl("validate", "--config", str(f))
    assert res.returncode == 1
    assert res.stderr.startswith(f"{f}: cannot read config: not UTF-8 text")


def test_validate_does_not_import_heavy_modules() -> None:
    code = (
        "import sys\nfrom netctl.cli import main\n"
        f"rc = main(['validate', '--config', {str(CONFIGS / 'spec-a20-example.yaml')!r}])\n"
        "mods = ('pyroute2', 'grpc', 'nftables', 'httpx', 'cryptography', 'netd.resources')\n"
        "heavy = [m for m in mods if m in sys.modules]\n"
        "print(rc, heavy)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert res.stdout.splitlines()[-1] == "0 []"


def test_no_command_shows_help() -> None:
    res = netctl()
    assert res.returncode == 2
    assert "validate" in res.stderr


POLICY_ROUTING = """\
apiVersion: v1alpha1
kind: LinkConfig
name: eth1
addresses: [{address: 10.91.0.2/24}]
routes: [{gateway: 10.91.0.1, table: "100"}]
---
apiVersion: v1alpha1
kind: RoutingRuleConfig
name: "1000"
src: 10.91.0.0/24
table: "100"
"""


def test_policy_routing_documents(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(POLICY_ROUTING)
    res = netctl("validate", "--config", str(f))
    assert (res.returncode, res.stdout, res.stderr) == (0, "valid\n", "")


def test_policy_routing_errors_all_at_once(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(
        "apiVersion: v1alpha1\nkind: RoutingRuleConfig\nname: 32766\nfwMask: 1\n---\n"
        "apiVersion: v1alpha1\nkind: LinkConfig\nname: eth1\nroutes: [{gateway: 10.0.0.1, table: x}]\n"
    )
    res = netctl("validate", "--config", str(f))
    assert (res.returncode, res.stdout) == (1, "")
    assert res.stderr.splitlines() == [
        "RoutingRuleConfig/32766: name: priority 32766 is reserved (the kernel's main table rule)",
        "RoutingRuleConfig/32766: table: table is required for a unicast rule: "
        "main, local, default or a number 1-4294967295",
        "RoutingRuleConfig/32766: fwMask: fwMask needs fwMark",
        'LinkConfig/eth1: routes[0].table: invalid table "x": '
        "must be main, local, default or a number 1-4294967295",
    ]


def test_plan_shows_routing_rule_specs(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(POLICY_ROUTING)
    res = netctl("plan", "--config", str(f), "-n", "network-config", "-o", "yaml")
    assert res.returncode == 0, res.stderr
    assert "type: RoutingRuleSpecs.net.talos.dev\n    id: configuration/inet4/01000\n" in res.stdout
    assert "id: configuration/RoutingTable(100)/inet4/10.91.0.1//1024\n" in res.stdout
