"""NetworkStatus (netd.md §2.10, §7.2), ID ``status``."""

from __future__ import annotations

from cosi import ResourceDefinition
from netd.resources.base import Spec
from netd.resources.namespaces import NETWORK

NETWORK_STATUS_TYPE = "NetworkStatuses.net.talos.dev"


class NetworkStatus(Spec):
    address_ready: bool = False
    connectivity_ready: bool = False
    hostname_ready: bool = False
    etc_files_ready: bool = False


NETWORK_STATUS_DEFINITION = ResourceDefinition(
    type=NETWORK_STATUS_TYPE,
    display_type="NetworkStatus",
    default_namespace=NETWORK,
    spec_model=NetworkStatus,
    aliases=("netstatus", "netstatuses"),
    print_columns=(
        ("ADDRESS", "{.addressReady}"),
        ("CONNECTIVITY", "{.connectivityReady}"),
        ("HOSTNAME", "{.hostnameReady}"),
        ("ETC", "{.etcFilesReady}"),
    ),
)
