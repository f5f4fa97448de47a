"""The DHCPv4 operator (operators.md §2 with §0: RFC 2131-correct).

``packet`` (codec) · ``options`` (option payloads) · ``machine`` (the state machine, pure) ·
``lease`` (times, specs, persistence) · ``socket`` (packet + UDP sockets) · ``operator`` (glue).
"""

from .operator import DHCP4Operator

__all__ = ["DHCP4Operator"]
