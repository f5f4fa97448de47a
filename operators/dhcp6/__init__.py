"""DHCPv6 client operator (operators.md §3 with §0's overrides: RFC 8415 RENEW/REBIND, stable DUID,
lease lifetimes on the address). ``packet`` is the codec, ``machine`` the state machine,
``duid`` the client identity, ``socket`` the link, ``operator`` the adapter the runner starts."""

from .operator import DHCP6Operator

__all__ = ["DHCP6Operator"]
