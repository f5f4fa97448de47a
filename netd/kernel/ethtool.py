"""Link facts from ethtool (netd.md §2.5): link detected, speed, duplex, port, driver info.

Read with the SIOCETHTOOL ioctl on a datagram socket of our network namespace:
it works on every kernel we run (the genetlink family is missing from older and
UML kernels), costs microseconds, and needs no socket per task. ``ETHTOOL_GSET``
is the legacy settings call, but the kernel serves it from the drivers'
``get_link_ksettings`` for all current drivers, which is all we need (speed,
duplex, port). A device without the operation answers EOPNOTSUPP: that is
"unavailable", never an error worth logging (netd.md §5.7). The permanent
address comes from rtnetlink (IFLA_PERM_ADDRESS), which carries the same value.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import socket
import struct
from dataclasses import dataclass

from netd.resources.enums import Duplex, Port

log = logging.getLogger("netd.kernel.ethtool")

SIOCETHTOOL = 0x8946
ETHTOOL_GSET = 0x1
ETHTOOL_GDRVINFO = 0x3
ETHTOOL_GLINK = 0xA

_SILENT = {errno.EOPNOTSUPP, errno.EINVAL, errno.ENODEV, errno.ENXIO, errno.EPERM, errno.EBUSY}
# struct ethtool_cmd (44 bytes) and struct ethtool_drvinfo (196 bytes).
_CMD = struct.Struct("=IIIHBBBBBBIIHBBI8x")
_DRVINFO_SIZE = 196
_IFNAMSIZ = 16


@dataclass(frozen=True)
class EthtoolInfo:
    """What ethtool told us; the netd.md §2.5 defaults where it could not."""

    link_state: bool = False
    speed_mbit: int = 0
    port: Port = Port.OTHER
    duplex: Duplex = Duplex.UNKNOWN
    driver: str = ""
    driver_version: str = ""
    firmware_version: str = ""
    bus_info: str = ""


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace")


class Ethtool:
    """One datagram socket for all ioctls (reused: no socket per query)."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None

    def _fd(self) -> int:
        if self._sock is None:
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        return self._sock.fileno()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _ioctl(self, name: str, buf: ctypes.Array[ctypes.c_char]) -> bool:
        """SIOCETHTOOL on ``name`` with ``buf`` (its first u32 is the command)."""
        encoded = name.encode()
        if len(encoded) >= _IFNAMSIZ:
            return False
        ifreq = struct.pack(f"{_IFNAMSIZ}sP8x", encoded, ctypes.addressof(buf))
        try:
            fcntl.ioctl(self._fd(), SIOCETHTOOL, ifreq)
        except OSError as e:
            if e.errno not in _SILENT:
                log.debug("ethtool on %s failed: %s", name, e)
            return False
        return True

    def link_detected(self, name: str) -> bool | None:
        buf = ctypes.create_string_buffer(struct.pack("=II", ETHTOOL_GLINK, 0), 8)
        if not self._ioctl(name, buf):
            return None
        return bool(struct.unpack_from("=II", buf.raw)[1])

    def settings(self, name: str) -> tuple[int, Port, Duplex] | None:
        """(speed in Mbit/s, port, duplex); speed 4294967295 when unknown, as the kernel says."""
        buf = ctypes.create_string_buffer(_CMD.pack(ETHTOOL_GSET, *([0] * 15)), _CMD.size)
        if not self._ioctl(name, buf):
            return None
        f = _CMD.unpack_from(buf.raw)
        speed = f[3] | (f[12] << 16)
        return speed, Port(f[5]), Duplex(f[4])

    def drvinfo(self, name: str) -> tuple[str, str, str, str] | None:
        """(driver, version, firmware version, bus info)."""
        buf = ctypes.create_string_buffer(struct.pack("=I", ETHTOOL_GDRVINFO), _DRVINFO_SIZE)
        if not self._ioctl(name, buf):
            return None
        raw = buf.raw
        return _cstr(raw[4:36]), _cstr(raw[36:68]), _cstr(raw[68:100]), _cstr(raw[100:132])

    def info(self, name: str) -> EthtoolInfo:
        """Everything at once; missing pieces keep the defaults."""
        link = self.link_detected(name)
        settings = self.settings(name)
        drv = self.drvinfo(name)
        speed, port, duplex = settings if settings is not None else (0, Port.OTHER, Duplex.UNKNOWN)
        driver, version, fw, bus = drv if drv is not None else ("", "", "", "")
        return EthtoolInfo(
            link_state=bool(link),
            speed_mbit=speed,
            port=port,
            duplex=duplex,
            driver=driver,
            driver_version=version,
            firmware_version=fw,
            bus_info=bus,
        )
