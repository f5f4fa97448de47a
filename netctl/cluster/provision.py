"""Making and unmaking a local cluster in network namespaces (root only).

What exists per cluster (names from `topology`):

- ``c-<name>-inet``: the internet switch (bridge ``br0``); ``c-<name>-ds`` on it runs the
  discovery service;
- per site ``s``: switch ``c-<name>-s<s>`` and router ``c-<name>-r<s>`` (``wan`` on the
  internet switch, ``lan`` on the site switch, forwarding on, nftables 1:1 NAT);
- per node ``i``: ``c-<name>-n<i>``, whose ``eth0`` is a port of its site switch, plus a
  private mount and UTS namespace held by a ``sleep infinity`` "holder" (tmpfs on
  /var/run/wireguard and /run/machined, its own sysfs and hostname), in which machined runs.

Every long-running process is started in its own session with its output in a log file, so
it outlives `create` and ignores the terminal's Ctrl-C; and every one lives in a recorded
network namespace, so `destroy` finds it even when `create` died before recording its pid.
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from . import topology
from .state import (
    PHASE_READY,
    ROLE_DISCOVERY,
    ROLE_HOLDER,
    ROLE_MACHINED,
    ClusterRecord,
    ProcessRecord,
    default_state_dir,
)
from .topology import ClusterPlan, NodePlan, PlanError

NETNS_DIR = Path("/run/netns")
BIN = Path(sys.executable).parent
MACHINED = BIN / "machined"
DISCOVERY_SERVICE = BIN / "discovery-service"
NETCTL = BIN / "netctl"
TOOLS = ("ip", "nsenter", "unshare", "nft", "ss", "sysctl")
NODE_TMPFS = ("/var/run/wireguard", "/run/machined")
BRIDGE = "br0"
START_TIMEOUT = 60.0  # a Python daemon starts in ~1 s alone, several times that on 2 busy cores
STOP_GRACE = 3.0  # SIGTERM, then SIGKILL: machined keeps kernel state on exit, nothing to wait for
KILL_TIMEOUT = 10.0

# Runs in the node's new mount+UTS namespaces, already in its network namespace (as the test
# harness's holders do, tests/harness/nodes.py). /run/netns is unmounted there so the node's
# mount namespace does not pin other namespaces' bind mounts (which would keep deleted
# namespaces alive until the node dies).
_HOLDER_SCRIPT = """set -e
umount -l /sys 2>/dev/null || true
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
for d in {tmpfs}; do mount -t tmpfs -o mode=0755,size=64m tmpfs "$d"; done
umount -l /run/netns 2>/dev/null || true
hostname {hostname}
ip link set lo up
echo ready
exec sleep infinity </dev/null >/dev/null 2>&1
"""


class ProvisionError(RuntimeError):
    """Why a cluster could not be made, shown to the user as one message."""


class ClusterExists(ProvisionError):
    pass


class ClusterNotFound(ProvisionError):
    pass


Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# ---- small process helpers ------------------------------------------------------------------


def _run(
    argv: Sequence[str], *, input: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(
        list(argv),
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=None if input is not None else subprocess.DEVNULL,
        check=False,
    )
    if check and p.returncode != 0:
        raise ProvisionError(
            f"`{shlex.join(argv)}` exited {p.returncode}: {p.stderr.strip() or p.stdout.strip()}"
        )
    return p


def _in_netns(netns: str, argv: Sequence[str]) -> list[str]:
    return ["nsenter", f"--net={NETNS_DIR / netns}", "--", *argv]


def _ip(netns: str, *args: str) -> None:
    _run(["ip", "-n", netns, *args])


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (starttime); None when the pid is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # The fields after the parenthesised command name, which may itself contain spaces.
    rest = stat.rsplit(")", 1)[1].split()
    if rest[0] in ("Z", "X"):
        _reap(pid)
        return None
    return int(rest[19])


def _reap(pid: int) -> None:
    """A zombie that is our own child (create and destroy in one process, as tests and the demo
    do) is collected here; anyone else's is init's business."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def is_running(p: ProcessRecord) -> bool:
    return start_time(p.pid) == p.start_time


