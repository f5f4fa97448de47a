"""Refuse to run in the machine's initial network namespace unless told to.

A wrong config applied to the host's own namespace can cut the machine off
(decisions.md "Safety"); tests and demos always run machined inside a node
namespace, a real node's service unit passes ``--allow-host-network``.
"""

from __future__ import annotations

import os


def _netns_inode(pid: int | str) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def in_initial_netns() -> bool:
    """True when our network namespace is the machine's initial one.

    Kernel threads always live in the initial namespace, so kthreadd (PID 2) is
    the reference; PID 1 is the next best (it may be unreadable in a sandbox).
    When nothing can be read we answer True: refusing is the safe mistake.
    """
    ours = _netns_inode("self")
    refs = [2] if _comm(2) == "kthreadd" else []
    for pid in [*refs, 1]:
        try:
            return _netns_inode(pid) == ours
        except OSError:
            continue
    return True
