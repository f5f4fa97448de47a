"""The tunable limits of one service instance and the §4.8 request validation against them."""

from __future__ import annotations

from dataclasses import dataclass

from . import constants as c
from .errors import InvalidArgument


@dataclass(frozen=True, slots=True)
class Limits:
    """Defaults are the spec values (constants.py); every field is a command-line flag."""

    max_id_length: int = c.MAX_ID_LENGTH
    max_data: int = c.MAX_AFFILIATE_DATA
    max_endpoint_blob: int = c.MAX_ENDPOINT_BLOB
    max_ttl: float = c.MAX_TTL
    max_affiliates: int = c.MAX_AFFILIATES_PER_CLUSTER
    max_endpoints: int = c.MAX_ENDPOINTS_PER_AFFILIATE
    watch_buffer: int = c.WATCH_BUFFER

    def check_id(self, name: str, value: str) -> None:
        # §4.8: lengths are bytes on the wire, not characters.
        n = len(value.encode())
        if n == 0:
            raise InvalidArgument(name, "must not be empty")
        if n > self.max_id_length:
            raise InvalidArgument(name, f"is {n} bytes, at most {self.max_id_length} allowed")

    def check_update(self, data: bytes, endpoints: list[bytes], ttl: float) -> None:
        if len(data) > self.max_data:
            raise InvalidArgument("affiliate_data", f"is {len(data)} bytes, at most {self.max_data} allowed")
        for i, blob in enumerate(endpoints):
            if len(blob) > self.max_endpoint_blob:
                raise InvalidArgument(
                    f"affiliate_endpoints[{i}]",
                    f"is {len(blob)} bytes, at most {self.max_endpoint_blob} allowed",
                )
        if ttl < 0:
            raise InvalidArgument("ttl", "must not be negative")
        if ttl > self.max_ttl:
            raise InvalidArgument("ttl", f"is {ttl:g}s, at most {self.max_ttl:g}s allowed")
