"""Host name and NIS domain name of the current UTS namespace (netd.md §5.4).

machined runs in the node's UTS namespace (a real node: the initial one; a test
node: its own), so these calls change only that node. Setters are separate from
getters so the HostnameSpecController can skip the syscall when the kernel
already has the value (steady state writes nothing).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket
from typing import Protocol

DOMAINNAME_PROC = "/proc/sys/kernel/domainname"
UNSET_DOMAINNAME = "(none)"  # what the kernel reports before any setdomainname


class Uts(Protocol):
    """What the hostname spec controller needs from the kernel (a fake in unit tests)."""

    def hostname(self) -> str: ...

    def domainname(self) -> str: ...

    def set_hostname(self, name: str) -> None: ...

    def set_domainname(self, name: str) -> None: ...


def _libc_setdomainname(name: bytes) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.setdomainname(ctypes.c_char_p(name), ctypes.c_size_t(len(name))) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setdomainname: {os.strerror(err)}")


class KernelUts:
    """The real syscalls: ``sethostname(2)`` via :func:`socket.sethostname`,
    ``setdomainname(2)`` via libc (an empty name clears it), with
    ``/proc/sys/kernel/domainname`` as a fallback when libc has no such symbol."""

    def hostname(self) -> str:
        return os.uname().nodename

    def domainname(self) -> str:
        with open(DOMAINNAME_PROC, encoding="utf-8") as f:
            return f.read().rstrip("\n")

    def set_hostname(self, name: str) -> None:
        socket.sethostname(name)

    def set_domainname(self, name: str) -> None:
        data = name.encode()
        try:
            _libc_setdomainname(data)
            return
        except AttributeError:
            pass  # no setdomainname in this libc: use procfs
        except OSError as e:
            if e.errno != errno.ENOSYS:
                raise
        with open(DOMAINNAME_PROC, "wb") as f:
            f.write(data + b"\n")


KERNEL_UTS: Uts = KernelUts()
