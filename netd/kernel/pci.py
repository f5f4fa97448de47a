"""PCI vendor and product names of a link's device (netd.md §2.5: LinkStatus vendorID,
productID, vendor, product), from sysfs and the pci.ids database."""

from __future__ import annotations

import functools
import os

PCI_DEVICES = "/sys/bus/pci/devices"
PCI_IDS = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids")


@functools.cache
def _pci_db() -> dict[tuple[int, int | None], str]:
    """pci.ids names: (vendor, None) → vendor name, (vendor, device) → product name.
    Empty when the database is not installed (the names are then left out)."""
    db: dict[tuple[int, int | None], str] = {}
    for path in PCI_IDS:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                vendor: int | None = None
                for line in f:
                    if not line.strip() or line.startswith("#"):
                        continue
                    if line.startswith("C "):
                        break  # device classes follow: not needed
                    if not line.startswith("\t"):
                        vendor = int(line[:4], 16)
                        db[(vendor, None)] = line[4:].strip()
                    elif vendor is not None and not line.startswith("\t\t"):
                        db[(vendor, int(line[1:5], 16))] = line[5:].strip()
        except (OSError, ValueError):
            continue
        break
    return db


def pci_info(bus_path: str, root: str = PCI_DEVICES) -> dict[str, str]:
    """vendorID/productID (``0x%04x``) and their pci.ids names for a PCI bus path (netd.md §2.5)."""
    if not bus_path or "/" in bus_path:
        return {}
    try:
        with open(os.path.join(root, bus_path, "vendor")) as f:
            vendor = int(f.read().strip(), 16)
        with open(os.path.join(root, bus_path, "device")) as f:
            device = int(f.read().strip(), 16)
    except (OSError, ValueError):
        return {}
    db = _pci_db()
    return {
        "vendor_id": f"0x{vendor:04x}",
        "product_id": f"0x{device:04x}",
        "vendor": db.get((vendor, None), ""),
        "product": db.get((vendor, device), ""),
    }


