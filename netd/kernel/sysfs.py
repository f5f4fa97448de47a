"""Per-link facts that rtnetlink does not carry: driver, bus path, PCI ID.

Read from ``/sys/class/net/<name>/device/uevent`` (netd.md §2.5) of the mount
namespace we run in; that shows the links of our network namespace only if
sysfs was mounted from inside it (the test harness and a real node both do
so). A link without a ``device`` directory is virtual: every value is empty.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

SYS_CLASS_NET = "/sys/class/net"


@dataclass(frozen=True)
class DeviceInfo:
    driver: str = ""
    bus_path: str = ""
    pci_id: str = ""


def device_info(name: str, root: str = SYS_CLASS_NET) -> DeviceInfo:
    try:
        with open(os.path.join(root, name, "device", "uevent")) as f:
            lines = f.read().splitlines()
    except OSError:
        return DeviceInfo()
    env = dict(line.split("=", 1) for line in lines if "=" in line)
    driver = env.get("DRIVER", "")
    if not driver:
        link = os.path.join(root, name, "device", "driver")
        driver = os.path.basename(os.path.realpath(link)) if os.path.exists(link) else ""
    return DeviceInfo(driver=driver, bus_path=env.get("PCI_SLOT_NAME", ""), pci_id=env.get("PCI_ID", ""))
