"""Cluster discovery end to end: real machined processes in nodes, a real ``discovery-service``.

One topology for the module (kubespan.md §10 lab, without KubeSpan): switch ``sw``; nodes n1..n3
(``10.0.0.N/24``, hostname ``nN``, n1 a control-plane node) and later n4 (another cluster) and
n5 (right cluster ID, wrong secret); the service alone in node ``ds`` on ``10.0.0.254:3000``
(plaintext, config endpoint ``http://10.0.0.254:3000``). Timers are shortened through
``NETD_TUNABLES`` (TTL 6 s, so a refresh every 3 s) and the service's ``--gc-interval``.

Proven, in order (the tests share the nodes and run in file order):
- every node lists the other two as members within 2 s of its start (asserted with a 3x margin,
  the measured figure is printed), with the right addresses, hostnames, machine types, OS; the
  ``netctl get`` aliases of identities / affiliates (both namespaces) / members / discoveryconfigs /
  kubespanconfigs work, and the secret-holding definitions are flagged sensitive;
- a second cluster on the same service and a node with the right ID but the wrong secret see
  nothing of the first cluster, and it sees nothing of them;
- a service restart with ``--state-file`` keeps every member on every node throughout; an empty
  restart (no state file) makes them come back within one refresh;
- a node killed with SIGKILL disappears from the others after the TTL (+ GC), not before;
- ``netctl reset`` removes a node from the others at once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Lab, Machined, Node, wait_until
from harness.daemons import ServiceWorld
from harness.daemons import listening as daemon_listening

BIN = Path(sys.executable).parent
MACHINED = str(BIN / "machined")
NETCTL = str(BIN / "netctl")
SERVICE = str(BIN / "discovery-service")

CLUSTER_ID = "8XuV9TZHW08DOk3bVxQjH9ih_TBKjnh-j44tsCLSBzo="
SECRET = "kCQsKr4B28VUl7qw1sVkTDNF9fFH++ViIuKsss+C6kc="
OTHER_ID = "v16UCWpO2iOm82n6F8dGCJ41ZXXBvDrjRDs2su7C_zs="
OTHER_SECRET = "I+1In7fLnpcRIjUmEoeugZnSyFoTF6MztLxICL5Yu0s="
SERVICE_IP = "10.0.0.254"
ENDPOINT = f"http://{SERVICE_IP}:3000"
TTL = 6.0
GC = 1.0
MEMBERS_DEADLINE = 2.0  # the "within 2 s of start"
MARGIN = 3.0  # decisions.md: functional deadlines with a >= 3x margin


def config(i: int, *, cluster_id: str = CLUSTER_ID, secret: str = SECRET, mtype: str = "worker") -> str:
    return f"""version: v1alpha1
machine:
  type: {mtype}
  network:
    hostname: n{i}
    interfaces:
      - interface: eth0
        addresses: [10.0.0.{i}/24, fd00:10::{i}/64]
cluster:
  id: {cluster_id}
  secret: {secret}
  discovery:
    enabled: true
    registries:
      kubernetes:
        disabled: true
      service:
        endpoint: {ENDPOINT}
