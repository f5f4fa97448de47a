"""The client's DUID and IAID (operators.md §0, §3.4; RFC 8415 §11, §12).

§0 overrides the reference's per-message DUID-LLT: the DUID is ``duidv6`` from the config
(``OperatorSpec.dhcp6.DUID``, a hex string of a whole DUID, type included) or else a DUID-LL
of the link (type 3, hardware type 1, the MAC), written to the operator's state dir the first
time and read back on every later start, so the server sees the same client across restarts
(and keeps giving it the same address) even if the link's MAC changes later.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

from netd.kernel.files import replace_file

log = logging.getLogger(__name__)

DUID_LLT = 1
DUID_EN = 2
DUID_LL = 3
DUID_UUID = 4
HW_ETHERNET = 1  # RFC 826 / IANA hardware type
DUID_FILE = "duid"


def duid_ll(mac: bytes, hw_type: int = HW_ETHERNET) -> bytes:
    """DUID-LL (RFC 8415 §11.4)."""
    return struct.pack("!HH", DUID_LL, hw_type) + mac


def check_duid(duid: bytes) -> str | None:
    """Why ``duid`` is not a usable DUID, or None. Types 1-4 are checked by their structure
    (operators.md §3.4), other types are opaque."""
    if len(duid) < 2:
        return f"DUID of {len(duid)} bytes"
    if len(duid) > 130:
        return f"DUID of {len(duid)} bytes (at most 130)"
    kind, body = struct.unpack_from("!H", duid)[0], duid[2:]
    minimum = {DUID_LLT: 7, DUID_EN: 5, DUID_LL: 3}.get(kind)
    if minimum is not None and len(body) < minimum:
        return f"DUID type {kind} with a {len(body)}-byte body"
    if kind == DUID_UUID and len(body) != 16:
        return f"DUID-UUID with a {len(body)}-byte UUID"
    if len(body) < 1:
        return "DUID without an identifier"
    return None


def configured_duid(text: str) -> bytes | None:
    """The DUID of ``dhcp6.DUID``: None when unset, not hex ("not set", §3.4) or malformed
    (logged: the default DUID is used)."""
    if not text:
        return None
    try:
        duid = bytes.fromhex(text)
    except ValueError:
        return None
    problem = check_duid(duid)
    if problem:
        log.error("dhcp6: configured DUID %s is unusable (%s): using the default DUID", text, problem)
        return None
    return duid


def stable_duid(state_dir: Path, mac: bytes) -> bytes:
    """The persisted default DUID, created as a DUID-LL of ``mac`` when missing or unreadable."""
    path = state_dir / DUID_FILE
    try:
        duid = bytes.fromhex(path.read_text().strip())
        if check_duid(duid) is None:
            return duid
        log.warning("dhcp6: %s holds an unusable DUID: making a new one", path)
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as e:
        log.warning("dhcp6: cannot read %s (%s): making a new DUID", path, e)
    duid = duid_ll(mac)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        replace_file(path, (duid.hex() + "\n").encode())
    except OSError as e:
        log.warning("dhcp6: cannot persist the DUID in %s: %s", path, e)
    return duid


def client_duid(configured: str, state_dir: Path, mac: bytes) -> bytes:
    return configured_duid(configured) or stable_duid(state_dir, mac)


def iaid_of(mac: bytes) -> int:
    """IAID = the last 4 bytes of the MAC (operators.md §3.4), so it is stable for the link."""
    return int.from_bytes(mac[-4:].rjust(4, b"\x00"), "big")
