"""OperatorStatus (decisions.md "Operator status"): why a node has the address it has.

One type for every operator, id = the OperatorSpec id (``dhcp4/eth0``,
``dhcp6/eth0``, ``vip/eth0``). DHCP operators fill the lease fields, the VIP
operator the election fields; what does not apply stays empty (omitted).
"""

from __future__ import annotations

from cosi import ResourceDefinition
from netd.resources.base import OptAddr, OptPrefix, OptTime, Spec
from netd.resources.namespaces import NETWORK

OPERATOR_STATUS_TYPE = "OperatorStatuses.net.talos.dev"


class OperatorStatusSpec(Spec):
    OMITEMPTY = frozenset(
        {
            "server",
            "address",
            "lease_time",
            "obtained_at",
            "expires_at",
            "t1",
            "t2",
            "holder",
            "since",
            "term",
            "provider",
            "error",
        }
    )

    operator: str = ""  # dhcp4, dhcp6, vip
    link_name: str = ""
    state: str = ""  # the operator's state machine state (DHCP: init, selecting, bound, ...)
    # DHCP
    server: OptAddr = None
    address: OptPrefix = None
    lease_time: int = 0  # seconds
    obtained_at: OptTime = None
    expires_at: OptTime = None
    t1: OptTime = None  # when it renews
    t2: OptTime = None  # when it rebinds
    # VIP
    holder: bool = False
    since: OptTime = None
    term: str = ""  # etcd lease id or revision
    provider: str = ""  # "", equinixMetal, hcloud
    # any operator: the last error, cleared on success
    error: str = ""


OPERATOR_STATUS_DEFINITION = ResourceDefinition(
    type=OPERATOR_STATUS_TYPE,
    display_type="OperatorStatus",
    default_namespace=NETWORK,
    spec_model=OperatorStatusSpec,
    aliases=("operatorstatuses", "operators"),
    print_columns=(
        ("STATE", "{.state}"),
        ("ADDRESS", "{.address}"),
        ("SERVER", "{.server}"),
        ("EXPIRES", "{.expiresAt}"),
        ("HOLDER", "{.holder}"),
    ),
)