"""


def listening(node: Node, port: int) -> bool:
    return daemon_listening(node, SERVICE_IP, port)


class World(ServiceWorld):
    def __init__(self, lab: Lab, tmp: Path) -> None:
        super().__init__(lab, tmp, SERVICE_IP, {"DISCOVERY_TTL": TTL}, gc=GC)


@pytest.fixture(scope="module")
def world(lab_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    lab = Lab()
    try:
        yield World(lab, tmp_path_factory.mktemp("discovery"))
    finally:
        errors = lab.close()
        left = lab.leftovers()
    assert not errors and not left, f"lab cleanup incomplete: errors={errors} leftovers={left}"


def member_names(m: Machined) -> set[str]:
    return set(m.members())


class MemberWatch(threading.Thread):
    """``netctl get members -w -o json`` on one node, from the moment its API answers: records when
    the member set first equals ``want`` (a stream, so measuring costs no polling CPU)."""

    def __init__(self, m: Machined, want: set[str]) -> None:
        super().__init__(daemon=True)
        self.m = m
        self.want = want
        self.done: float | None = None
        self.stopped = False
        self.proc: subprocess.Popen[str] | None = None

    def run(self) -> None:
        argv = [NETCTL, "get", "members", "-w", "-o", "json", "--endpoint", self.m.api]
        while not self.stopped and self.done is None:
            self.proc = self.m.node.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            assert self.proc.stdout is not None
            names: set[str] = set()
            for line in self.proc.stdout:
                ev = json.loads(line)
                if ev["event"] == "destroyed":
                    names.discard(ev["metadata"]["id"])
                else:
                    names.add(ev["metadata"]["id"])
                if names == self.want:
                    self.done = time.monotonic()
                    break
            self.proc.terminate()
            self.proc.wait()
            time.sleep(0.02)

    def stop(self) -> None:
        self.stopped = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
        self.join(timeout=10)


def test_three_nodes_see_each_other(world: World) -> None:
    world.service.start("--state-file", str(world.state_file))
    ms = [world.add(1, config(1, mtype="controlplane")), world.add(2, config(2)), world.add(3, config(3))]
    want = {"n1", "n2", "n3"}
    watches = [MemberWatch(m, want) for m in ms]
    for m, w in zip(ms, watches, strict=True):
        m.start()
        w.start()
    try:
        wait_until(
            lambda: all(w.done for w in watches),
            timeout=MEMBERS_DEADLINE * MARGIN * 2,
            what="3 members everywhere",
        )
    finally:
        for w in watches:
            w.stop()
    seen = {m.node.name: (w.done or 0) - m.started for m, w in zip(ms, watches, strict=True)}
    print("members complete after start: " + ", ".join(f"{k} {v:.2f}s" for k, v in sorted(seen.items())))
    assert max(seen.values()) < MEMBERS_DEADLINE * MARGIN, seen

    for m in ms:
        members = m.members()
        for i in (1, 2, 3):
            spec = members[f"n{i}"]
            assert spec["hostname"] == f"n{i}"
            assert spec["addresses"] == [f"10.0.0.{i}", f"fd00:10::{i}"]
            assert spec["machineType"] == ("controlplane" if i == 1 else "worker")
            assert spec["operatingSystem"].startswith("talos-netd (v")
            assert spec["nodeId"]
            assert ("controlPlane" in spec) == (i == 1)

    # identities, affiliates in both namespaces, config objects
    m1 = ms[0]
    ident = m1.get("identities")
    assert [r["metadata"]["id"] for r in ident] == ["local"]
    own = ident[0]["spec"]["nodeId"]
    assert 43 <= len(own) <= 45
    assert (m1.node.state_dir / "node-identity.yaml").read_text() == f"nodeId: {own}\n"
    assert oct((m1.node.state_dir / "node-identity.yaml").stat().st_mode & 0o777) == "0o600"
    affs = {r["metadata"]["id"]: r for r in m1.get("affiliates")}
    assert own in affs and len(affs) == 3
    assert affs[own]["metadata"]["owner"] == "cluster.LocalAffiliateController"
    raw = {r["metadata"]["id"] for r in m1.get("affiliates", "-n", "cluster-raw")}
    others = {a["spec"]["nodeId"] for k, a in affs.items() if k != own}
    assert raw == {f"service/{x}" for x in others}
    dc = m1.get("discoveryconfigs")[0]["spec"]
    assert dc["discoveryEnabled"] and dc["registryServiceEnabled"] and not dc["registryKubernetesEnabled"]
    assert dc["serviceEndpoint"] == f"{SERVICE_IP}:3000" and dc["serviceEndpointInsecure"] is True
    assert dc["serviceClusterID"] == CLUSTER_ID and dc["serviceEncryptionKey"] == SECRET
    ksc = m1.get("kubespanconfigs")[0]
    assert ksc["metadata"]["namespace"] == "kubespan" and ksc["spec"]["enabled"] is False
    assert m1.get("kubespanidentities") == []  # KubeSpan is off
    rds = {r["metadata"]["id"]: r["spec"] for r in m1.get("rd")}
    for t in ("discoveryconfigs.cluster.talos.dev", "kubespanconfigs.kubespan.talos.dev",
              "kubespanidentities.kubespan.talos.dev"):  # fmt: skip
        assert rds[t]["sensitivity"] == 1, t
    for t in ("affiliates.cluster.talos.dev", "members.cluster.talos.dev"):
        assert rds[t]["sensitivity"] == 0, t
    table = m1.netctl("get", "members").stdout
    header = table.splitlines()[0]
    assert all(col in header for col in ("HOSTNAME", "MACHINE TYPE", "OS", "ADDRESSES")), header


def test_other_clusters_stay_apart(world: World) -> None:
    m4 = world.add(4, config(4, cluster_id=OTHER_ID, secret=OTHER_SECRET))
    m5 = world.add(5, config(5, secret=OTHER_SECRET))  # right cluster ID, wrong secret
    m4.start()
    m5.start()
    wait_until(lambda: member_names(m4) == {"n4"}, timeout=30, what="n4 lists itself")
    wait_until(lambda: member_names(m5) == {"n5"}, timeout=30, what="n5 lists itself")
    # n5 publishes into the first cluster's record set: give it several refreshes to show up
    time.sleep(TTL)
    assert member_names(m4) == {"n4"} and member_names(m5) == {"n5"}
    assert m5.get("affiliates", "-n", "cluster-raw") == []
    for i in (1, 2, 3):
        assert member_names(world.nodes[i]) == {"n1", "n2", "n3"}
    for m in (m4, m5):
        m.netctl("reset")
        assert m.proc is not None and m.proc.wait(timeout=15) == 0


def watch_members(ms: list[Machined], want: set[str], seconds: float) -> list[str]:
    """Poll every node's members for ``seconds``; the deviations seen."""
    bad = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for m in ms:
            got = member_names(m)
            if got != want:
                bad.append(f"{m.node.name}: {sorted(got)}")
        time.sleep(0.1)
    return bad