def _netns_inode(netns: str) -> tuple[int, int] | None:
    try:
        st = os.stat(NETNS_DIR / netns)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def pids_in_netns(names: Iterable[str]) -> set[int]:
    """Every live process whose network namespace is one of `names` (what `ip netns pids`
    reports, for all of them in one /proc scan). Also catches processes that left their
    session or were never recorded (wireguard-go started by machined, a crash mid-create)."""
    wanted = {i for i in map(_netns_inode, names) if i is not None}
    found: set[int] = set()
    if not wanted:
        return found
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in wanted and start_time(int(entry)) is not None:
            found.add(int(entry))
    return found


def _signal(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _spawn(argv: Sequence[str], log: Path, env: dict[str, str] | None) -> int:
    """A detached process: own session (no terminal signals, survives our exit), output to
    `log`. Returns its pid; its Popen is dropped (subprocess reaps it if we outlive it)."""
    with open(log, "ab") as fh:
        p = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    return p.pid


def _record(record: ClusterRecord, role: str, owner: str, pid: int) -> ProcessRecord:
    st = start_time(pid)
    p = ProcessRecord(role=role, owner=owner, pid=pid, start_time=st if st is not None else -1)
    record.add_process(p)
    return p


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _wait(what: str, ok: Callable[[], bool], timeout: float, failed: Callable[[], str | None]) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        why = failed()
        if why:
            raise ProvisionError(f"{what}: {why}")
        if time.monotonic() > deadline:
            raise ProvisionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.1)


# ---- checks -----------------------------------------------------------------------------------


def check_host(*, daemons: bool = True) -> None:
    """Root and the tools; the daemons' executables only when about to start them (destroy
    must work even when the installation is broken)."""
    if os.geteuid() != 0:
        raise ProvisionError("needs root (network namespaces, veth links, mounts)")
    missing = [t for t in (TOOLS if daemons else ("ip",)) if shutil.which(t) is None]
    if missing:
        raise ProvisionError(
            f"missing tools: {', '.join(missing)} (apt-get install iproute2 util-linux nftables)"
        )
    for exe in (MACHINED, DISCOVERY_SERVICE):
        if daemons and not exe.exists():
            raise ProvisionError(f"{exe} not found: install the project (make setup)")


# ---- create -----------------------------------------------------------------------------------


def create(
    name: str,
    nodes: int,
    sites: int = 1,
    kubespan: bool = False,
    state_dir: Path | None = None,
    *,
    env: dict[str, str] | None = None,
    timeout: float = START_TIMEOUT,
    progress: Progress = _quiet,
) -> ClusterRecord:
    """Make the cluster and return its record once every machined answers on its API socket.

    On any failure or interrupt (Ctrl-C) what was made is removed again before the exception
    goes on; if even that is interrupted, the record stays for `destroy`. ``env`` is added to
    the daemons' environment (e.g. ``NETD_TUNABLES``).
    """
    root = state_dir or default_state_dir()
    cid, secret = topology.new_cluster_secrets()
    p = topology.plan(name, nodes, sites, kubespan, cid, secret)
    check_host()
    directory = root / name
    if directory.exists():
        raise ClusterExists(
            f"cluster {name} exists ({directory}): `netctl cluster destroy --name {name}` first"
        )
    taken = [n for n in p.netns_names() if (NETNS_DIR / n).exists()]
    if taken:
        raise ClusterExists(
            f"network namespace {taken[0]} exists: left by an earlier cluster {name}? (ip netns del it)"
        )
    record = ClusterRecord(plan=p, dir=directory)
    too_long = [
        str(record.api_socket(n)) for n in p.nodes if len(str(record.api_socket(n))) > topology.UNIX_PATH_MAX
    ]
    if too_long:
        raise PlanError(
            f"API socket path too long for a unix socket: {too_long[0]} (use a shorter --state-dir)"
        )
    root.mkdir(parents=True, exist_ok=True)
    try:
        directory.mkdir(mode=0o700)  # exclusive: two creates of one name cannot both get here
    except FileExistsError:
        raise ClusterExists(f"cluster {name} exists ({directory})") from None
    daemon_env = dict(os.environ)
    daemon_env.update(env or {})
    try:
        record.save()  # first: from here on `destroy` knows every name the plan will use
        _write_files(record)
        _build(record, daemon_env, timeout, progress)
        record.phase = PHASE_READY
        record.save()
    except BaseException:
        # Rolled back with Ctrl-C ignored: a second Ctrl-C must not leave half a cluster.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if _main_thread() else None
        try:
            progress(f"removing the partly made cluster {name}")
            _teardown(record.plan.netns_names(), record.processes, directory)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        raise
    return record


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _write_files(record: ClusterRecord) -> None:
    p = record.plan
    for n in p.nodes:
        d = record.node_dir(n)
        for sub in (d, d / "state", d / "etc"):
            sub.mkdir(mode=0o700, exist_ok=True)
        cfg = record.config_path(n)
        cfg.write_text(topology.machine_config(p, n))
        cfg.chmod(0o600)
    for s in p.sites:
        record.nat_path(s.index).write_text(topology.nat_ruleset(p, s.index))


