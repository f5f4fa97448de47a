"""machined's API in a node: netctl get/apply-config/reset/inspect/version, the socket's
permissions, and mutual TLS over TCP.

Three tests need the status and spec controllers wired into machined
(machined/wiring.py): ``test_watch_sees_an_address_added_by_hand`` (AddressStatus),
``test_reset_removes_what_the_node_applied`` and ``test_leave_on_sigterm_resets_too``
(the AddressSpecController applies and undoes the address). The others rely only
on MachineConfig, the meta types and the config-layer/merged specs.
"""

from __future__ import annotations

import importlib.util
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from harness import Lab, Node, wait_until

BIN = Path(sys.executable).parent
MACHINED = str(BIN / "machined")
NETCTL = str(BIN / "netctl")

CONFIG = """version: v1alpha1
machine:
  type: worker
  network:
    hostname: api1
    nameservers: [192.0.2.53]
    interfaces:
      - interface: eth0
        addresses: [192.0.2.10/24]
"""


def with_nameserver(ns: str) -> str:
    return CONFIG.replace("192.0.2.53", ns)


class Machined:
    """machined in a node with its API socket under the node's directory."""

    def __init__(self, node: Node, config: str = CONFIG, *extra: str, api: str | None = None) -> None:
        self.node = node
        self.config = node.dir / "config.yaml"
        if not self.config.exists():
            self.config.write_text(config)
        self.api = api or str(node.dir / "api.sock")
        self.extra = extra
        self.proc: subprocess.Popen[str] | None = None
        self.start()

    def start(self) -> None:
        n = self.node
        self.proc = n.popen(
            [
                MACHINED, "--config", str(self.config), "--state-dir", str(n.state_dir),
                "--etc-dir", str(n.etc_dir), "--api", self.api, "--log-level", "debug", *self.extra,
            ]
        )  # fmt: skip
        wait_until(lambda: self.netctl("get", "ns", check=False).returncode == 0, timeout=30, what="API up")

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=15)

    def netctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.node.run([NETCTL, *args, "--endpoint", self.api], check=check, timeout=60)

    def json(self, *args: str) -> list[dict[str, Any]]:
        out = self.netctl("get", *args, "-o", "json").stdout
        return [json.loads(line) for line in out.splitlines()]

    def merged_nameservers(self) -> list[str]:
        docs = self.json("resolverspecs", "-n", "network")
        return [s for d in docs for s in d["spec"]["dnsServers"]]


def test_get_in_three_formats_and_by_alias(lab: Lab) -> None:
    node = lab.node("g1", hostname="api1")
    lab.stub(node, "eth0")
    m = Machined(node)
    wait_until(lambda: m.merged_nameservers() == ["192.0.2.53"], timeout=20, what="merged resolvers")

    table = m.netctl("get", "addressspecs", "-n", "network-config").stdout.splitlines()
    assert table[0].split() == ["NODE", "NAMESPACE", "TYPE", "ID", "VERSION"]
    rows = [r.split() for r in table[1:]]
    assert ["api1", "network-config", "AddressSpec", "configuration/eth0/192.0.2.10/24"] in [
        r[:4] for r in rows
    ]

    docs = m.json("AddressSpec", "eth0/192.0.2.10/24")  # singular alias, case-insensitive, one id
    assert len(docs) == 1
    d = docs[0]
    assert d["node"] == "api1"
    assert d["metadata"]["type"] == "AddressSpecs.net.talos.dev" and d["metadata"]["namespace"] == "network"
    assert d["spec"]["address"] == "192.0.2.10/24" and d["spec"]["linkName"] == "eth0"

    yaml_out = m.netctl("get", "machineconfig", "-o", "yaml").stdout
    assert yaml_out.startswith("node: api1\nmetadata:\n    namespace: config\n")
    assert "hostname: api1" in yaml_out

    rd = m.netctl("get", "rd").stdout
    assert "ResourceDefinition" in rd and "addressspecs.net.talos.dev" in rd
    ns_ids = {line.split()[3] for line in m.netctl("get", "namespaces").stdout.splitlines()[1:]}
    assert {"meta", "network", "network-config", "config"} <= ns_ids

    r = m.netctl("get", "addressspecs", "eth0/203.0.113.1/24", check=False)
    assert r.returncode == 1 and r.stdout == ""
    assert (
        r.stderr
        == "netctl: resource AddressSpecs.net.talos.dev(network/eth0/203.0.113.1/24) does not exist\n"
    )
    r = m.netctl("get", "adresspecs", check=False)
    assert r.returncode == 1
    assert r.stderr == "netctl: resource type 'adresspecs' is not registered (did you mean 'addressspecs'?)\n"

    dot = m.netctl("inspect", "dependencies").stdout
    assert dot.startswith("digraph dependencies {") and "network.ResolverMergeController" in dot
    assert "NODE: api1" in m.netctl("version").stdout
    assert m.stop() == 0
    r = m.netctl("get", "rd", check=False)
    assert r.returncode == 1 and r.stderr.startswith("netctl: machined is not running")
    assert "Traceback" not in r.stderr


