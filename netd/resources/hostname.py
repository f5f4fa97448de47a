"""HostnameSpec and HostnameStatus (netd.md §2.7)."""

from __future__ import annotations

from cosi import ResourceDefinition
from netd.resources.base import Spec
from netd.resources.enums import ConfigLayer
from netd.resources.namespaces import NETWORK

HOSTNAME_SPEC_TYPE = "HostnameSpecs.net.talos.dev"
HOSTNAME_STATUS_TYPE = "HostnameStatuses.net.talos.dev"

MAX_HOSTNAME_LEN = 63
MAX_FQDN_LEN = 253


def split_fqdn(fqdn: str) -> tuple[str, str]:
    """(hostname, domainname): split at the first dot."""
    host, _, domain = fqdn.partition(".")
    return host, domain


def parse_fqdn(fqdn: str) -> tuple[str, str]:
    """As :func:`split_fqdn`, validated (hostname 1..63, FQDN ≤ 253); ValueError if invalid."""
    if len(fqdn) > MAX_FQDN_LEN:
        raise ValueError(f"fqdn is too long: {len(fqdn)}")
    host, domain = split_fqdn(fqdn)
    if not 1 <= len(host) <= MAX_HOSTNAME_LEN:
        raise ValueError(f"invalid hostname {host!r}")
    return host, domain


def join_fqdn(hostname: str, domainname: str) -> str:
    return f"{hostname}.{domainname}" if domainname else hostname


class HostnameSpec(Spec):
    hostname: str = ""
    domainname: str = ""
    layer: ConfigLayer = ConfigLayer.DEFAULT

    def fqdn(self) -> str:
        return join_fqdn(self.hostname, self.domainname)

    @classmethod
    def from_fqdn(cls, fqdn: str, layer: ConfigLayer = ConfigLayer.DEFAULT) -> HostnameSpec:
        """Parse and validate an FQDN (ValueError if invalid)."""
        host, domain = parse_fqdn(fqdn)
        return cls(hostname=host, domainname=domain, layer=layer)


class HostnameStatus(Spec):
    hostname: str = ""
    domainname: str = ""

    def fqdn(self) -> str:
        return join_fqdn(self.hostname, self.domainname)


HOSTNAME_SPEC_DEFINITION = ResourceDefinition(
    type=HOSTNAME_SPEC_TYPE,
    display_type="HostnameSpec",
    default_namespace=NETWORK,
    spec_model=HostnameSpec,
)
HOSTNAME_STATUS_DEFINITION = ResourceDefinition(
    type=HOSTNAME_STATUS_TYPE,
    display_type="HostnameStatus",
    default_namespace=NETWORK,
    spec_model=HostnameStatus,
    aliases=("hostname",),
    print_columns=(("HOSTNAME", "{.hostname}"), ("DOMAINNAME", "{.domainname}")),
)
