"""libnftables for a table other than ``inet talos`` (KubeSpan's ``inet talos_kubespan``).

:class:`netd.kernel.nftables.LibNftables` is the ingress firewall's adapter
and is bound to ``inet talos``. This is the same adapter (same lazy context,
same error type, the same probe for nfnetlink before a context exists)
bound to any one named table, plus ``delete`` for teardown: only this table,
never another one.
"""

from __future__ import annotations

from typing import Any

from netd.kernel.nftables import LibNftables, NftablesError


class LibNftTable(LibNftables):
    """libnftables bound to one table ``<family> <name>``, in the caller's network namespace."""

    def __init__(self, family: str, name: str) -> None:
        super().__init__()
        self.family = family
        self.name = name

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
