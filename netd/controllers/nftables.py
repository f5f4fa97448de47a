"""The ingress firewall: MachineConfig → NfTablesChain ``ingress`` → nftables (netd.md §8).

``network.NfTablesChainConfigController`` turns the NetworkDefaultActionConfig
and NetworkRuleConfig documents into the NfTablesChain ``ingress`` (§8.2); the
rule list is a pure function, :func:`ingress_chain`, so it is unit tested
without a runtime.

``network.NfTablesChainController`` compiles every NfTablesChain into one
libnftables batch for the ``inet talos`` table and commits it (§8.4). It only
writes when the compiled JSON differs from what it last applied, or when the
table in the kernel no longer looks like it did right after that apply
(someone else changed it), so steady state writes nothing and counters keep
counting. The record of the last apply lives in ``applied.json`` (kind
``nftables``), so a restart with an unchanged config and an untouched table
adopts the kernel's ruleset instead of rebuilding it. The table's creation is
announced (pending, durably) before the first batch that may create it and
confirmed after (issue 16); the first pass after a start resolves the pending
records of every nftables table, KubeSpan's ``inet talos_kubespan`` included
(its manager announces it the same way): a table that exists is ours, a
missing one is forgotten. A kernel without
nf_tables, or a missing libnftables, is logged once and retried with back-off;
the rest of the node keeps running (decisions.md "Degraded, not dead").
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from cosi import Context, Controller, Input, Output, OutputKind, Phase
from netd.config.models import NetworkRuleConfig
from netd.kernel.applied import Applied
from netd.kernel.nft_tables import LibNftTable
from netd.kernel.nftables import (
    FAMILY,
    TABLE,
    LibNftables,
    NftablesError,
    NftBackend,
    build_batch,
    chains_in_listing,
    compile_ruleset,
    listing_digest,
    ruleset_digest,
)
from netd.netip import Prefix, parse_prefix
from netd.resources.enums import (
    ConntrackState,
    MatchOperator,
    NfTablesChainHook,
    NfTablesChainPriority,
    NfTablesVerdict,
    Protocol,
)
from netd.resources.machine_config import MachineConfigSpec
from netd.resources.namespaces import NETWORK
from netd.resources.nftables import (
    NFTABLES_CHAIN_TYPE,
    NfTablesAddressMatch,
    NfTablesChain,
    NfTablesConntrackStateMatch,
    NfTablesIfNameMatch,
    NfTablesLayer4Match,
    NfTablesLimitMatch,
    NfTablesPortMatch,
    NfTablesRule,
    PortRange,
)

from .retry import KernelRetry
from .sources import MACHINE_CONFIG_INPUT, machine_config

log = logging.getLogger("network.NfTablesChainConfigController")

INGRESS_CHAIN_ID = "ingress"
ICMP_RATE = 5  # packets/s and burst in block mode (netd.md §11)
TRUSTED_LINKS = ("lo", "siderolink", "kubespan")
APPLIED_KIND = "nftables"
APPLIED_KEY = f"{FAMILY} {TABLE}"


# ---- §8.2: the ingress chain -----------------------------------------------------------------


def _prefixes(texts: Sequence[str], what: str) -> list[Prefix]:
    out: list[Prefix] = []
    for text in texts:
        if not text:
            continue
        try:
            out.append(parse_prefix(text))
        except ValueError as e:
            log.error("%s %r ignored: %s", what, text, e)
    return out


def _user_rule(rule: NetworkRuleConfig, block: bool) -> NfTablesRule:
    try:
        protocol = Protocol.from_name(rule.port_selector.protocol)
    except (KeyError, ValueError):
        protocol = Protocol(0)
    ranges = sorted(rule.port_selector.ports, key=lambda r: (r.lo, r.hi))
    return NfTablesRule(
        match_source_address=NfTablesAddressMatch(
            include_subnets=_prefixes([i.subnet for i in rule.ingress], f"{rule.name}: subnet"),
            exclude_subnets=_prefixes([i.except_ for i in rule.ingress], f"{rule.name}: except"),
            invert=not block,
        ),
        match_layer4=NfTablesLayer4Match(
            protocol=protocol,
            match_destination_port=NfTablesPortMatch(ranges=[PortRange(lo=r.lo, hi=r.hi) for r in ranges]),
        ),
        anonymous_counter=True,
        verdict=NfTablesVerdict.ACCEPT if block else NfTablesVerdict.DROP,
    )


def ingress_chain(mc: MachineConfigSpec | None) -> NfTablesChain | None:
    """The NfTablesChain ``ingress`` for a machine config; None when there is none to write.

    None without a machine config, and in accept mode without rule documents
    (an empty accept-all chain would only cost a hook).
    """
    if mc is None:
        return None
    block = mc.default_action is not None and mc.default_action.ingress == "block"
    if not block and not mc.rules:
        return None
    rules: list[NfTablesRule] = [
        NfTablesRule(
            match_i_if_name=NfTablesIfNameMatch(
                interface_names=list(TRUSTED_LINKS), operator=MatchOperator.EQUAL
            ),
            anonymous_counter=True,
            verdict=NfTablesVerdict.ACCEPT,
        )
    ]
    if block:
        rules += [
            NfTablesRule(
                match_conntrack_state=NfTablesConntrackStateMatch(
                    states=[ConntrackState.ESTABLISHED, ConntrackState.RELATED]
                ),
                anonymous_counter=True,
                verdict=NfTablesVerdict.ACCEPT,
            ),
            NfTablesRule(
                match_conntrack_state=NfTablesConntrackStateMatch(states=[ConntrackState.INVALID]),
                anonymous_counter=True,
                verdict=NfTablesVerdict.DROP,
            ),
            NfTablesRule(
                match_layer4=NfTablesLayer4Match(protocol=Protocol.ICMP),
                match_limit=NfTablesLimitMatch(packet_rate_per_second=ICMP_RATE),
                anonymous_counter=True,
                verdict=NfTablesVerdict.ACCEPT,
            ),
            NfTablesRule(
                match_layer4=NfTablesLayer4Match(protocol=Protocol.ICMPV6),
                match_limit=NfTablesLimitMatch(packet_rate_per_second=ICMP_RATE),
                anonymous_counter=True,
                verdict=NfTablesVerdict.ACCEPT,
            ),
        ]
        cfg = mc.config
        if cfg is not None and cfg.has_cluster:
            net = cfg.cluster.network
            cidrs = _prefixes([*net.pod_subnets, *net.service_subnets], "cluster CIDR")
            rules.append(
                NfTablesRule(
                    match_source_address=NfTablesAddressMatch(include_subnets=cidrs),
                    match_destination_address=NfTablesAddressMatch(include_subnets=list(cidrs)),
                    anonymous_counter=True,
                    verdict=NfTablesVerdict.ACCEPT,
                )
            )
    rules += [_user_rule(r, block) for r in mc.rules]
    return NfTablesChain(
        type="filter",
        hook=NfTablesChainHook.INPUT,
        priority=NfTablesChainPriority.FILTER,
        policy=NfTablesVerdict.DROP if block else NfTablesVerdict.ACCEPT,
        rules=rules,
    )


class NfTablesChainConfigController(Controller):
    name = "network.NfTablesChainConfigController"

    def inputs(self) -> Sequence[Input]:
        return [MACHINE_CONFIG_INPUT]

    def outputs(self) -> Sequence[Output]:
        return [Output(NETWORK, NFTABLES_CHAIN_TYPE, OutputKind.SHARED)]

    async def reconcile(self, ctx: Context) -> None:
        chain = ingress_chain(machine_config(ctx))
        desired: dict[str, BaseModel] = {} if chain is None else {INGRESS_CHAIN_ID: chain}
        ctx.reconcile_owned(NETWORK, NFTABLES_CHAIN_TYPE, desired)


# ---- §8.4: NfTablesChain → nftables ------------------------------------------------------------


class NfTablesChainController(Controller):
    """Commits the compiled NfTablesChains to ``inet talos`` as one transaction, only when needed."""

    name = "network.NfTablesChainController"

    def __init__(self, applied: Applied | None = None, backend: NftBackend | None = None) -> None:
        self.applied = applied if applied is not None else Applied()
        self.backend: NftBackend = backend if backend is not None else LibNftables()
        self.retry: KernelRetry | None = None
        self.applies = 0  # committed batches (tests: steady state commits nothing)
        rec = self.applied.items(APPLIED_KIND).get(APPLIED_KEY, {})
        self._ruleset: str | None = rec.get("ruleset")
        self._kernel: str | None = rec.get("kernel")
        self._resolved = False

    def _resolve(self, ctx: Context) -> None:
        """Once per start: tables whose creation a crash left unconfirmed (ours if they exist)."""
        if self._resolved or not self.applied.pending(APPLIED_KIND):
            self._resolved = True
            return

        def exists(key: str, _data: dict[str, object]) -> bool:
            family, _, name = key.partition(" ")
            if key == APPLIED_KEY:
                return self.backend.list_table() is not None
            return LibNftTable(family, name).list_table() is not None

        ours, dropped = self.applied.resolve(APPLIED_KIND, exists)
        self._resolved = True
        ctx.log.info("%d nftables table creation(s) interrupted by a crash: %d made it", ours + dropped, ours)

    def inputs(self) -> Sequence[Input]:
        return [Input(NETWORK, NFTABLES_CHAIN_TYPE)]

    async def reconcile(self, ctx: Context) -> None:
        if self.retry is None:
            self.retry = KernelRetry(ctx.log)
        chains: dict[str, NfTablesChain] = {}
        for r in ctx.list(NETWORK, NFTABLES_CHAIN_TYPE):
            if r.md.phase is Phase.RUNNING:
                assert isinstance(r.spec, NfTablesChain)
                chains[r.id] = r.spec
        ruleset = compile_ruleset(chains)
        digest = ruleset_digest(ruleset)
        listing: dict[str, Any] | None = {}  # {}: not read (an error before the listing)
        try:
            self._resolve(ctx)
            listing = self.backend.list_table()
            if digest == self._ruleset and listing_digest(listing) == self._kernel:
                self.retry.succeeded(APPLIED_KEY)
                return  # the kernel has exactly what we applied: write nothing
            existing = chains_in_listing(listing) if listing is not None else []
            if (APPLIED_KIND, APPLIED_KEY) not in self.applied:
                self.applied.pend(APPLIED_KIND, APPLIED_KEY, {"ruleset": digest})  # intent first
            self.backend.apply(build_batch(ruleset, existing))
            kernel = listing_digest(self.backend.list_table())
        except NftablesError as e:
            if listing is None:  # the table did not exist before: created or not, the kernel says
                with contextlib.suppress(NftablesError):
                    if self.backend.list_table() is None:
                        self.applied.abandon(APPLIED_KIND, APPLIED_KEY)
            self.retry.failed(APPLIED_KEY, e)
            self.retry.schedule(ctx)
            return
        self.applies += 1
        self._ruleset, self._kernel = digest, kernel
        self.applied.add(APPLIED_KIND, APPLIED_KEY, {"ruleset": digest, "kernel": kernel})
        self.retry.succeeded(APPLIED_KEY)
        ctx.log.info("applied %s %s: %d chain(s)", FAMILY, TABLE, len(chains))
