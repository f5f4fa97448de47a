"""libnftables for a table other than ``inet talos`` (KubeSpan's ``inet talos_kubespan``).

:class:`netd.kernel.nftables.LibNftables` is the ingress firewall's adapter
and is bound to ``inet talos``. This is the same adapter (same lazy context,
same error type) bound to any one named table, with two additions:

* a probe before the libnftables context is created: libnftables 1.0.x opens
  its netfilter netlink socket while it creates the context and calls
  ``exit()`` when that fails (a kernel without nfnetlink, e.g. our UML
  kernel), which would take the whole daemon down. Opening the same socket
  from Python first turns that into :class:`NftablesError` (decisions.md
  "Degraded, not dead").
* ``delete``, for teardown: only this table, never another one.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

from netd.kernel.nftables import LibNftables, NftablesError

#: NETLINK_NETFILTER from linux/netlink.h: the socket family libnftables talks over.
NETLINK_NETFILTER = 12


def netfilter_unavailable() -> str | None:
    """Why libnftables cannot work in this network namespace (None: it can).

    Opening a NETLINK_NETFILTER socket is what libnftables does first; it
    fails with EPROTONOSUPPORT when the kernel has no nfnetlink.
    """
    try:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    except OSError as e:
        if e.errno == errno.EPROTONOSUPPORT:
            return "the kernel has no nfnetlink (nf_tables)"
        return f"cannot open a netfilter netlink socket: {e.strerror or e}"
    s.close()
    return None


class LibNftTable(LibNftables):
    """libnftables bound to one table ``<family> <name>``, in the caller's network namespace."""

    def __init__(self, family: str, name: str) -> None:
        super().__init__()
        self.family = family
        self.name = name

    def _ctx(self) -> Any:
        if self._nft is None:
            why = netfilter_unavailable()
            if why is not None:
                raise NftablesError(f"nftables unavailable: {why}")
        return super()._ctx()

    def _table(self) -> dict[str, str]:
        return {"family": self.family, "name": self.name}

    def list_table(self) -> dict[str, Any] | None:
        """``list table`` as JSON; None when the table does not exist."""
        rc, out, err = self._run({"nftables": [{"list": {"table": self._table()}}]})
        if rc != 0:
            if "No such file or directory" in err:
                return None
            raise NftablesError(f"list table {self.family} {self.name}: {err or f'rc={rc}'}")
        return out if isinstance(out, dict) else {"nftables": []}

    def delete(self) -> bool:
        """Delete the table and everything in it; False when it did not exist."""
        if self.list_table() is None:
            return False
        self.apply({"nftables": [{"delete": {"table": self._table()}}]})
        return True
