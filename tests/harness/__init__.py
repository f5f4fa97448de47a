"""Test harness: simulated machines ("nodes") in network namespaces, joined by bridges ("switches").

See README.md beside this file; the `lab` pytest fixture lives in tests/conftest.py.
"""

from .cleanup import sweep_stale
from .daemons import Machined, Service
from .nodes import Lab, Netns, Node, Stub, Switch
from .sysutil import CommandError, wait_until

__all__ = [
    "CommandError",
    "Lab",
    "Machined",
    "Netns",
    "Node",
    "Service",
    "Stub",
    "Switch",
    "sweep_stale",
    "wait_until",
]
