"""The harness itself: nodes really are isolated machines, and closing a lab leaves nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from harness import Lab, sweep_stale, wait_until
from harness.cleanup import NETNS_DIR
from harness.sysutil import NsId, ns_id, pid_alive, pids_in_namespaces

TESTS_DIR = Path(__file__).resolve().parents[1]


def _host_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f]


def _netns_list() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout


def test_three_nodes_on_a_switch_ping_v4_and_v6(lab: Lab) -> None:
    sw = lab.switch("sw")
    nodes = [lab.node(n) for n in ("a", "b", "c")]
    for i, n in enumerate(nodes, 1):
        port = lab.connect(n, sw, "eth0", mac=f"02:00:5e:00:00:0{i}")
        n.sh(f"ip addr add 192.0.2.{i}/24 dev eth0\nip addr add 2001:db8::{i}/64 dev eth0 nodad")
        eth0 = n.link("eth0")
        assert eth0["address"] == f"02:00:5e:00:00:0{i}"
        assert eth0["linkinfo"]["info_kind"] == "veth"
        assert sw.link(port)["master"] == "br0"
        # sysfs in the node's mount namespace shows the node's links, not the host's.
        sys_links = n.run(["find", "/sys/class/net", "-mindepth", "1", "-type", "l", "-printf", "%f\\n"])
        assert sorted(sys_links.stdout.split()) == ["eth0", "lo"]
    for src_i, src in enumerate(nodes, 1):
        for dst_i in range(1, 4):
            if dst_i != src_i:
                src.run(["ping", "-c", "1", "-W", "3", f"192.0.2.{dst_i}"])
                src.run(["ping", "-6", "-c", "1", "-W", "3", f"2001:db8::{dst_i}"])
    # And an address nobody has must not answer: the pings above prove something.
    r = nodes[0].run(["ping", "-c", "1", "-W", "1", "192.0.2.99"], check=False)
    assert r.returncode != 0


def test_hostnames_are_per_node(lab: Lab) -> None:
    host_before = socket.gethostname()
    a = lab.node("a", hostname="alpha")
    b = lab.node("b")
    assert a.run(["hostname"]).stdout.strip() == "alpha"
    assert b.run(["hostname"]).stdout.strip() == "b"
    a.run(["hostname", "renamed"])
    assert a.run(["hostname"]).stdout.strip() == "renamed"
    assert b.run(["hostname"]).stdout.strip() == "b"
    assert socket.gethostname() == host_before


def test_mount_namespace_is_private(lab: Lab) -> None:
    a, b = lab.node("a"), lab.node("b")
    for mp in ("/var/run/wireguard", "/run/machined"):
        fstype = a.run(["findmnt", "-n", "-o", "FSTYPE", "--target", mp]).stdout.strip()
        assert fstype == "tmpfs", mp
    a.run(["sh", "-c", "echo a > /var/run/wireguard/probe && echo a > /run/machined/probe"])
    assert a.run(["cat", "/var/run/wireguard/probe"]).stdout == "a\n"
    assert not Path("/var/run/wireguard/probe").exists()
    assert not Path("/run/machined/probe").exists()
    assert b.run(["ls", "-A", "/var/run/wireguard", "/run/machined"]).stdout.split() == [
        "/run/machined:",
        "/var/run/wireguard:",
    ]
    host = set(_host_mounts())
    assert "/run/wireguard" not in host and "/run/machined" not in host
    # etc/state are plain per-node dirs, the same path inside and outside the node.
    assert a.etc_dir != b.etc_dir and a.state_dir.is_dir() and b.state_dir.is_dir()
    (a.etc_dir / "config.yaml").write_text("x: 1\n")
    assert a.run(["cat", str(a.etc_dir / "config.yaml")]).stdout == "x: 1\n"


def test_close_leaves_nothing(lab_session: None, tmp_path: Path) -> None:
    mounts_before = sorted(_host_mounts())
    lab = Lab()
    try:
        sw = lab.switch("sw")
        a, b = lab.node("a"), lab.node("b")
        lab.connect(a, sw)
        lab.link(a, b, "eth1", "eth1")
        stub = lab.stub(b, "eth2")
        assert b.link("eth2")["linkinfo"]["info_kind"] == "veth"
        assert "UP" in stub.link("eth0")["flags"]
        sleeper = a.popen(["sleep", "1000"])
        pidfile = a.dir / "escaped.pid"
        # A child that leaves the process group (setsid): only the namespace sweep can find it.
        escape = f"setsid sleep 1001 </dev/null >/dev/null 2>&1 & echo $! > {pidfile}; wait"
        shell = b.popen(["sh", "-c", escape])
        escaped = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), what="pidfile"))
        on_switch = sw.popen(["sleep", "1002"])
        pids = [a.pid, b.pid, sleeper.pid, shell.pid, escaped, on_switch.pid]
        assert all(pid_alive(p) for p in pids)
        ids: set[NsId] = set()
        for m in (sw, a, b, stub):
            ids |= m.ns_ids
        assert len(ids) == 2 * 3 + 2  # two nodes (net, mnt, uts), switch and stub (net)
        # popen returns before nsenter has entered the namespaces: slow under UML.
        wait_until(lambda: pids_in_namespaces(ids) >= set(pids), what="processes in the namespaces")
        assert sum(lab.prefix in line for line in _netns_list().splitlines()) == 4
        assert len(_host_mounts()) > len(mounts_before)  # the /run/netns bind mounts
        lab_dir = lab.dir
        assert lab_dir.is_dir()
    finally:
        errors = lab.close()
    assert errors == []
    assert lab.prefix not in _netns_list()
    assert [p for p in pids if pid_alive(p)] == []
    assert pids_in_namespaces(ids) == set()
    assert sorted(_host_mounts()) == mounts_before
    assert not lab_dir.exists()
    assert lab.leftovers() == []
    assert lab.close() == []  # idempotent


_CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
from harness import Lab
lab = Lab()
a = lab.node("a")
lab.connect(a, lab.switch("sw"))
p = a.popen(["sleep", "1000"])
print(lab.prefix, a.pid, p.pid, lab.dir, flush=True)
time.sleep(1000)
"""


