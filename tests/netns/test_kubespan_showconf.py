"""`netctl kubespan showconf` for real (issue 13 item 3): a machine that is not a node joins the
KubeSpan mesh of a `netctl cluster` and pings every node over it.

A 3-node cluster in one site with KubeSpan (netctl.cluster, under a short private state dir,
named after the test process). showconf asks n1's API; its KubeSpanPeerConfig is added to every
node's config with `netctl apply-config`; a plain namespace "laptop" on the internet switch
(203.0.113.200, as an outside machine would be) brings the wg-quick file up with `wg-quick up`
and wireguard-go (in its own mount namespace: tmpfs on /var/run/wireguard), then pings every
node's KubeSpan address, and a node pings the laptop back (the nodes' static peer, reached at
the endpoint the document gives). Everything is removed afterwards, also when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import wait_until

from netctl.cluster import ClusterNotFound, ClusterRecord, destroy, enter_node
from netctl.cluster import create as create_cluster
from netctl.cluster.provision import BRIDGE

NETCTL = str(Path(sys.executable).parent / "netctl")
LAPTOP_IP = "203.0.113.200"
LAPTOP_PORT = 51820
DEADLINE = 45.0  # 3 Python daemons and discovery on 2 cores


def _run(argv: list[str], *, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and r.returncode != 0:
        raise AssertionError(f"{argv} exited {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}")
    return r


def get(record: ClusterRecord, node: str, type_: str) -> list[dict[str, Any]]:
    r = _run([NETCTL, "get", type_, "-o", "json", "--endpoint", str(record.api_socket(node))], check=False)
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()] if r.returncode == 0 else []


class Laptop:
    """A plain namespace on the cluster's internet switch; `close` kills what runs in it."""

    def __init__(self, record: ClusterRecord) -> None:
        self.netns = f"lap{os.getpid()}"
        self.port = f"lap{os.getpid()}"[:15]
        self.switch = record.plan.internet_netns
        _run(["ip", "netns", "add", self.netns])
        _run(["ip", "-n", self.switch, "link", "add", self.port, "type", "veth", "peer", "name", "eth0",
              "netns", self.netns])  # fmt: skip
        _run(["ip", "-n", self.switch, "link", "set", self.port, "master", BRIDGE, "up"])
        for args in (["link", "set", "lo", "up"], ["link", "set", "eth0", "up"],
                     ["addr", "add", f"{LAPTOP_IP}/24", "dev", "eth0"]):  # fmt: skip
            _run(["ip", "-n", self.netns, *args])

    def run(self, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        return _run(["ip", "netns", "exec", self.netns, *argv], **kw)

    def wg_quick_up(self, conf: Path) -> str:
        """`wg-quick up` with wireguard-go, in a private mount namespace whose tmpfs holds the
        UAPI socket (wireguard-go stays there, detached, until `close`)."""
        script = (
            "set -e; mount -t tmpfs -o mode=0755 tmpfs /var/run/wireguard; "
            f"WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go wg-quick up {conf}"
        )
        Path("/var/run/wireguard").mkdir(parents=True, exist_ok=True)
        argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script]
        r = self.run(argv, check=True)
        return r.stdout + r.stderr

    def pids(self) -> list[int]:
        r = _run(["ip", "netns", "pids", self.netns], check=False)
        return [int(p) for p in r.stdout.split()]

    def close(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not self.pids(), timeout=10, what=f"processes in {self.netns} gone")
        _run(["ip", "netns", "del", self.netns], check=False)
        _run(["ip", "-n", self.switch, "link", "del", self.port], check=False)


@pytest.fixture
def cluster(lab_session: None) -> Iterator[ClusterRecord]:
    root = Path(tempfile.mkdtemp(prefix=f"ks{os.getpid()}-"))
    name = f"s{os.getpid()}"
    try:
        yield create_cluster(name, nodes=3, sites=1, kubespan=True, state_dir=root)
    finally:
        errors: list[str] = []
        with contextlib.suppress(ClusterNotFound):
            errors = destroy(name, root)
        shutil.rmtree(root, ignore_errors=True)
    assert not errors, f"cluster cleanup incomplete: {errors}"