def test_service_restart(world: World) -> None:
    ms = [world.nodes[i] for i in (1, 2, 3)]
    want = {"n1", "n2", "n3"}
    # with --state-file: nothing is lost, nobody notices
    world.service.stop()
    assert world.state_file.exists()
    world.service.start("--state-file", str(world.state_file))
    assert watch_members(ms, want, TTL) == []
    # without: an empty service; every client re-registers within one refresh (TTL/2)
    world.service.stop()
    world.service.start()
    t0 = time.monotonic()
    wait_until(lambda: all(member_names(m) == want for m in ms), timeout=TTL / 2 + 5, what="members back")
    print(f"members back {time.monotonic() - t0:.2f}s after an empty service restart")


def test_sigkill_expires_after_ttl(world: World) -> None:
    m1, m2, m3 = (world.nodes[i] for i in (1, 2, 3))
    wait_until(lambda: member_names(m1) == {"n1", "n2", "n3"}, timeout=10, what="mesh complete")
    m3.kill()
    t0 = time.monotonic()
    gone = wait_until(
        lambda: all("n3" not in member_names(m) for m in (m1, m2)) and time.monotonic(),
        timeout=TTL + GC + 10,
        what="n3 expired",
    )
    took = gone - t0
    print(f"n3 gone {took:.2f}s after SIGKILL (TTL {TTL}s, GC {GC}s)")
    # its last refresh was at most TTL/2 before the kill: it cannot expire sooner than TTL/2
    assert took >= TTL / 2 - 0.5


def test_reset_leaves_at_once(world: World) -> None:
    m1, m2 = world.nodes[1], world.nodes[2]
    reset = m2.node.popen([NETCTL, "reset", "--endpoint", m2.api])
    t0 = time.monotonic()
    wait_until(lambda: member_names(m1) == {"n1"}, timeout=2 * MARGIN, what="n2 removed from n1")
    took = time.monotonic() - t0
    print(f"n2 gone from n1 {took:.2f}s after netctl reset started")
    assert took < TTL / 2  # not an expiry: the delete
    assert reset.wait(timeout=30) == 0
    assert m2.proc is not None and m2.proc.wait(timeout=15) == 0
    log = "".join(p.read_text() for p in m2.node.log_dir.glob("*machined*.log"))
    assert "left the cluster: AffiliateDelete confirmed" in log


REPLICATED_ID = "replicated-cluster"


def test_replicated_service(world: World) -> None:
    """Two ``--store etcd`` replicas on one real etcd (in the service's node), nodes split between
    them: every node sees every other; one replica killed and restarted empty loses nothing."""
    ds = world.service.node
    data = ds.dir / "etcd"
    etcd = ds.popen(
        [
            "etcd", "--name", "t", "--data-dir", str(data),
            "--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
            "--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
            "--initial-cluster", "t=http://127.0.0.1:2380", "--log-level", "warn",
        ]
    )  # fmt: skip
    try:
        health = [sys.executable, "-c", "import httpx; print(httpx.get('http://127.0.0.1:2379/health').text)"]
        wait_until(
            lambda: '"health":"true"' in ds.run(health, check=False).stdout, timeout=30, what="etcd healthy"
        )
        replicas: dict[int, subprocess.Popen[str]] = {}

        def replica(port: int) -> None:
            argv = [SERVICE, "--listen", f"{SERVICE_IP}:{port}", "--store", "etcd", "--gc-interval", str(GC),
                    "--etcd-endpoints", "http://127.0.0.1:2379"]  # fmt: skip
            replicas[port] = proc = ds.popen(argv, env=world.env)
            wait_until(
                lambda: proc.poll() is not None or listening(ds, port), timeout=30, what=f"replica :{port}"
            )
            assert proc.poll() is None, [
                p.read_text()[-2000:] for p in ds.log_dir.glob("*discovery-service*")
            ]

        replica(3001)
        replica(3002)
        nodes = []
        for i, port in ((6, 3001), (7, 3001), (8, 3002)):
            text = config(i, cluster_id=REPLICATED_ID).replace(ENDPOINT, f"http://{SERVICE_IP}:{port}")
            nodes.append(world.add(i, text))
        want = {"n6", "n7", "n8"}
        watches = [MemberWatch(m, want) for m in nodes]
        for m, w in zip(nodes, watches, strict=True):
            m.start()
            w.start()
        try:
            wait_until(lambda: all(w.done for w in watches), timeout=30, what="replicated members")
        finally:
            for w in watches:
                w.stop()
        seen = {m.node.name: (w.done or 0) - m.started for m, w in zip(nodes, watches, strict=True)}
        print(
            "replicated: members complete after start: " + ", ".join(f"{k} {v:.2f}s" for k, v in seen.items())
        )
        assert max(seen.values()) < MEMBERS_DEADLINE * MARGIN, seen

        # kill the replica n8 talks to, restart it (it holds nothing itself): nothing is lost
        replicas[3002].send_signal(signal.SIGKILL)
        replicas[3002].wait(timeout=10)
        replica(3002)
        assert watch_members(nodes, want, TTL) == []
        for m in nodes:
            m.netctl("reset")
        for p in replicas.values():
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=15)
    finally:
        etcd.send_signal(signal.SIGTERM)
        etcd.wait(timeout=15)
