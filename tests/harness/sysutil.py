"""Small process helpers for the lab harness: running commands, finding and killing processes.

Kept free of any lab logic so that the stale-namespace sweep and `Lab.close()` share one
well-tested way of finding "every process inside these namespaces" (a /proc scan), which also
catches processes that escaped their process group (setsid, double fork).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# Namespace identity: (st_dev, st_ino) of /proc/PID/ns/X or of a /run/netns bind mount.
NsId = tuple[int, int]


class CommandError(subprocess.CalledProcessError):
    """A failed command whose message carries its output, so a pytest failure shows why."""

    def __init__(self, where: str, proc: subprocess.CompletedProcess[str]) -> None:
        super().__init__(proc.returncode, proc.args, proc.stdout, proc.stderr)
        self.where = where

    def __str__(self) -> str:
        cmd = " ".join(str(a) for a in self.cmd) if isinstance(self.cmd, list) else str(self.cmd)
        out = (self.stdout or "").strip()
        err = (self.stderr or "").strip()
        return f"[{self.where}] `{cmd}` exited {self.returncode}\nstdout: {out}\nstderr: {err}"


def run(
    argv: Sequence[str],
    *,
    where: str = "host",
    check: bool = True,
    timeout: float | None = 60.0,
    input: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` to completion with captured text output; raise `CommandError` if `check`."""
    proc = subprocess.run(
        list(argv),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=None if input is not None else subprocess.DEVNULL,
        check=False,
    )
    if check and proc.returncode != 0:
        raise CommandError(where, proc)
    return proc


def wait_until(
    predicate: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"
) -> T:
    """Poll `predicate` until it returns something truthy (returned); TimeoutError otherwise.

    Exceptions from the predicate count as "not yet" until the deadline, then are chained.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}") from last_exc
        time.sleep(interval)


def ns_id(path: str | Path) -> NsId | None:
    """Identity of a namespace file (/proc/PID/ns/net, /run/netns/NAME); None if it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def pid_alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie (a zombie holds no namespaces or resources)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    # The state field follows the parenthesised command name, which may itself contain spaces.
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def pids_in_namespaces(ns_ids: Iterable[NsId], kinds: Sequence[str] = ("net", "mnt", "uts")) -> set[int]:
    """Every live process (except ourselves) whose net/mnt/uts namespace is one of `ns_ids`."""
    wanted = set(ns_ids)
    found: set[int] = set()
    if not wanted:
        return found
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        for kind in kinds:
            ident = ns_id(f"/proc/{entry}/ns/{kind}")
            if ident is not None and ident in wanted:
                found.add(int(entry))
                break
    return found


def kill_pids(pids: Iterable[int], sig: int = signal.SIGKILL) -> None:
    """Send `sig` to each pid, ignoring ones that are already gone."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def wait_gone(pids: Iterable[int], timeout: float) -> set[int]:
    """Wait until none of `pids` is alive (zombies count as gone); return the ones still alive."""
    left = set(pids)
    deadline = time.monotonic() + timeout
    while True:
        left = {p for p in left if pid_alive(p)}
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.02)


def stop_popens(procs: Sequence[subprocess.Popen[str]], grace: float = 3.0) -> list[str]:
    """SIGTERM the process group of each running `proc`, wait up to `grace`, then SIGKILL.

    Each was started with start_new_session=True, so its pid is also its process group id and
    killpg reaches its children too. Returns error strings instead of raising.
    """
    errors: list[str] = []
    running = [p for p in procs if p.poll() is None]
    for p in running:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in running:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
    for p in running:
        # Only while the leader is unreaped is its pid surely still our group id; group members
        # that outlive their leader are inside the lab's namespaces and die in the /proc sweep.
        if p.poll() is not None:
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            errors.append(f"pid {p.pid} ({p.args!r}) survived SIGKILL")
    return errors