def _start_child() -> tuple[subprocess.Popen[str], str, list[int], Path]:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD.format(tests=str(TESTS_DIR))],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,  # its KeyboardInterrupt traceback; read only if it fails to start
        text=True,
    )
    assert child.stdout is not None and child.stderr is not None
    line = child.stdout.readline()
    if not line:
        pytest.fail(f"child lab failed to start: {child.stderr.read()}")
    prefix, holder, sleeper, lab_dir = line.split()
    return child, prefix, [int(holder), int(sleeper)], Path(lab_dir)


def _gone(prefix: str, pids: list[int]) -> bool:
    return not any(n.startswith(prefix) for n in os.listdir(NETNS_DIR)) and not any(map(pid_alive, pids))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_cleans_up(lab_session: None, sig: signal.Signals) -> None:
    child, prefix, pids, lab_dir = _start_child()
    assert any(n.startswith(prefix) for n in os.listdir(NETNS_DIR))
    child.send_signal(sig)
    child.wait(timeout=30)
    assert _gone(prefix, pids)
    assert not lab_dir.exists()


def test_sweep_removes_leftovers_of_a_killed_run(lab_session: None) -> None:
    child, prefix, pids, lab_dir = _start_child()
    netns = prefix + "a"
    ident = ns_id(NETNS_DIR / netns)
    child.kill()  # SIGKILL: no chance to clean up
    child.wait(timeout=30)
    assert all(map(pid_alive, pids)) and lab_dir.exists()
    assert ident is not None
    wait_until(lambda: pids_in_namespaces([ident], kinds=("net",)) >= set(pids), what="processes in netns")
    removed = sweep_stale()
    assert f"netns {netns}" in removed
    assert wait_until(lambda: _gone(prefix, pids), timeout=5, what="sweep")
    assert not lab_dir.exists()


def test_sweep_leaves_foreign_and_live_namespaces_alone(lab: Lab) -> None:
    a = lab.node("a")  # ours, and our pid is alive
    foreign = f"ntx{os.getpid()}-other"
    subprocess.run(["ip", "netns", "add", foreign], check=True)
    try:
        removed = sweep_stale()
        assert removed == [] or all(lab.prefix not in r for r in removed)
        assert (NETNS_DIR / foreign).exists() and (NETNS_DIR / a.netns).exists()
        assert pid_alive(a.pid)
    finally:
        subprocess.run(["ip", "netns", "del", foreign], check=True)
