"""Nodes, switches and links in network namespaces, owned by a `Lab` that tears them all down.

A *node* stands for one machine: its own network namespace (named, so `ip -n` works), plus a
private mount namespace (tmpfs on /var/run/wireguard and /run/machined, sysfs showing the node's
own links) and UTS namespace (hostname). A long-lived "holder" process (`sleep infinity`) keeps
the mount/UTS namespaces alive; commands enter all three with `nsenter -t <holder>`.

A *switch* is a Linux bridge alone in its own network namespace; nodes join it with a veth pair.
A *stub* is a bare namespace holding the far end of one veth: the harmless peer for links that
must not lead anywhere (bridge or bond ports plugged into one switch would make an L2 loop).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import select
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from . import cleanup
from .sysutil import (
    NsId,
    kill_pids,
    ns_id,
    pid_alive,
    pids_in_namespaces,
    run,
    stop_popens,
    wait_gone,
)

NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,24}$")
IFNAMSIZ = 15  # usable characters of a Linux interface name
# Mount points made private (tmpfs) in every node. On a host whose /run is on disk the (empty)
# directories are created once on the host; inside UML/VM /run is a tmpfs anyway.
NODE_TMPFS = ("/var/run/wireguard", "/run/machined")
_lab_seq = itertools.count(1)

# Runs inside the node's new mount+UTS namespaces, already in its network namespace.
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


def _ip(ns: Netns, *args: str) -> None:
    """`ip -n NETNS ARGS` from the host mount namespace, where every /run/netns name resolves
    (nodes unmount /run/netns in their own mount namespace so as not to pin other labs' ones)."""
    run(["ip", "-n", ns.netns, *args], where=ns.name)


class Netns:
    """A named network namespace; commands run in it via `nsenter --net` (host mounts, UTS)."""

    def __init__(self, lab: Lab, name: str, netns: str) -> None:
        self.lab = lab
        self.name = name
        self.netns = netns
        self.path = cleanup.NETNS_DIR / netns
        self.ns_ids: set[NsId] = set()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} netns={self.netns}>"

    def wrap(self, cmd: Sequence[str]) -> list[str]:
        """The argv that runs `cmd` inside this namespace."""
        return ["nsenter", f"--net={self.path}", "--", *cmd]

    def run(
        self,
        cmd: Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = 60.0,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `cmd` to completion here; text output captured; `CommandError` if `check` fails."""
        return run(self.wrap(cmd), where=self.name, check=check, timeout=timeout, input=input, env=env)

    def sh(self, script: str, *, check: bool = True, timeout: float | None = 60.0) -> str:
        """Run a shell snippet here (one process instead of many: matters under UML); its stdout."""
        return self.run(["sh", "-ec", script], check=check, timeout=timeout).stdout

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(["ip", *args], check=check)

    def ip_json(self, *args: str) -> Any:
        """Parsed `ip -j ARGS` output (e.g. `ip_json("-d", "link", "show", "eth0")`)."""
        out = self.run(["ip", "-j", *args]).stdout.strip()
        return json.loads(out) if out else []

    def link(self, ifname: str) -> dict[str, Any]:
        """`ip -j -d link show IFNAME` as one dict (details included: linkinfo, master, ...)."""
        links: list[dict[str, Any]] = self.ip_json("-d", "link", "show", "dev", ifname)
        return links[0]

    def popen(
        self,
        cmd: Sequence[str],
        *,
        log: Path | None = None,
        stdout: int | IO[str] | None = None,
        stderr: int | IO[str] | None = subprocess.STDOUT,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[str]:
        """Start a long-running `cmd` here, in its own process group; killed by `Lab.close()`.

        By default stdout+stderr go to `log` (default: `<lab dir>/<name>/logs/<prog>.<n>.log`).
        """
        return self.lab._popen(self, self.wrap(cmd), log=log, stdout=stdout, stderr=stderr, env=env)


class Node(Netns):
    """One simulated machine: network + private mount + UTS namespaces (see module doc)."""

    def __init__(self, lab: Lab, name: str, netns: str, hostname: str) -> None:
        super().__init__(lab, name, netns)
        self.hostname = hostname
        self.dir = lab.dir / name
        self.etc_dir = self.dir / "etc"  # for machined --etc-dir
        self.state_dir = self.dir / "state"  # for machined --state-dir
        self.log_dir = self.dir / "logs"
        self.holder: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """Pid of the holder process, whose namespaces are the node's."""
        assert self.holder is not None, "node not started"
        return self.holder.pid

    def wrap(self, cmd: Sequence[str]) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "--net", "--mount", "--uts", f"--wd={self.dir}", "--", *cmd]

    def _start(self, timeout: float) -> None:
        for d in (self.etc_dir, self.state_dir, self.log_dir):
            d.mkdir(parents=True, exist_ok=True)
        for mp in NODE_TMPFS:
            Path(mp).mkdir(parents=True, exist_ok=True)
        script = _HOLDER_SCRIPT.format(
            tmpfs=" ".join(shlex.quote(m) for m in NODE_TMPFS), hostname=shlex.quote(self.hostname)
        )
        unshare = ["unshare", "--mount", "--uts", "--propagation", "private"]
        argv = ["nsenter", f"--net={self.path}", "--", *unshare, "--", "sh", "-c", script]
        with open(self.log_dir / "holder.log", "wb") as err:
            self.holder = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, start_new_session=True
            )
        assert self.holder.stdout is not None
        fd = self.holder.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + timeout
        while b"ready\n" not in buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(0.0, left))
            chunk = os.read(fd, 256) if ready else b""
            if not chunk:
                self.holder.stdout.close()
                why = "timed out" if not ready else f"exited {self.holder.poll()}"
                log = (self.log_dir / "holder.log").read_text(errors="replace")
                raise RuntimeError(f"node {self.name}: holder {why} before ready: {log.strip()}")
            buf += chunk
        self.holder.stdout.close()
        for kind in ("net", "mnt", "uts"):
            ident = ns_id(f"/proc/{self.pid}/ns/{kind}")
            if ident is None:
                raise RuntimeError(f"node {self.name}: holder {self.pid} vanished")
            self.ns_ids.add(ident)