def _build(record: ClusterRecord, env: dict[str, str], timeout: float, progress: Progress) -> None:
    p = record.plan
    progress(f"creating {len(p.netns_names())} network namespaces")
    for netns in p.netns_names():
        _run(["ip", "netns", "add", netns])
        _ip(netns, "link", "set", "lo", "up")
    for sw in [p.internet_netns, *(s.switch_netns for s in p.sites)]:
        _make_switch(sw)
    _connect(p.internet_netns, "ds", p.discovery_netns, "eth0")
    _ip(p.discovery_netns, "addr", "add", p.discovery_address, "dev", "eth0")
    for s in p.sites:
        _make_router(record, s.index)
    for n in p.nodes:
        progress(f"starting node {n.name} (site {n.site})")
        _start_holder(record, n)
        _connect(p.site(n.site).switch_netns, n.name, n.netns, "eth0", mac=n.mac)
    _start_discovery(record, env, timeout)
    for n in p.nodes:
        start_machined(record, n.name, env=env)
    progress("waiting for every machined API")
    for n in p.nodes:
        _wait_api(record, n, timeout)


def _make_switch(netns: str) -> None:
    # IPv6 off: a switch has no addresses and should add no chatter of its own.
    off = ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]
    _run(_in_netns(netns, ["sysctl", "-qw", *off]), check=False)
    bridge = ["type", "bridge", "stp_state", "0", "mcast_snooping", "0", "forward_delay", "0"]
    _ip(netns, "link", "add", BRIDGE, *bridge)
    _ip(netns, "link", "set", BRIDGE, "up")


def _connect(switch: str, port: str, netns: str, ifname: str, *, mac: str | None = None) -> None:
    """A veth from `switch` (bridge port `port`) to `ifname` in `netns`. Port names are local to
    the switch namespace, so `n1` of two clusters never collide."""
    addr = ["address", mac] if mac else []
    _ip(switch, "link", "add", port, "type", "veth", "peer", "name", ifname, *addr, "netns", netns)
    _ip(switch, "link", "set", port, "master", BRIDGE, "up")
    _ip(netns, "link", "set", ifname, "up")


def _make_router(record: ClusterRecord, site: int) -> None:
    p = record.plan
    s = p.site(site)
    _connect(p.internet_netns, f"r{site}", s.router_netns, "wan")
    _connect(s.switch_netns, "gw", s.router_netns, "lan")
    _ip(s.router_netns, "addr", "add", s.router_wan, "dev", "wan")
    # The nodes' public addresses are the router's: it answers ARP for them on the internet.
    for n in p.site_nodes(site):
        _ip(s.router_netns, "addr", "add", f"{n.public}/32", "dev", "wan")
    _ip(s.router_netns, "addr", "add", s.router_lan, "dev", "lan")
    _run(_in_netns(s.router_netns, ["sysctl", "-qw", "net.ipv4.ip_forward=1"]))
    _run(_in_netns(s.router_netns, ["nft", "-f", str(record.nat_path(site))]))


