"""Userspace WireGuard: wireguard-go, configured over its UAPI socket.

wireguard-go owns its ``tun`` device: when it dies the link goes with its
addresses and routes. So it runs detached (decisions.md "Helpers that carry
kernel state keep running"): we start ``wireguard-go <ifname>`` in a new
session with stdio on /dev/null (or a log file) and without
``WG_PROCESS_FOREGROUND``; it then creates the tun device and the socket
``/var/run/wireguard/<ifname>.sock``, re-executes itself as a daemon child
(holding both) and the parent exits 0. Nothing of it stays a child of ours,
so machined can restart and adopt it by the socket.

It stops when its socket file is removed (it watches it with inotify) or its
tun link is deleted; :meth:`UserspaceBackend.delete` does both and, as a last
resort, signals the pid that holds the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import subprocess
import time
from pathlib import Path

from netd.kernel.wireguard.backend import WireguardBackend
from netd.kernel.wireguard.kernel import delete_link
from netd.kernel.wireguard.model import DeviceConfig, WireguardDevice, WireguardError
from netd.kernel.wireguard.uapi import SOCKET_DIR, UapiClient, socket_path

BINARY = "wireguard-go"
#: Set by wireguard-go in its own daemon child; must not leak into the parent we start.
_CHILD_ENV = ("WG_PROCESS_FOREGROUND", "WG_TUN_FD", "WG_UAPI_FD")


def socket_inodes(path: Path) -> set[int]:
    """Inodes of the unix sockets bound to ``path`` in this network namespace (/proc/net/unix)."""
    inodes: set[int] = set()
    try:
        lines = Path("/proc/net/unix").read_text().splitlines()[1:]
    except OSError:
        return inodes
    want = str(path)
    alt = want.replace("/var/run/", "/run/", 1) if want.startswith("/var/run/") else want
    for line in lines:
        fields = line.split()
        if len(fields) >= 8 and fields[7] in (want, alt):
            inodes.add(int(fields[6]))
    return inodes


def pids_holding(inodes: set[int]) -> list[int]:
    """Pids with an fd on one of the sockets ``inodes``."""
    if not inodes:
        return []
    targets = {f"socket:[{i}]" for i in inodes}
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fds = os.scandir(f"/proc/{entry.name}/fd")
        except OSError:
            continue
        with fds:
            for fd in fds:
                try:
                    if os.readlink(fd.path) in targets:
                        pids.append(int(entry.name))
                        break
                except OSError:
                    continue
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited; /proc/<pid>/stat state "Z".
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


class UserspaceBackend(WireguardBackend):
    """WireGuard devices run by wireguard-go processes."""

    name = "userspace"

    def __init__(
        self,
        *,
        sock_dir: Path = SOCKET_DIR,
        binary: str = BINARY,
        log_dir: Path | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        super().__init__()
        self.sock_dir = sock_dir
        self.binary = binary
        self.log_dir = log_dir
        self.start_timeout = start_timeout

    def socket(self, ifname: str) -> Path:
        return socket_path(ifname, self.sock_dir)

    def client(self, ifname: str) -> UapiClient:
        return UapiClient(self.socket(ifname))

    def pid(self, ifname: str) -> int | None:
        """The pid of the wireguard-go serving ``ifname`` (holder of its listening socket)."""
        pids = pids_holding(socket_inodes(self.socket(ifname)))
        return min(pids) if pids else None

    async def exists(self, ifname: str) -> bool:
        return self.socket(ifname).exists() and await self.client(ifname).ping()

    async def create(self, ifname: str) -> None:
        if await self.exists(ifname):
            return  # adopt the running wireguard-go
        self.sock_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in _CHILD_ENV}
        log_path = self.log_dir / f"wireguard-go.{ifname}.log" if self.log_dir else None
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            # Without LOG_LEVEL the daemon child's stdio is /dev/null; with it, our log file.
            env.setdefault("LOG_LEVEL", "error")
        out = open(log_path, "ab") if log_path else open(os.devnull, "wb")  # noqa: SIM115
        with out:
            try:
                proc = await asyncio.create_subprocess_exec(
                    self.binary,
                    ifname,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    cwd="/",
                    env=env,
                    start_new_session=True,
                )
            except FileNotFoundError as e:
                msg = f"{self.binary} not found (no kernel WireGuard either)"
                raise WireguardError(msg, errno.ENOENT) from e
            try:
                rc = await asyncio.wait_for(proc.wait(), self.start_timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                msg = f"{self.binary} {ifname}: did not daemonize in {self.start_timeout}s"
                raise WireguardError(msg) from None
        if rc != 0:
            tail = ""
            if log_path is not None:
                with contextlib.suppress(OSError):
                    tail = ": " + log_path.read_text(errors="replace").strip().splitlines()[-1]
            raise WireguardError(f"{self.binary} {ifname} exited {rc}{tail}")
        deadline = time.monotonic() + self.start_timeout
        while not await self.exists(ifname):
            if time.monotonic() > deadline:
                raise WireguardError(f"{self.binary} {ifname}: no UAPI socket after {self.start_timeout}s")
            await asyncio.sleep(0.02)

    async def get(self, ifname: str) -> WireguardDevice:
        return await self.client(ifname).get()

    async def apply(self, ifname: str, cfg: DeviceConfig) -> None:
        await self.client(ifname).set(cfg)

    async def delete(self, ifname: str, timeout: float = 3.0) -> None:
        pid = self.pid(ifname)
        with contextlib.suppress(FileNotFoundError):
            self.socket(ifname).unlink()  # wireguard-go exits when its socket file goes
        await delete_link(ifname)  # wireguard-go exits when its tun goes, too
        if pid is None:
            return
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + timeout
            while _alive(pid):
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.02)
            else:
                return
        raise WireguardError(f"{self.binary} {ifname} (pid {pid}) does not exit")
