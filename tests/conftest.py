"""Shared pytest set-up: the `lab` fixture (nodes in network namespaces) and the kernel markers.

Tests under tests/netns, tests/uml and tests/vm get the `netns`, `uml` and `vm` marker from
their directory. uml/vm tests only run inside the matching kernel (`NETD_KERNEL=uml|vm`, set by
`make test-uml` / `make test-vm`); elsewhere they are skipped with the command that runs them.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:  # `import harness`, whatever pytest's import mode
    sys.path.insert(0, str(TESTS_DIR))
# ip, sysctl and friends live in sbin, which a non-login root shell may lack on PATH.
_path = os.environ.get("PATH", "").split(os.pathsep)
os.environ["PATH"] = os.pathsep.join(_path + [d for d in ("/usr/sbin", "/sbin") if d not in _path])

from harness import Lab, sweep_stale  # noqa: E402

KERNEL_ENV = "NETD_KERNEL"
DIR_MARKERS = ("netns", "uml", "vm")
# marker: (what it needs, make target, by-hand prefix of the pytest command line)
KERNELS = {
    "uml": (
        "the UML kernel (dummy, 8021q, bonding)",
        "make test-uml",
        "../shared/tools/uml-run -- env NETD_KERNEL=uml",
    ),
    "vm": (
        "the QEMU VM kernel (kernel WireGuard)",
        "make test-vm",
        "../shared/tools/vm-run -- env NETD_KERNEL=vm TMPDIR=/dev/shm",
    ),
}
NEEDED_TOOLS = ("ip", "nsenter", "unshare", "mount", "sysctl")


def _root_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth links, mounts): run the tests as root"
    missing = [t for t in NEEDED_TOOLS if shutil.which(t) is None]
    if missing:
        return f"needs {', '.join(missing)} on PATH (apt-get install iproute2 util-linux procps)"
    return None


def _fs_type(path: str) -> str:
    """File system type of the mount holding `path` (longest matching mount point)."""
    best, fstype = "", "?"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            mnt, fs = fields[4], fields[fields.index("-") + 1]
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, fstype = mnt, fs
    return fstype


def pytest_report_header(config: pytest.Config) -> list[str]:
    kernel = os.environ.get(KERNEL_ENV, "")
    lines = [f"{KERNEL_ENV}={kernel or '(unset: host kernel)'}"]
    tmp = tempfile.gettempdir()
    if _fs_type(tmp) == "9p":
        # Seen in vm-run: ftruncate() of an unlinked file on its 9p root fails with ENOENT, so
        # pytest's fd capture crashes as soon as a test writes output.
        lines.append(f"WARNING: temp dir {tmp} is on 9p, pytest's output capture breaks: set TMPDIR=/dev/shm")
    return lines


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kernel = os.environ.get(KERNEL_ENV, "")
    no_root = _root_reason()
    for item in items:
        try:
            rel = item.path.resolve().relative_to(TESTS_DIR)
        except ValueError:
            continue
        if rel.parts and rel.parts[0] in DIR_MARKERS:
            item.add_marker(getattr(pytest.mark, rel.parts[0]))
        for name, (what, target, tool) in KERNELS.items():
            if item.get_closest_marker(name) is None or kernel == name:
                continue
            try:
                path = item.path.resolve().relative_to(config.rootpath.resolve())
            except ValueError:
                path = item.path
            reason = (
                f"needs {what}, {KERNEL_ENV}={kernel or '(unset)'}: run `{target}`, "
                f"or by hand `{tool} .venv/bin/pytest {path}`"
            )
            item.add_marker(pytest.mark.skip(reason=reason))
        if no_root and any(item.get_closest_marker(m) for m in DIR_MARKERS):
            item.add_marker(pytest.mark.skip(reason=no_root))


@pytest.fixture(scope="session")
def lab_session() -> Iterator[None]:
    """Once per run: check we can make namespaces, and sweep leftovers of dead earlier runs."""
    reason = _root_reason()
    if reason:
        pytest.skip(reason)
    sweep_stale()
    yield


@pytest.fixture
def lab(lab_session: None) -> Iterator[Lab]:
    """A fresh `harness.Lab`; closed after the test even if it failed. Teardown errors if the
    lab could not be removed completely (a leak would poison later tests)."""
    lab = Lab()
    try:
        yield lab
    finally:
        errors = lab.close()
        left = lab.leftovers()
    if errors or left:
        pytest.fail(f"lab cleanup incomplete: errors={errors} leftovers={left}")
