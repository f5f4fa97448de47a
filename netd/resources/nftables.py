"""NfTablesChain (netd.md §2.13): a base chain of the ``inet talos`` table and its rules.

Rule matchers are Go pointers in the reference: absent (``None``) matchers are
omitted, present ones are emitted even when their contents are zero.
"""

from __future__ import annotations

from pydantic import Field

from cosi import ResourceDefinition
from netd.resources.base import IPPrefix, Spec
from netd.resources.enums import (
    ConntrackState,
    MatchOperator,
    NfTablesChainHook,
    NfTablesChainPriority,
    NfTablesVerdict,
    Protocol,
)
from netd.resources.namespaces import NETWORK

NFTABLES_CHAIN_TYPE = "NfTablesChains.net.talos.dev"


class NfTablesIfNameMatch(Spec):
    interface_names: list[str] = Field(default_factory=list, alias="interfaceName")
    operator: MatchOperator = MatchOperator.EQUAL


class NfTablesMark(Spec):
    """Match: ``(mark & mask) ^ xor == value``; set: ``mark = (mark & mask) ^ xor``."""

    OMITEMPTY = frozenset({"mask", "xor", "value"})

    mask: int = 0
    xor: int = 0
    value: int = 0


class NfTablesConntrackStateMatch(Spec):
    states: list[ConntrackState] = Field(default_factory=list)


class NfTablesAddressMatch(Spec):
    OMITEMPTY = frozenset({"include_subnets", "exclude_subnets", "invert"})

    include_subnets: list[IPPrefix] = Field(default_factory=list)
    exclude_subnets: list[IPPrefix] = Field(default_factory=list)
    invert: bool = False


class PortRange(Spec):
    lo: int = 0
    hi: int = 0


class NfTablesPortMatch(Spec):
    ranges: list[PortRange] = Field(default_factory=list)


class NfTablesLayer4Match(Spec):
    OMITNONE = frozenset({"match_source_port", "match_destination_port"})

    protocol: Protocol = Protocol(0)
    match_source_port: NfTablesPortMatch | None = None
    match_destination_port: NfTablesPortMatch | None = None


class NfTablesLimitMatch(Spec):
    packet_rate_per_second: int = 0


class NfTablesClampMSS(Spec):
    mtu: int = 0


class NfTablesRule(Spec):
    OMITNONE = frozenset(
        {
            "match_i_if_name",
            "match_o_if_name",
            "match_mark",
            "match_conntrack_state",
            "match_source_address",
            "match_destination_address",
            "match_layer4",
            "match_limit",
            "clamp_mss",
            "set_mark",
            "verdict",
        }
    )
    OMITEMPTY = frozenset({"anonymous_counter"})

    match_i_if_name: NfTablesIfNameMatch | None = Field(default=None, alias="matchIIfName")
    match_o_if_name: NfTablesIfNameMatch | None = Field(default=None, alias="matchOIfName")
    match_mark: NfTablesMark | None = None
    match_conntrack_state: NfTablesConntrackStateMatch | None = None
    match_source_address: NfTablesAddressMatch | None = None
    match_destination_address: NfTablesAddressMatch | None = None
    match_layer4: NfTablesLayer4Match | None = Field(default=None, alias="matchLayer4")
    match_limit: NfTablesLimitMatch | None = None
    clamp_mss: NfTablesClampMSS | None = Field(default=None, alias="clampMSS")
    set_mark: NfTablesMark | None = None
    anonymous_counter: bool = False
    verdict: NfTablesVerdict | None = None


class NfTablesChain(Spec):
    type: str = ""  # filter / route / nat
    hook: NfTablesChainHook = NfTablesChainHook.PREROUTING
    priority: NfTablesChainPriority = NfTablesChainPriority.FILTER
    policy: NfTablesVerdict = NfTablesVerdict.DROP
    rules: list[NfTablesRule] = Field(default_factory=list)


NFTABLES_CHAIN_DEFINITION = ResourceDefinition(
    type=NFTABLES_CHAIN_TYPE,
    display_type="NfTablesChain",
    default_namespace=NETWORK,
    spec_model=NfTablesChain,
    aliases=("chain", "chains"),
    print_columns=(
        ("TYPE", "{.type}"),
        ("HOOK", "{.hook}"),
        ("PRIORITY", "{.priority}"),
        ("POLICY", "{.policy}"),
    ),
)
