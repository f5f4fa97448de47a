"""Naming scheme, last-resort cleanup (atexit, SIGTERM, SIGINT) and the stale sweep.

Every namespace the harness creates is named `nt<pid>-<seq>-<name>` (pid of the test process,
sequence number of the lab within it) and every temp dir `nt<pid>-<seq>-<bootid8>-*`, so:
parallel runs never collide, and a later run can tell a leftover of a dead run (pid gone) from a
live one and from namespaces that are not ours at all (no match: never touched).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Protocol

from .sysutil import kill_pids, ns_id, pid_alive, pids_in_namespaces, run, wait_gone

NETNS_DIR = Path("/run/netns")
NETNS_RE = re.compile(r"^nt(\d+)-(\d+)-[A-Za-z0-9_]+$")
TMPDIR_RE = re.compile(r"^nt(\d+)-(\d+)-([0-9a-f]{8})-")
# Temp dirs live on the host's /tmp even when the run is inside UML or the VM (their root is the
# host filesystem), where pids mean something else: only sweep dirs of our own kernel boot, and
# dirs of other boots once they are clearly abandoned.
FOREIGN_TMPDIR_MAX_AGE = 24 * 3600.0


def boot_id() -> str:
    """First 8 hex digits of this kernel boot's id (differs between host, UML and VM)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:8]
    except OSError:
        return "00000000"


class _Closable(Protocol):
    def close(self) -> object: ...


_open: list[_Closable] = []
_owner_pid = os.getpid()
_installed = False
_lock = threading.RLock()


def track(obj: _Closable) -> None:
    """Remember `obj` so that atexit/SIGTERM/SIGINT close it if the test run is interrupted."""
    global _owner_pid
    with _lock:
        if not _open:
            _owner_pid = os.getpid()
        _open.append(obj)
    _install()


def untrack(obj: _Closable) -> None:
    with _lock, contextlib.suppress(ValueError):
        _open.remove(obj)


def close_all() -> None:
    """Close every tracked lab; never raises. A forked child must not tear down its parent's labs."""
    if os.getpid() != _owner_pid:
        return
    with _lock:
        objs = list(reversed(_open))
    for obj in objs:
        try:
            obj.close()
        except Exception:
            traceback.print_exc(file=sys.stderr)


def _handler(signum: int, frame: FrameType | None) -> None:
    close_all()
    prev = _previous.get(signum, signal.SIG_DFL)
    if callable(prev):
        prev(signum, frame)
    elif prev == signal.SIG_DFL:
        # Die the way the signal would have killed us, now that nothing is left behind.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


_previous: dict[int, signal.Handlers | int | object] = {}


def _install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    import atexit

    atexit.register(close_all)
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        prev = signal.getsignal(sig)
        if prev is None or prev == signal.SIG_IGN:
            continue
        _previous[sig] = prev
        signal.signal(sig, _handler)


def sweep_stale() -> list[str]:
    """Remove namespaces and temp dirs left by dead test runs; return what was removed.

    Only names matching our scheme whose pid is no longer alive are touched.
    """
    removed: list[str] = []
    try:
        names = sorted(os.listdir(NETNS_DIR))
    except OSError:
        names = []
    for name in names:
        m = NETNS_RE.match(name)
        if not m or pid_alive(int(m.group(1))):
            continue
        ident = ns_id(NETNS_DIR / name)
        if ident is not None:
            pids = pids_in_namespaces([ident], kinds=("net",))
            kill_pids(pids)
            wait_gone(pids, 5.0)
        run(["ip", "netns", "del", name], check=False)
        removed.append(f"netns {name}")

    tmp = Path(tempfile.gettempdir())
    mine = boot_id()
    now = time.time()
    with contextlib.suppress(OSError):
        for entry in tmp.iterdir():
            m = TMPDIR_RE.match(entry.name)
            if not m or not entry.is_dir():
                continue
            if m.group(3) == mine:
                if pid_alive(int(m.group(1))):
                    continue
            else:
                try:
                    if now - entry.stat().st_mtime < FOREIGN_TMPDIR_MAX_AGE:
                        continue
                except OSError:
                    continue
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(f"dir {entry}")
    return removed
