"""`netctl cluster create|show|destroy` for real: namespaces, NAT routers, machined, discovery.

Each test makes its own clusters, named after the test process (``t<pid><letter>``) so that
concurrent runs never share one, under a short private ``--state-dir`` (the API socket path
must fit a unix socket address). A fixture destroys whatever a test made, also when it fails.

Proven:
- 3 nodes in 1 site; one node's machined stopped (`show` says so) and restarted;
- 4 nodes in 2 sites: every node lists all 4 as members through its own API; a node reaches
  the other site's nodes at their public addresses but not at their private ones; `show`
  prints the nodes with their addresses; `destroy` leaves no namespace, process, mount, link
  or file;
- with ``--kubespan`` the configs enable it and every daemon starts (peering is KubeSpan's
  own tests' business); `show` prints a peer section per node;
- two clusters side by side, each seeing only its own nodes; destroying one leaves the other;
- `create` killed with SIGKILL half-way (before any process, after some, and with its record
  deleted as well): `destroy` still removes everything.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import wait_until

from netctl.cluster import (
    ClusterNotFound,
    ClusterRecord,
    destroy,
    enter_node,
    load,
    restart_machined,
    stop_machined,
)
from netctl.cluster import create as create_cluster
from netctl.cluster.state import ROLE_MACHINED

BIN = Path(sys.executable).parent
NETCTL = str(BIN / "netctl")
NETNS_DIR = Path("/run/netns")
MEMBERS_DEADLINE = 30.0  # 2 s each on an idle machine; 4-6 Python daemons share 2 cores here


class Clusters:
    """Names and state dir of the clusters one test makes; `close` destroys them all."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"nc{os.getpid()}-"))
        self.names: list[str] = []
        self._seq = iter("abcdefghijklmnopqrstuvwxyz")

    def name(self) -> str:
        n = f"t{os.getpid()}{next(self._seq)}"
        self.names.append(n)
        return n

    def netctl(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        argv = [NETCTL, "cluster", *args, "--state-dir", str(self.root)]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if check and r.returncode != 0:
            raise AssertionError(f"{argv} exited {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}")
        return r

    def create(self, name: str, *args: str) -> ClusterRecord:
        self.netctl("create", "--name", name, *args)
        return load(name, self.root)

    def close(self) -> list[str]:
        errors = []
        for n in self.names:
            with contextlib.suppress(ClusterNotFound):
                errors += destroy(n, self.root)
        shutil.rmtree(self.root, ignore_errors=True)
        return errors


@pytest.fixture
def clusters(lab_session: None) -> Iterator[Clusters]:
    made = Clusters()
    try:
        yield made
    finally:
        errors = made.close()
    assert not errors, f"cluster cleanup incomplete: {errors}"


# ---- observations --------------------------------------------------------------------------


def get(record: ClusterRecord, node: str, type_: str) -> list[dict[str, Any]]:
    argv = [NETCTL, "get", type_, "-o", "json", "--endpoint", str(record.api_socket(node))]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if r.returncode != 0:
        return []
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def members(record: ClusterRecord, node: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["id"]: m["spec"] for m in get(record, node, "members")}


def wait_members(record: ClusterRecord) -> None:
    want = {n.name for n in record.plan.nodes}
    for n in record.plan.nodes:

        def complete(node: str = n.name) -> bool:
            return set(members(record, node)) == want

        wait_until(
            complete,
            timeout=MEMBERS_DEADLINE,
            interval=0.3,
            what=f"{n.name} listing members {sorted(want)}",
        )


def pings(record: ClusterRecord, node: str, ip: str) -> bool:
    argv = enter_node(record, node, ["ping", "-c", "1", "-W", "1", ip])
    return subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode == 0


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def host_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def leftovers(root: Path, name: str, pids: set[int]) -> list[str]:
    """Whatever of cluster `name` still exists on the host."""
    directory = root / name
    found = [f"netns {n}" for n in sorted(os.listdir(NETNS_DIR)) if n.startswith(f"c-{name}-")]
    found += [f"pid {p}" for p in sorted(pids) if alive(p)]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = (
                Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )
        except OSError:
            continue
        if str(directory) + "/" in cmdline and alive(int(entry)):
            found.append(f"process {entry}: {cmdline.strip()}")
    with open("/proc/self/mountinfo") as f:
        found += [f"mount {line.split()[4]}" for line in f if f"c-{name}-" in line or str(directory) in line]
    if directory.exists():
        found.append(f"dir {directory}")
    return found


def recorded_pids(record: ClusterRecord) -> set[int]:
    return {p.pid for p in record.processes}


# ---- tests -----------------------------------------------------------------------------------


def test_four_nodes_two_sites(clusters: Clusters) -> None:
    links_before = host_links()
    name = clusters.name()
    r = clusters.netctl("create", "--name", name, "--nodes", "4", "--sites", "2")
    record = load(name, clusters.root)
    for n in record.plan.nodes:
        # the exact command line to reach each node's API
        assert f"{NETCTL} get members --endpoint {record.api_socket(n)}" in r.stdout
    assert record.phase == "ready"
    assert [(n.name, n.site) for n in record.plan.nodes] == [("n1", 1), ("n2", 1), ("n3", 2), ("n4", 2)]

    wait_members(record)
    m = members(record, "n4")
    assert m["n1"]["addresses"] == ["10.1.0.11"]
    assert m["n1"]["machineType"] == "controlplane"
    assert m["n3"]["hostname"] == "n3"

    n1, n2, n3, _ = record.plan.nodes
    assert pings(record, "n1", n2.private_ip)  # same site: private
    assert pings(record, "n1", n3.public) and pings(record, "n3", n1.public)
    assert pings(record, "n1", n2.public)  # hairpin through the site router
    assert not pings(record, "n1", n3.private_ip)
    assert not pings(record, "n4", n2.private_ip)

    show = clusters.netctl("show", "--name", name).stdout
    for n in record.plan.nodes:
        line = next(ln for ln in show.splitlines() if ln.startswith(n.name + " "))
        for want in (str(n.site), n.private, n.public, "running", "n1,n2,n3,n4", str(record.api_socket(n))):
            assert want in line, (want, line)
    assert "discovery-service: running" in show
    assert "kubespan peers" not in show

    # the configs and logs live where the record says
    assert "203.0.113.254:3000" in record.config_path("n2").read_text()
    assert (record.node_dir("n2") / "machined.log").stat().st_size > 0

    pids = recorded_pids(record)
    assert all(alive(p) for p in pids)
    out = clusters.netctl("destroy", "--name", name).stdout
    assert f"cluster {name} destroyed" in out
    assert leftovers(clusters.root, name, pids) == []
    assert host_links() == links_before
    r = clusters.netctl("destroy", "--name", name, check=False)
    assert r.returncode == 1 and "no cluster" in r.stderr


def test_three_nodes_one_site_and_a_machined_restart(clusters: Clusters) -> None:
    name = clusters.name()
    record = clusters.create(name, "--nodes", "3")
    assert [(n.name, n.site, n.private) for n in record.plan.nodes] == [
        ("n1", 1, "10.1.0.11/24"),
        ("n2", 1, "10.1.0.12/24"),
        ("n3", 1, "10.1.0.13/24"),
    ]
    wait_members(record)
    assert pings(record, "n2", record.plan.node("n3").public)

    # the Python API the demo uses: a node's machined down, then back
    stop_machined(record, "n3")
    show = clusters.netctl("show", "--name", name).stdout
    line = next(ln for ln in show.splitlines() if ln.startswith("n3 "))
    assert "stopped" in line and "n/a" in line
    restart_machined(record, "n3")
    assert load(name, clusters.root).process(ROLE_MACHINED, "n3") == record.process(ROLE_MACHINED, "n3")
    wait_members(record)

    pids = recorded_pids(record)
    clusters.netctl("destroy", "--name", name)
    assert leftovers(clusters.root, name, pids) == []


def test_kubespan_configs_and_daemons(clusters: Clusters) -> None:
    name = clusters.name()
    record = create_cluster(name, 4, 2, kubespan=True, state_dir=clusters.root)  # the Python API
    for n in record.plan.nodes:
        assert "kubespan:\n      enabled: true" in record.config_path(n).read_text()
    wait_members(record)
    wait_until(
        lambda: all(get(record, n.name, "kubespanidentities") for n in record.plan.nodes),
        timeout=MEMBERS_DEADLINE,
        what="a KubeSpan identity on every node",
    )
    show = clusters.netctl("show", "--name", name).stdout
    print(show)
    for n in record.plan.nodes:
        assert f"kubespan peers of {n.name}:" in show
    assert all(alive(p.pid) for p in record.processes)

    pids = recorded_pids(record)
    assert destroy(name, clusters.root) == []
    assert leftovers(clusters.root, name, pids) == []


def test_two_clusters_side_by_side(clusters: Clusters) -> None:
    a_name, b_name = clusters.name(), clusters.name()
    a = clusters.create(a_name, "--nodes", "2")
    b = clusters.create(b_name, "--nodes", "2", "--sites", "2")
    r = clusters.netctl("create", "--name", a_name, "--nodes", "2", check=False)
    assert r.returncode == 1 and "exists" in r.stderr

    wait_members(a)
    wait_members(b)
    # same node names, other addresses: each node sees its own cluster only
    assert members(a, "n1")["n2"]["addresses"] == ["10.1.0.12"]
    assert members(b, "n1")["n2"]["addresses"] == ["10.2.0.12"]

    listing = clusters.netctl("show").stdout
    assert f"cluster {a_name}:" in listing and f"cluster {b_name}:" in listing

    a_pids = recorded_pids(a)
    clusters.netctl("destroy", "--name", a_name)
    assert leftovers(clusters.root, a_name, a_pids) == []
    assert all(alive(p) for p in recorded_pids(b))
    assert pings(b, "n1", b.plan.node("n2").public)
    assert set(members(b, "n2")) == {"n1", "n2"}
    b_pids = recorded_pids(b)
    clusters.netctl("destroy", "--name", b_name)
    assert leftovers(clusters.root, b_name, b_pids) == []


def _record_or_none(root: Path, name: str) -> ClusterRecord | None:
    try:
        return load(name, root)
    except Exception:
        return None


@pytest.mark.parametrize("when", ["namespaces", "machined", "machined-record-lost"])
def test_destroy_after_create_killed(clusters: Clusters, when: str) -> None:
    """SIGKILL to `create` (no chance to roll back), then `destroy` from the record, or from
    the namespace names alone when the record is gone too."""
    name = clusters.name()
    argv = [NETCTL, "cluster", "create", "--name", name, "--nodes", "4", "--sites", "2"]
    proc = subprocess.Popen(
        [*argv, "--state-dir", str(clusters.root)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        if when == "namespaces":
            wait_until(lambda: (NETNS_DIR / f"c-{name}-r1").exists(), timeout=60, interval=0.01, what="r1")
        else:

            def machined_started() -> bool:
                rec = _record_or_none(clusters.root, name)
                return rec is not None and rec.process(ROLE_MACHINED, "n2") is not None

            wait_until(machined_started, timeout=60, interval=0.01, what="machined of n2 recorded")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    time.sleep(0.2)  # the `ip` it may have been running finishes on its own
    rec = _record_or_none(clusters.root, name)
    assert rec is not None and rec.phase == "creating"
    pids = recorded_pids(rec)
    if when == "machined":
        assert any(alive(p) for p in pids)  # detached: they outlived `create`
    if when == "machined-record-lost":
        rec.path.unlink()
    assert any(n.startswith(f"c-{name}-") for n in os.listdir(NETNS_DIR))

    out = clusters.netctl("destroy", "--name", name).stdout
    assert f"cluster {name} destroyed" in out
    assert leftovers(clusters.root, name, pids) == []


def test_ctrl_c_during_create_leaves_nothing(clusters: Clusters) -> None:
    """SIGINT (the terminal's Ctrl-C) half-way: `create` removes what it made and exits 130."""
    name = clusters.name()
    argv = [NETCTL, "cluster", "create", "--name", name, "--nodes", "4", "--sites", "2"]
    proc = subprocess.Popen(
        [*argv, "--state-dir", str(clusters.root)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    pids: set[int] = set()

    def machined_started() -> bool:
        rec = _record_or_none(clusters.root, name)
        if rec is not None:
            pids.update(recorded_pids(rec))
        return rec is not None and rec.process(ROLE_MACHINED, "n1") is not None

    try:
        wait_until(machined_started, timeout=60, interval=0.01, what="machined of n1 recorded")
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "removed" in err
    assert leftovers(clusters.root, name, pids) == []