class Switch(Netns):
    """A Linux bridge (`br0`, no STP, no multicast snooping) alone in its own namespace."""

    bridge = "br0"

    def __init__(self, lab: Lab, name: str, netns: str) -> None:
        super().__init__(lab, name, netns)
        self.ports: list[str] = []


class Stub(Netns):
    """Bare namespace holding the far end (`peer_ifname`) of one veth of `node`."""

    def __init__(self, lab: Lab, name: str, netns: str, node: Netns, ifname: str, peer_ifname: str) -> None:
        super().__init__(lab, name, netns)
        self.node = node
        self.ifname = ifname
        self.peer_ifname = peer_ifname


class Lab:
    """Creates nodes, switches, links and stubs; `close()` destroys everything they left.

    Use as a context manager or via the `lab` pytest fixture. Cleanup is also registered with
    atexit/SIGTERM/SIGINT, and a later run sweeps namespaces of dead runs (`cleanup.sweep_stale`).
    """

    def __init__(self, *, start_timeout: float = 30.0) -> None:
        self.seq = next(_lab_seq)
        self.prefix = f"nt{os.getpid()}-{self.seq}-"
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}{cleanup.boot_id()}-"))
        self.start_timeout = start_timeout
        self.members: dict[str, Netns] = {}
        self.netns_names: list[str] = []  # every namespace created (or being created), in order
        self.procs: list[subprocess.Popen[str]] = []
        self.cleanup_errors: list[str] = []
        self._logs: list[IO[str]] = []
        self._log_seq = itertools.count(1)
        self._stub_seq = itertools.count(1)
        self.closed = False
        cleanup.track(self)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- creation -------------------------------------------------------------------------

    def _add_netns(self, name: str) -> str:
        if self.closed:
            raise RuntimeError("lab is closed")
        if not NAME_RE.match(name):
            raise ValueError(f"bad name {name!r}: want [A-Za-z0-9_]{{1,24}}")
        if name in self.members:
            raise ValueError(f"name {name!r} already used in this lab")
        netns = self.prefix + name
        self.netns_names.append(netns)  # before creating: an interrupt must still clean it up
        run(["ip", "netns", "add", netns])
        return netns

    def node(self, name: str, *, hostname: str | None = None) -> Node:
        """A new node `name` with hostname `hostname` (default: `name`) and `lo` up."""
        netns = self._add_netns(name)
        node = Node(self, name, netns, hostname or name)
        self.members[name] = node
        node.ns_ids.add(ns_id(node.path) or (0, 0))
        node._start(self.start_timeout)
        return node

    def switch(self, name: str) -> Switch:
        """A new switch: bridge `br0`, up, in its own namespace (IPv6 off there: no own chatter)."""
        netns = self._add_netns(name)
        sw = Switch(self, name, netns)
        self.members[name] = sw
        sw.ns_ids.add(ns_id(sw.path) or (0, 0))
        sw.sh(
            "ip link set lo up\n"
            "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 || true\n"
            f"ip link add {sw.bridge} type bridge stp_state 0 mcast_snooping 0 forward_delay 0\n"
            f"ip link set {sw.bridge} up\n"
        )
        return sw

    def connect(
        self, node: Netns, switch: Switch, ifname: str = "eth0", *, mac: str | None = None, up: bool = True
    ) -> str:
        """Plug `node` into `switch`: veth `ifname` (with `mac`) in the node, the other end a bridge
        port in the switch. Returns the port's name (`<node>-<ifname>` if it fits in 15 chars)."""
        port = f"{node.name}-{ifname}"
        i = len(switch.ports)
        while len(port) > IFNAMSIZ or port in switch.ports:
            port, i = f"p{i}", i + 1
        addr = ["address", mac] if mac else []
        _ip(switch, "link", "add", port, "type", "veth", "peer", "name", ifname, *addr, "netns", node.netns)
        switch.ports.append(port)
        _ip(switch, "link", "set", port, "master", switch.bridge, "up")
        if up:
            _ip(node, "link", "set", ifname, "up")
        return port

    def link(
        self,
        a: Netns,
        b: Netns,
        a_ifname: str = "eth0",
        b_ifname: str = "eth0",
        *,
        a_mac: str | None = None,
        b_mac: str | None = None,
        up: bool = True,
    ) -> None:
        """A direct veth cable between `a` (`a_ifname`) and `b` (`b_ifname`)."""
        a_addr = ["address", a_mac] if a_mac else []
        b_addr = ["address", b_mac] if b_mac else []
        peer = ["peer", "name", b_ifname, *b_addr, "netns", b.netns]
        _ip(a, "link", "add", a_ifname, *a_addr, "type", "veth", *peer)
        if up:
            _ip(a, "link", "set", a_ifname, "up")
            _ip(b, "link", "set", b_ifname, "up")

    def stub(
        self, node: Netns, ifname: str, *, mac: str | None = None, peer_ifname: str = "eth0", up: bool = True
    ) -> Stub:
        """A veth `ifname` in `node` whose other end (`peer_ifname`, up) sits in a new bare namespace."""
        name = next(n for n in (f"stub{i}" for i in self._stub_seq) if n not in self.members)
        netns = self._add_netns(name)
        st = Stub(self, name, netns, node, ifname, peer_ifname)
        self.members[name] = st
        st.ns_ids.add(ns_id(st.path) or (0, 0))
        _ip(st, "link", "set", "lo", "up")
        self.link(node, st, ifname, peer_ifname, a_mac=mac, up=False)
        _ip(st, "link", "set", peer_ifname, "up")
        if up:
            _ip(node, "link", "set", ifname, "up")
        return st

    def _popen(
        self,
        owner: Netns,
        argv: list[str],
        *,
        log: Path | None,
        stdout: int | IO[str] | None,
        stderr: int | IO[str] | None,
        env: dict[str, str] | None,
    ) -> subprocess.Popen[str]:
        if self.closed:
            raise RuntimeError("lab is closed")
        if stdout is None:
            if log is None:
                log_dir = owner.dir / "logs" if isinstance(owner, Node) else self.dir / "logs"
                log_dir.mkdir(parents=True, exist_ok=True)
                prog = Path(argv[argv.index("--") + 1]).name
                log = log_dir / f"{owner.name}.{prog}.{next(self._log_seq)}.log"
            fh = open(log, "a")  # noqa: SIM115 - closed in close()
            self._logs.append(fh)
            stdout = fh
        p = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=env,
            text=True,
            start_new_session=True,
        )
        self.procs.append(p)
        return p

    # ---- teardown -------------------------------------------------------------------------

    def _ns_ids(self) -> set[NsId]:
        ids: set[NsId] = set()
        for m in self.members.values():
            ids |= m.ns_ids
        ids.discard((0, 0))
        return ids

    def _holders(self) -> list[subprocess.Popen[bytes]]:
        return [m.holder for m in self.members.values() if isinstance(m, Node) and m.holder is not None]

    def close(self) -> list[str]:
        """Destroy everything; idempotent, keeps going past errors, which it returns (and keeps
        in `cleanup_errors`). Order: started processes (SIGTERM, then SIGKILL, per process group),
        then anything else inside our namespaces, then the holders, then the namespaces and dirs."""
        if self.closed:
            return self.cleanup_errors
        errors = self.cleanup_errors

        def step(what: str, fn: Any) -> None:
            try:
                fn()
            except Exception as exc:
                errors.append(f"{what}: {type(exc).__name__}: {exc}")

        step("stop processes", lambda: errors.extend(stop_popens(self.procs)))
        step("kill namespace processes", self._kill_ns_processes)
        step("kill holders", self._kill_holders)
        for netns in list(self.netns_names):
            step(f"delete netns {netns}", lambda n=netns: self._del_netns(n))
        for fh in self._logs:
            with contextlib.suppress(OSError):
                fh.close()
        step("remove dir", lambda: shutil.rmtree(self.dir) if self.dir.exists() else None)
        self.closed = True
        cleanup.untrack(self)
        return errors

    def _kill_ns_processes(self) -> None:
        # Holders are spared until the rest is gone: while they live, the mount/UTS namespace
        # ids we match on cannot be recycled for somebody else's namespace.
        ids = self._ns_ids()
        holders = {h.pid for h in self._holders()}
        deadline = time.monotonic() + 10.0
        while True:
            pids = pids_in_namespaces(ids) - holders
            if not pids:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes survive SIGKILL: {sorted(pids)}")
            kill_pids(pids)
            wait_gone(pids, 1.0)

    def _kill_holders(self) -> None:
        for h in self._holders():
            if h.poll() is None:
                h.kill()
        for h in self._holders():
            h.wait(timeout=10)
        # The last processes in the network namespaces (e.g. forked by a holder before dying).
        left = pids_in_namespaces(self._ns_ids(), kinds=("net",))
        kill_pids(left)
        if wait_gone(left, 5.0):
            raise RuntimeError(f"processes survive SIGKILL: {sorted(left)}")

    def _del_netns(self, netns: str) -> None:
        if (cleanup.NETNS_DIR / netns).exists():
            run(["ip", "netns", "del", netns])
        with contextlib.suppress(ValueError):
            self.netns_names.remove(netns)

    def leftovers(self) -> list[str]:
        """What of this lab still exists (namespaces, processes, mounts, dirs): [] after `close()`."""
        found: list[str] = []
        names = set(os.listdir(cleanup.NETNS_DIR)) if cleanup.NETNS_DIR.is_dir() else set()
        found += [f"netns {n}" for n in sorted(names) if n.startswith(self.prefix)]
        pids = {h.pid for h in self._holders()} | {p.pid for p in self.procs}
        found += [f"pid {p}" for p in sorted(pids) if pid_alive(p)]
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f if self.prefix in line or str(self.dir) in line]
        found += [f"mount {m}" for m in mounts]
        if self.dir.exists():
            found.append(f"dir {self.dir}")
        return found
