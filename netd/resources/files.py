"""EtcFileSpec and EtcFileStatus (netd.md §2.15), namespace ``files``."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator

from cosi import ResourceDefinition
from netd.resources.base import Spec
from netd.resources.namespaces import FILES

ETC_FILE_SPEC_TYPE = "EtcFileSpecs.files.talos.dev"
ETC_FILE_STATUS_TYPE = "EtcFileStatuses.files.talos.dev"

#: Mode of the network-produced files (0644).
ETC_FILE_MODE = 0o644


def _v_contents(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    raise ValueError(f"contents must be text or bytes, not {type(value).__name__}")


def _s_contents(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


#: File contents: bytes in Python, rendered as (UTF-8) text.
Contents = Annotated[bytes, PlainValidator(_v_contents), PlainSerializer(_s_contents, when_used="json")]


class EtcFileSpec(Spec):
    contents: Contents = b""
    mode: int = ETC_FILE_MODE  # rendered as an integer (420 = 0o644)


class EtcFileStatus(Spec):
    spec_version: str = ""


ETC_FILE_SPEC_DEFINITION = ResourceDefinition(
    type=ETC_FILE_SPEC_TYPE,
    display_type="EtcFileSpec",
    default_namespace=FILES,
    spec_model=EtcFileSpec,
)
ETC_FILE_STATUS_DEFINITION = ResourceDefinition(
    type=ETC_FILE_STATUS_TYPE,
    display_type="EtcFileStatus",
    default_namespace=FILES,
    spec_model=EtcFileStatus,
)