class Lines:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.q: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        out = proc.stdout
        threading.Thread(target=lambda: [self.q.put(x) for x in out], daemon=True).start()

    def until(self, pred: Any, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.q.get(timeout=max(0.01, deadline - time.monotonic())).rstrip("\n")
            if pred(line):
                return line


def test_watch_follows_an_applied_config(lab: Lab) -> None:
    node = lab.node("w1", hostname="api1")
    lab.stub(node, "eth0")
    m = Machined(node)
    wait_until(lambda: m.merged_nameservers() == ["192.0.2.53"], timeout=20, what="merged resolvers")
    watch = node.popen(
        [NETCTL, "get", "resolverspecs", "-n", "network-config", "-w", "--endpoint", m.api],
        stdout=subprocess.PIPE, stderr=None,
    )  # fmt: skip
    lines = Lines(watch)
    assert lines.until(lambda x: x.startswith("*")).split()[:6] == [
        "*",
        "NODE",
        "NAMESPACE",
        "TYPE",
        "ID",
        "VERSION",
    ]
    lines.until(
        lambda x: x.split()[:5] == ["+", "api1", "network-config", "ResolverSpec", "configuration/resolvers"]
    )
    new = node.dir / "new.yaml"
    new.write_text(with_nameserver("192.0.2.54"))
    assert m.netctl("apply-config", str(new)).stdout == "applied\n"
    row = lines.until(lambda x: "configuration/resolvers" in x)
    assert row.startswith(" ")  # updated: blank mark
    watch.kill()

    watch = node.popen(
        [NETCTL, "get", "hostnamespecs", "-w", "-o", "json", "--endpoint", m.api],
        stdout=subprocess.PIPE,
        stderr=None,
    )
    lines = Lines(watch)
    first = json.loads(lines.until(lambda x: x.startswith("{")))
    assert first["event"] == "created" and list(first) == ["node", "event", "metadata", "spec"]
    watch.kill()


def test_watch_sees_an_address_added_by_hand(lab: Lab) -> None:
    """Needs the AddressStatus controller wired into machined."""
    node = lab.node("w2", hostname="api1")
    lab.stub(node, "eth0")
    m = Machined(node)
    node.sh("ip link set eth0 up")
    watch = node.popen(
        [NETCTL, "get", "addresses", "-w", "-o", "json", "--endpoint", m.api],
        stdout=subprocess.PIPE,
        stderr=None,
    )
    lines = Lines(watch)
    node.sh("ip addr add 198.51.100.7/24 dev eth0")
    doc = json.loads(lines.until(lambda x: "198.51.100.7/24" in x and '"created"' in x))
    assert doc["metadata"]["id"] == "eth0/198.51.100.7/24"
    assert doc["metadata"]["type"] == "AddressStatuses.net.talos.dev"
    node.sh("ip addr del 198.51.100.7/24 dev eth0")
    doc = json.loads(lines.until(lambda x: "198.51.100.7/24" in x and '"destroyed"' in x))
    assert doc["event"] == "destroyed"
    watch.kill()


def test_apply_config_now_and_refusing_an_invalid_one(lab: Lab) -> None:
    node = lab.node("a1", hostname="api1")
    lab.stub(node, "eth0")
    m = Machined(node)
    wait_until(lambda: m.merged_nameservers() == ["192.0.2.53"], timeout=20, what="merged resolvers")

    new = node.dir / "new.yaml"
    new.write_text(with_nameserver("192.0.2.99"))
    r = m.netctl("apply-config", str(new), "--mode", "no-reboot")
    assert r.stdout == "applied\n"
    wait_until(lambda: m.merged_nameservers() == ["192.0.2.99"], timeout=20, what="new nameserver")
    assert m.config.read_text() == new.read_text()  # written back to --config
    wait_until(
        lambda: "192.0.2.99" in (node.etc_dir / "resolv.conf").read_text(), timeout=20, what="resolv.conf"
    )

    bad = node.dir / "bad.yaml"
    bad.write_text(
        "version: v1alpha1\nmachine:\n  network:\n    interfaces:\n"
        "      - interface: eth0\n        addresses: [10.0.0.1/255.255.255.0]\n"
        "        vlans:\n          - vlanId: 5000\n"
    )
    before = m.config.read_text()
    mc_before = m.json("machineconfig")[0]["metadata"]["version"]
    r = m.netctl("apply-config", str(bad), check=False)
    assert r.returncode == 1 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert any(x.startswith("v1alpha1: machine.network.interfaces[0].addresses[0]:") for x in lines)
    assert any(x.startswith("v1alpha1: machine.network.interfaces[0].vlans[0].vlanId:") for x in lines)
    assert "Traceback" not in r.stderr
    assert m.config.read_text() == before
    assert m.json("machineconfig")[0]["metadata"]["version"] == mc_before
    assert m.merged_nameservers() == ["192.0.2.99"]


def test_try_rolls_back_unless_confirmed(lab: Lab) -> None:
    node = lab.node("t1", hostname="api1")
    lab.stub(node, "eth0")
    m = Machined(node)
    wait_until(lambda: m.merged_nameservers() == ["192.0.2.53"], timeout=20, what="merged resolvers")
    original = m.config.read_text()
    try_file = node.state_dir / "config.try.yaml"
    new = node.dir / "new.yaml"
    new.write_text(with_nameserver("192.0.2.77"))

    # 1. not confirmed: rolled back after 5 s
    t0 = time.monotonic()
    r = m.netctl("apply-config", str(new), "--mode", "try", "--timeout", "5s")
    assert r.stdout.startswith("applied in try mode; rolls back at ") and r.stdout.endswith(
        " unless confirmed\n"
    )
    wait_until(lambda: m.merged_nameservers() == ["192.0.2.77"], timeout=5, what="tried nameserver")
    assert try_file.read_text() == new.read_text()
    assert m.config.read_text() == original  # not written before confirmation
    wait_until(lambda: m.merged_nameservers() == ["192.0.2.53"], timeout=15, what="rolled back")
    assert time.monotonic() - t0 >= 4.5
    assert not try_file.exists() and m.config.read_text() == original

    # 2. confirmed: kept and written
    m.netctl("apply-config", str(new), "--mode", "try", "--timeout", "5s")
    assert m.netctl("apply-config", "--confirm").stdout == "confirmed\n"
    time.sleep(6)
    assert m.merged_nameservers() == ["192.0.2.77"]
    assert m.config.read_text() == new.read_text() and not try_file.exists()
    r = m.netctl("apply-config", "--confirm", check=False)
    assert r.returncode == 1 and r.stderr.startswith("netctl: no config applied in try mode")

    # 3. a restart while a try is pending: the previous config wins
    newer = node.dir / "newer.yaml"
    newer.write_text(with_nameserver("192.0.2.88"))
    m.netctl("apply-config", str(newer), "--mode", "try", "--timeout", "1m")
    wait_until(lambda: m.merged_nameservers() == ["192.0.2.88"], timeout=10, what="tried nameserver")
    assert m.stop() == 0
    assert try_file.exists()
    m.start()
    wait_until(lambda: m.merged_nameservers() == ["192.0.2.77"], timeout=20, what="rolled back by restart")
    assert not try_file.exists() and m.config.read_text() == new.read_text()


def test_the_socket_is_root_only(lab: Lab) -> None:
    node = lab.node("p1", hostname="api1")
    m = Machined(node, api="/run/machined/machined.sock")  # the default path, the node's own /run
    assert node.sh("stat -c %a /run/machined/machined.sock").strip() == "600"
    ok = node.run([NETCTL, "get", "rd"])  # root, default endpoint
    assert "ResourceDefinition" in ok.stdout
    as_nobody = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups"]
    r = node.run([*as_nobody, NETCTL, "get", "rd"], check=False)
    assert r.returncode == 1 and r.stdout == ""
    assert (
        r.stderr == "netctl: permission denied on /run/machined/machined.sock: the machined API needs root\n"
    )
    # the directory is not what stops nobody: the socket's own mode is
    assert node.run([*as_nobody, "test", "-x", "/run/machined"], check=False).returncode == 0
    m.stop()


def _pki(directory: Path) -> None:
    path = Path(__file__).resolve().parent.parent / "unit" / "test_api_tls.py"
    spec = importlib.util.spec_from_file_location("api_tls_helpers", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.make_pki(directory)
    mod.make_pki(directory, "other", ("intruder",))


def test_tcp_needs_a_client_certificate_from_the_ca(lab: Lab) -> None:
    node = lab.node("tls1", hostname="api1")
    d = node.dir / "pki"
    d.mkdir()
    _pki(d)
    tls = [
        "--tls-cert",
        str(d / "server.crt"),
        "--tls-key",
        str(d / "server.key"),
        "--tls-ca",
        str(d / "ca.crt"),
    ]
    m = Machined(node, CONFIG, "--listen-tcp", "127.0.0.1:50000", *tls)
    ep = ["--endpoint", "tcp://127.0.0.1:50000", "--tls-ca", str(d / "ca.crt")]
    good = node.run(
        [NETCTL, "get", "ns", *ep, "--tls-cert", str(d / "client.crt"), "--tls-key", str(d / "client.key")]
    )
    assert "network-config" in good.stdout
    for creds in ([], ["--tls-cert", str(d / "intruder.crt"), "--tls-key", str(d / "intruder.key")]):
        r = node.run([NETCTL, "get", "ns", *ep, *creds], check=False)
        assert r.returncode == 1 and r.stdout == ""
        assert r.stderr.startswith("netctl: cannot connect to 127.0.0.1:50000") and r.stderr.count("\n") == 1
    m.stop()


def test_bad_tls_files_stop_machined_before_it_touches_anything(lab: Lab) -> None:
    node = lab.node("tls2", hostname="api1")
    lab.stub(node, "eth0")
    cfg = node.dir / "config.yaml"
    cfg.write_text(CONFIG)
    r = node.run(
        [
            MACHINED, "--config", str(cfg), "--state-dir", str(node.state_dir),
            "--etc-dir", str(node.etc_dir), "--api", str(node.dir / "api.sock"),
            "--listen-tcp", "127.0.0.1:50001",
            "--tls-cert", "/nonexistent.crt", "--tls-key", "/nonexistent.key", "--tls-ca", "/nonexistent.ca",
        ],
        check=False, timeout=60,
    )  # fmt: skip
    assert r.returncode == 1
    assert "cannot read --tls-key /nonexistent.key" in r.stderr and "Traceback" not in r.stderr
    global_addrs = [
        a for link in node.ip_json("addr") for a in link.get("addr_info", []) if a["scope"] == "global"
    ]
    assert global_addrs == []
    assert list(node.etc_dir.iterdir()) == []  # no controller ran: resolv.conf and hosts not written


def test_reset_removes_what_the_node_applied(lab: Lab) -> None:
    """Needs the AddressSpecController wired into machined (it applies and undoes the address)."""
    node = lab.node("r1", hostname="api1")
    lab.stub(node, "eth0")
    node.sh("ip addr add 203.0.113.5/24 dev eth0")  # foreign: must survive the reset
    m = Machined(node)

    def addrs() -> set[str]:
        return {f"{a['local']}/{a['prefixlen']}" for link in node.ip_json("addr", "show", "dev", "eth0")
                for a in link.get("addr_info", [])}  # fmt: skip

    wait_until(lambda: "192.0.2.10/24" in addrs(), timeout=30, what="address applied")
    r = m.netctl("reset")
    assert (r.returncode, r.stdout) == (0, "reset\n")
    assert m.proc is not None
    assert m.proc.wait(timeout=15) == 0  # machined stops after a reset
    assert "192.0.2.10/24" not in addrs()
    assert "203.0.113.5/24" in addrs()
    lo = node.ip_json("addr", "show", "dev", "lo")[0]
    assert "UP" in lo["flags"] and "127.0.0.1" in [a["local"] for a in lo["addr_info"]]  # the loopback stays


def test_leave_on_sigterm_resets_too(lab: Lab) -> None:
    """machined --leave: SIGTERM tears down like netctl reset. Needs the AddressSpecController wired."""
    node = lab.node("r2", hostname="api1")
    lab.stub(node, "eth0")
    m = Machined(node, CONFIG, "--leave")

    def addrs() -> set[str]:
        return {f"{a['local']}/{a['prefixlen']}" for link in node.ip_json("addr", "show", "dev", "eth0")
                for a in link.get("addr_info", [])}  # fmt: skip

    wait_until(lambda: "192.0.2.10/24" in addrs(), timeout=30, what="address applied")
    assert m.stop() == 0
    assert "192.0.2.10/24" not in addrs()
