"""The Virtual IP operator (operators.md §4): etcd election, address while leader, announcements.

``operators.registry`` imports :class:`VIPOperator` lazily (``VIPOperator(spec, etcd_endpoints)``).
"""

from .operator import VIPOperator

__all__ = ["VIPOperator"]
