"""Link names the machine config implies (netd.md §4.2).

The rule lives in the config package because config sources (the kernel
command line's ``vlan=``) need it while parsing, and the config package is the
lower layer: it imports nothing from ``netd.resources``.
"""

from __future__ import annotations

import hashlib


def vlan_link_name(base: str, vid: int) -> str:
    """VLAN link name: ``<base>.<vid>`` if it fits 15 chars (IFNAMSIZ), else hashed."""
    if len(base) + 5 <= 15:
        return f"{base}.{vid}"
    digest = hashlib.sha256(base.encode()).hexdigest()[:6]
    return f"{base[:4]}{digest}.{vid}"
