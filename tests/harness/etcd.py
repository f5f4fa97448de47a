"""A throw-away single-member etcd on 127.0.0.1 for tests and benches.

Each instance gets free ports and its own data dir (on /dev/shm when present: etcd fsyncs every
write, and tmpfs keeps that off the disk, which is what makes replicated tests fast). The process
is killed and the directory removed on `close()`, also when the test fails or the run is
interrupted (registered with the harness's last-resort cleanup).

    with EtcdServer() as etcd:          # or: the `etcd` fixture of a test module, see `etcd_fixture`
        etcd.url                        # "http://127.0.0.1:PORT"
        etcd.kill(); etcd.start()       # same ports and data: a restart of the member
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import httpx

from .cleanup import track, untrack

ETCD_BIN = shutil.which("etcd") or "/usr/bin/etcd"
START_TIMEOUT = 20.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class EtcdServer:
    """One etcd member; `start()` returns once `/health` says healthy."""

    def __init__(self, name: str = "dsv") -> None:
        base = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.dir = Path(tempfile.mkdtemp(prefix=f"{name}{os.getpid()}-etcd-", dir=base))
        self.client_port = free_port()
        self.peer_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = open(self.dir / "etcd.log", "wb")  # noqa: SIM115 - closed in close()
        track(self)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def start(self) -> EtcdServer:
        peer = f"http://127.0.0.1:{self.peer_port}"
        argv = [
            ETCD_BIN,
            "--name", "test",
            "--data-dir", str(self.dir / "data"),
            "--listen-client-urls", self.url,
            "--advertise-client-urls", self.url,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"test={peer}",
            "--log-level", "warn",
            "--logger", "zap",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited {self.proc.returncode}: {self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.get(f"{self.url}/health", timeout=1.0)
                if r.status_code == 200 and r.json().get("health") == "true":
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"etcd not healthy within {START_TIMEOUT}s: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the member (the data dir stays, so `start()` brings the same state back)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def log_tail(self, n: int = 2000) -> str:
        try:
            return (self.dir / "etcd.log").read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        self.kill()
        with contextlib.suppress(OSError):
            self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        untrack(self)

    def __enter__(self) -> EtcdServer:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def etcd_fixture() -> Iterator[EtcdServer]:
    """Body of an `etcd` pytest fixture: `etcd = pytest.fixture(etcd_fixture)` in a test module."""
    with EtcdServer() as server:
        yield server