def _mesh_ready(record: ClusterRecord) -> bool:
    """n1 knows both peers, advertises its public endpoint, and every node's peers are up."""
    ident = get(record, "n1", "kubespanidentities")
    if not ident:
        return False
    key = ident[0]["spec"]["publicKey"]
    local = [
        a
        for a in get(record, "n1", "affiliates")
        if (a["spec"].get("kubespan") or {}).get("publicKey") == key
    ]
    if not local or not any(e.startswith("203.0.113.") for e in local[0]["spec"]["kubespan"]["endpoints"]):
        return False
    return all(
        len(s := get(record, n, "kubespanpeerstatuses")) == 2 and all(x["spec"]["state"] == "up" for x in s)
        for n in ("n1", "n2", "n3")
    )


def test_a_namespace_joins_the_mesh_and_pings_every_node(cluster: ClusterRecord, tmp_path: Path) -> None:
    record = cluster
    wait_until(lambda: _mesh_ready(record), timeout=DEADLINE, interval=0.5, what="KubeSpan mesh up")
    api = str(record.api_socket("n1"))

    # printed: both documents, clearly separated; the private key only in the wg-quick part
    out = _run([NETCTL, "kubespan", "showconf", "--node", api, "--name", "laptop"]).stdout
    conf_part, _, doc_part = out.partition("# ---- laptop-peer.yaml")
    assert "[Interface]" in conf_part and "PrivateKey = " in conf_part and conf_part.count("[Peer]") == 3
    assert "kind: KubeSpanPeerConfig" in doc_part and "PrivateKey" not in doc_part

    # written: <name>.conf 0600 and <name>-peer.yaml
    out_dir = tmp_path / "out"
    _run([NETCTL, "kubespan", "showconf", "--node", api, "--name", "laptop",
          "--endpoint", f"{LAPTOP_IP}:{LAPTOP_PORT}", "--out-dir", str(out_dir)])  # fmt: skip
    conf, doc = out_dir / "laptop.conf", out_dir / "laptop-peer.yaml"
    assert conf.stat().st_mode & 0o777 == 0o600
    text = conf.read_text()
    (address,) = re.findall(r"^Address = (\S+)/128$", text, re.M)
    assert f"ListenPort = {LAPTOP_PORT}" in text
    assert f'endpoint: "{LAPTOP_IP}:{LAPTOP_PORT}"' in doc.read_text()

    # --key-file: the same key, so the same address and document
    (private,) = re.findall(r"^PrivateKey = (\S+)$", text, re.M)
    key_file = tmp_path / "laptop.key"
    key_file.write_text(private + "\n")
    again = tmp_path / "again"
    _run([NETCTL, "kubespan", "showconf", "--node", api, "--name", "laptop", "--key-file", str(key_file),
          "--endpoint", f"{LAPTOP_IP}:{LAPTOP_PORT}", "--out-dir", str(again)])  # fmt: skip
    assert (again / "laptop-peer.yaml").read_text() == doc.read_text()

    # every node gets the static peer through its own API
    laptop_key = re.findall(r'^publicKey: "(\S+)"$', doc.read_text(), re.M)[0]
    for n in ("n1", "n2", "n3"):
        new = tmp_path / f"{n}.yaml"
        new.write_text(record.config_path(n).read_text().rstrip("\n") + "\n---\n" + doc.read_text())
        _run([NETCTL, "apply-config", str(new), "--endpoint", str(record.api_socket(n))])

        def has_peer(node: str = n) -> bool:
            r = _run(enter_node(record, node, ["wg", "show", "kubespan", "peers"]), check=False)
            return laptop_key in r.stdout.split()

        wait_until(has_peer, timeout=DEADLINE, interval=0.3, what=f"{n} adding the laptop peer")

    addresses = {
        n: get(record, n, "kubespanidentities")[0]["spec"]["address"].split("/")[0]
        for n in ("n1", "n2", "n3")
    }
    laptop = Laptop(record)
    try:
        shown = laptop.wg_quick_up(conf)
        assert "wireguard-go" in shown, shown
        for n, ip in addresses.items():

            def pings(ip: str = ip) -> bool:
                return laptop.run(["ping", "-c", "1", "-W", "1", ip], check=False).returncode == 0

            wait_until(pings, timeout=20, interval=0.2, what=f"laptop pinging {n} at {ip} over KubeSpan")
        dump = laptop.run(["ip", "-6", "route", "get", addresses["n2"]]).stdout
        assert "dev laptop" in dump, dump  # through the tunnel, not the underlay
        # and back: a node reaches the laptop's address through its kubespan link
        r = _run(enter_node(record, "n3", ["ping", "-c", "1", "-W", "2", address]), check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        route = _run(enter_node(record, "n3", ["ip", "-6", "route", "get", address])).stdout
        assert "kubespan" in route, route
    finally:
        laptop.close()