def _start_holder(record: ClusterRecord, n: NodePlan) -> None:
    d = record.node_dir(n)
    for mp in NODE_TMPFS:  # mount points must exist on the host for the node's tmpfs
        Path(mp).mkdir(parents=True, exist_ok=True)
    script = _HOLDER_SCRIPT.format(
        tmpfs=" ".join(shlex.quote(m) for m in NODE_TMPFS), hostname=shlex.quote(n.name)
    )
    unshare = ["unshare", "--mount", "--uts", "--propagation", "private"]
    argv = _in_netns(n.netns, [*unshare, "--", "sh", "-c", script])
    log = d / "holder.log"
    with open(log, "ab") as err:
        holder = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, start_new_session=True
        )
    _record(record, ROLE_HOLDER, n.name, holder.pid)
    assert holder.stdout is not None
    try:
        fd = holder.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + 30.0
        while b"ready\n" not in buf:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(fd, 256) if ready else b""
            if not chunk:
                why = "timed out" if not ready else f"exited {holder.poll()}"
                raise ProvisionError(f"node {n.name}: namespace holder {why}: {_log_tail(log)}")
            buf += chunk
    finally:
        holder.stdout.close()


def enter_node(record: ClusterRecord, node: str, argv: Sequence[str]) -> list[str]:
    """The argv that runs `argv` inside `node` (network, mount and UTS namespaces)."""
    holder = record.process(ROLE_HOLDER, node)
    if holder is None:
        raise ProvisionError(f"node {node} has no holder process")
    enter = ["nsenter", "-t", str(holder.pid), "--net", "--mount", "--uts"]
    return [*enter, f"--wd={record.node_dir(node)}", "--", *argv]


def machined_argv(record: ClusterRecord, node: str) -> list[str]:
    d = record.node_dir(node)
    return [
        str(MACHINED), "--config", str(record.config_path(node)), "--state-dir", str(d / "state"),
        "--etc-dir", str(d / "etc"), "--api", str(record.api_socket(node)),
    ]  # fmt: skip


def start_machined(record: ClusterRecord, node: str, *, env: dict[str, str] | None = None) -> ProcessRecord:
    """Start (or, after `stop_machined`, restart) machined in `node`; recorded like the rest."""
    holder = record.process(ROLE_HOLDER, node)
    if holder is None or not is_running(holder):
        raise ProvisionError(f"node {node} is not running (its namespace holder is gone)")
    with contextlib.suppress(FileNotFoundError):
        record.api_socket(node).unlink()  # a stale socket would pass the readiness check
    pid = _spawn(
        enter_node(record, node, machined_argv(record, node)), record.node_dir(node) / "machined.log", env
    )
    return _record(record, ROLE_MACHINED, node, pid)


def stop_machined(
    record: ClusterRecord, node: str, sig: signal.Signals = signal.SIGTERM, timeout: float = 30.0
) -> None:
    """Stop `node`'s machined (SIGTERM keeps its kernel state, as a restart does)."""
    p = record.process(ROLE_MACHINED, node)
    if p is None or not is_running(p):
        return
    _signal([p.pid], sig)
    deadline = time.monotonic() + timeout
    while is_running(p):
        if time.monotonic() > deadline:
            _signal([p.pid], signal.SIGKILL)
            deadline = time.monotonic() + KILL_TIMEOUT
        time.sleep(0.05)


def restart_machined(record: ClusterRecord, node: str, *, env: dict[str, str] | None = None) -> ProcessRecord:
    stop_machined(record, node)
    return start_machined(record, node, env=env)


def _start_discovery(record: ClusterRecord, env: dict[str, str], timeout: float) -> None:
    p = record.plan
    log = record.dir / "discovery-service.log"
    argv = [str(DISCOVERY_SERVICE), "--listen", f"{p.discovery_ip}:{topology.DISCOVERY_PORT}"]
    proc = _record(record, ROLE_DISCOVERY, "discovery", _spawn(_in_netns(p.discovery_netns, argv), log, env))

    def listening() -> bool:
        out = _run(
            _in_netns(p.discovery_netns, ["ss", "-Hltn", f"sport = :{topology.DISCOVERY_PORT}"]), check=False
        )
        return p.discovery_ip in out.stdout

    def failed() -> str | None:
        return None if is_running(proc) else f"exited:\n{_log_tail(log)}"

    _wait("discovery-service", listening, timeout, failed)


def api_answers(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(str(path))
    except OSError:
        return False
    finally:
        s.close()
    return True


def _wait_api(record: ClusterRecord, n: NodePlan, timeout: float) -> None:
    proc = record.process(ROLE_MACHINED, n.name)
    assert proc is not None
    log = record.node_dir(n) / "machined.log"

    def failed() -> str | None:
        return None if is_running(proc) else f"exited:\n{_log_tail(log)}"

    _wait(f"machined on {n.name}", lambda: api_answers(record.api_socket(n)), timeout, failed)


# ---- destroy ----------------------------------------------------------------------------------


def destroy(name: str, state_dir: Path | None = None) -> list[str]:
    """Remove every namespace, process, mount and file of cluster `name`; returns what could
    not be removed ([] = all gone). Works from the record, and from the namespace names alone
    when the record is missing (a `create` killed before it wrote one). The directory is
    removed last and only when all else is gone, so a failed destroy can be run again."""
    topology.check_name(name)
    check_host(daemons=False)
    directory = (state_dir or default_state_dir()) / name
    try:
        record: ClusterRecord | None = ClusterRecord.load(directory)
    except (OSError, ValueError, KeyError, TypeError):
        record = None
    if record is not None:
        names = record.plan.netns_names()
        processes = record.processes
    else:
        names = sorted(n for n in _netns_list() if topology.owns_netns(name, n))
        processes = []
        if not names and not directory.exists():
            raise ClusterNotFound(f"no cluster {name} (nothing in {directory}, no namespace c-{name}-*)")
    return _teardown(names, processes, directory)


def _netns_list() -> list[str]:
    try:
        return os.listdir(NETNS_DIR)
    except OSError:
        return []


def _teardown(names: list[str], processes: Iterable[ProcessRecord], directory: Path) -> list[str]:
    errors: list[str] = []
    try:
        _kill_all(names, processes)
    except ProvisionError as e:
        errors.append(str(e))
    for netns in reversed(names):
        if not (NETNS_DIR / netns).exists():
            continue
        r = _run(["ip", "netns", "del", netns], check=False)
        if r.returncode != 0:
            errors.append(f"ip netns del {netns}: {r.stderr.strip()}")
    if not errors and directory.exists():
        try:
            shutil.rmtree(directory)
        except OSError as e:
            errors.append(f"remove {directory}: {e}")
    return errors


def _kill_all(names: list[str], processes: Iterable[ProcessRecord]) -> None:
    """SIGTERM to every process we recorded (if its pid still is that process) and to every
    process in our namespaces, then SIGKILL to whatever remains, rescanning: a dying machined
    may have started one more helper."""
    recorded = [p for p in processes if is_running(p)]

    def alive() -> set[int]:
        return {p.pid for p in recorded if is_running(p)} | pids_in_netns(names)

    pids = alive()
    _signal(pids, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = alive()
    deadline = time.monotonic() + KILL_TIMEOUT
    while pids:
        _signal(pids, signal.SIGKILL)
        time.sleep(0.05)
        pids = alive()
        if pids and time.monotonic() > deadline:
            raise ProvisionError(f"processes survive SIGKILL: {sorted(pids)}")


# ---- listing ----------------------------------------------------------------------------------


def load(name: str, state_dir: Path | None = None) -> ClusterRecord:
    topology.check_name(name)
    directory = (state_dir or default_state_dir()) / name
    try:
        return ClusterRecord.load(directory)
    except FileNotFoundError:
        raise ClusterNotFound(f"no cluster {name} (no record in {directory})") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ProvisionError(f"cluster {name}: unreadable record: {e}") from None


def cluster_names(state_dir: Path | None = None) -> Iterator[str]:
    root = state_dir or default_state_dir()
    with contextlib.suppress(OSError):
        for entry in sorted(os.listdir(root)):
            if (root / entry).is_dir() and topology.NAME_RE.match(entry):
                yield entry


def node_command(record: ClusterRecord, node: str, *args: str) -> list[str]:
    """`netctl ARGS --endpoint <node's socket>`: the command line `create` prints."""
    return [str(NETCTL), *args, "--endpoint", str(record.api_socket(node))]


__all__ = [
    "ClusterExists",
    "ClusterNotFound",
    "ClusterPlan",
    "ProvisionError",
    "create",
    "destroy",
    "enter_node",
    "load",
    "node_command",
    "restart_machined",
    "start_machined",
    "stop_machined",
]
