"""The ingress firewall controllers (netd.md §8.2, §8.4): the ``ingress`` chain built from
the machine config, and the chain controller over a fake nftables backend (no kernel)."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from cosi import Backoff, Runtime, State
from netd.config import load_config
from netd.controllers.nftables import (
    APPLIED_KEY,
    APPLIED_KIND,
    NfTablesChainConfigController,
    NfTablesChainController,
    ingress_chain,
)
from netd.kernel.applied import Applied
from netd.kernel.nftables import NftablesError
from netd.resources import register_all
from netd.resources.enums import (
    ConntrackState,
    MatchOperator,
    NfTablesChainHook,
    NfTablesChainPriority,
    NfTablesVerdict,
    Protocol,
)
from netd.resources.machine_config import MACHINE_CONFIG_ID, MACHINE_CONFIG_TYPE, MachineConfigSpec
from netd.resources.namespaces import CONFIG, NETWORK
from netd.resources.nftables import NFTABLES_CHAIN_TYPE, NfTablesChain, NfTablesRule

ACCEPT, DROP = NfTablesVerdict.ACCEPT, NfTablesVerdict.DROP

MACHINE = "version: v1alpha1\nmachine:\n  type: worker\n"
CLUSTER = (
    "cluster:\n  network:\n    podSubnets: [10.244.0.0/16]\n"
    "    serviceSubnets: [10.96.0.0/12, fd00:96::/108]\n"
)
BLOCK = "---\napiVersion: v1alpha1\nkind: NetworkDefaultActionConfig\ningress: block\n"
ACCEPT_DOC = "---\napiVersion: v1alpha1\nkind: NetworkDefaultActionConfig\ningress: accept\n"
RULE = """---
apiVersion: v1alpha1
kind: NetworkRuleConfig
name: kubelet-ingress
portSelector:
  ports: ["8000-9000", 10250, 53]
  protocol: tcp
ingress:
  - subnet: 172.20.0.0/24
    except: 172.20.0.3/32
  - subnet: 2001:db8::/64
"""
RULE2 = """---
apiVersion: v1alpha1
kind: NetworkRuleConfig
name: dns
portSelector:
  ports: [53]
  protocol: udp
ingress:
  - subnet: 10.0.0.0/8
"""


def spec(text: str) -> MachineConfigSpec:
    loaded = load_config(text)
    return MachineConfigSpec(config=loaded.config, default_action=loaded.default_action, rules=loaded.rules)


def dump(rule: NfTablesRule) -> dict[str, Any]:
    return json.loads(rule.model_dump_json(by_alias=True))


TRUSTED = {
    "matchIIfName": {"interfaceName": ["lo", "siderolink", "kubespan"], "operator": "=="},
    "anonymousCounter": True,
    "verdict": "accept",
}
BLOCK_BASE = [
    TRUSTED,
    {
        "matchConntrackState": {"states": ["established", "related"]},
        "anonymousCounter": True,
        "verdict": "accept",
    },
    {"matchConntrackState": {"states": ["invalid"]}, "anonymousCounter": True, "verdict": "drop"},
    {
        "matchLayer4": {"protocol": "icmp"},
        "matchLimit": {"packetRatePerSecond": 5},
        "anonymousCounter": True,
        "verdict": "accept",
    },
    {
        "matchLayer4": {"protocol": "icmpv6"},
        "matchLimit": {"packetRatePerSecond": 5},
        "anonymousCounter": True,
        "verdict": "accept",
    },
]


def user_rule(invert: bool, verdict: str) -> dict[str, Any]:
    match: dict[str, Any] = {
        "includeSubnets": ["172.20.0.0/24", "2001:db8::/64"],
        "excludeSubnets": ["172.20.0.3/32"],
    }
    if invert:
        match["invert"] = True
    return {
        "matchSourceAddress": match,
        "matchLayer4": {
            "protocol": "tcp",
            "matchDestinationPort": {
                "ranges": [{"lo": 53, "hi": 53}, {"lo": 8000, "hi": 9000}, {"lo": 10250, "hi": 10250}]
            },
        },
        "anonymousCounter": True,
        "verdict": verdict,
    }


# ---- §8.2 -----------------------------------------------------------------------------------------


def test_no_chain_without_config_or_in_accept_mode_without_rules() -> None:
    assert ingress_chain(None) is None
    assert ingress_chain(spec(MACHINE)) is None
    assert ingress_chain(spec(MACHINE + ACCEPT_DOC)) is None
    assert ingress_chain(spec(MACHINE + CLUSTER + ACCEPT_DOC)) is None


def test_accept_mode_with_rules() -> None:
    chain = ingress_chain(spec(MACHINE + CLUSTER + RULE))
    assert chain is not None
    assert (chain.type, chain.hook, chain.priority, chain.policy) == (
        "filter",
        NfTablesChainHook.INPUT,
        NfTablesChainPriority.FILTER,
        ACCEPT,
    )
    # no conntrack/ICMP/cluster rules in accept mode, even with a cluster section
    assert [dump(r) for r in chain.rules] == [TRUSTED, user_rule(invert=True, verdict="drop")]


def test_block_mode_without_cluster_section() -> None:
    chain = ingress_chain(spec(MACHINE + BLOCK + RULE + RULE2))
    assert chain is not None and chain.policy == DROP
    rules = [dump(r) for r in chain.rules]
    assert rules[:5] == BLOCK_BASE
    assert rules[5] == user_rule(invert=False, verdict="accept")
    assert rules[6]["matchLayer4"]["protocol"] == "udp"
    assert rules[6]["matchSourceAddress"] == {"includeSubnets": ["10.0.0.0/8"]}  # no except: no key
    assert len(rules) == 7


def test_block_mode_with_cluster_section() -> None:
    chain = ingress_chain(spec(MACHINE + CLUSTER + BLOCK + RULE))
    assert chain is not None
    rules = [dump(r) for r in chain.rules]
    assert rules[:5] == BLOCK_BASE
    cidrs = ["10.244.0.0/16", "10.96.0.0/12", "fd00:96::/108"]  # pods then services
    assert rules[5] == {
        "matchSourceAddress": {"includeSubnets": cidrs},
        "matchDestinationAddress": {"includeSubnets": cidrs},
        "anonymousCounter": True,
        "verdict": "accept",
    }
    assert rules[6] == user_rule(invert=False, verdict="accept")


def test_block_mode_cluster_defaults_and_no_rules() -> None:
    chain = ingress_chain(spec(MACHINE + "cluster:\n  id: abc\n" + BLOCK))
    assert chain is not None
    assert len(chain.rules) == 6
    assert dump(chain.rules[5])["matchSourceAddress"] == {"includeSubnets": ["10.244.0.0/16", "10.96.0.0/12"]}


def test_rules_without_v1alpha1_document() -> None:
    chain = ingress_chain(spec(RULE.removeprefix("---\n") + BLOCK))
    assert chain is not None and len(chain.rules) == 6  # no cluster section to read


def test_rule_model_types() -> None:
    chain = ingress_chain(spec(MACHINE + BLOCK + RULE))
    assert chain is not None
    r = chain.rules[5]
    assert r.match_layer4 is not None and r.match_layer4.protocol == Protocol.TCP
    assert chain.rules[0].match_i_if_name is not None
    assert chain.rules[0].match_i_if_name.operator == MatchOperator.EQUAL
    assert chain.rules[1].match_conntrack_state is not None
    assert chain.rules[1].match_conntrack_state.states == [ConntrackState.ESTABLISHED, ConntrackState.RELATED]


# ---- controllers in a runtime -----------------------------------------------------------------


class FakeNft:
    """Keeps the last committed batch as the "kernel" table; can fail or be changed behind our back."""

    def __init__(self) -> None:
        self.table: dict[str, Any] | None = None
        self.batches: list[dict[str, Any]] = []
        self.error: str | None = None

    def list_table(self) -> dict[str, Any] | None:
        if self.error:
            raise NftablesError(self.error)
        return copy.deepcopy(self.table)

    def apply(self, batch: dict[str, Any]) -> None:
        if self.error:
            raise NftablesError(self.error)
        self.batches.append(batch)
        items: list[dict[str, Any]] = [
            {"table": {"family": "inet", "name": "talos", "handle": len(self.batches)}}
        ]
        for cmd in batch["nftables"]:
            obj = cmd.get("add", {})
            if "chain" in obj:
                items.append({"chain": dict(obj["chain"], handle=len(items))})
            if "rule" in obj:
                items.append({"rule": dict(obj["rule"], handle=len(items))})
        self.table = {"nftables": items}

    def chains(self) -> list[str]:
        assert self.table is not None
        return [i["chain"]["name"] for i in self.table["nftables"] if "chain" in i]


async def until(cond: Callable[[], object], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


@pytest.fixture
async def state() -> State:
    s = State()
    register_all(s)
    return s


@pytest.fixture
async def rt(state: State) -> AsyncIterator[Runtime]:
    r = Runtime(state, backoff=lambda: Backoff(initial=0.01, maximum=0.05))
    yield r
    await r.stop()


def put_config(state: State, text: str) -> None:
    state.put(CONFIG, MACHINE_CONFIG_TYPE, MACHINE_CONFIG_ID, spec(text), "test")


async def test_config_controller_writes_and_destroys_ingress(state: State, rt: Runtime) -> None:
    rt.register(NfTablesChainConfigController())
    rt.start()
    await rt.settle()
    assert state.list(NETWORK, NFTABLES_CHAIN_TYPE) == []
    put_config(state, MACHINE + BLOCK + RULE)
    await rt.settle()
    (res,) = state.list(NETWORK, NFTABLES_CHAIN_TYPE)
    assert res.id == "ingress" and res.md.owner == "network.NfTablesChainConfigController"
    assert isinstance(res.spec, NfTablesChain) and res.spec.policy == DROP
    version = res.md.version
    put_config(state, MACHINE + BLOCK + RULE)  # same content: no write
    await rt.settle()
    assert state.list(NETWORK, NFTABLES_CHAIN_TYPE)[0].md.version == version
    put_config(state, MACHINE)  # accept, no rules: the chain goes away
    await rt.settle()
    assert state.list(NETWORK, NFTABLES_CHAIN_TYPE) == []


async def test_chain_controller_applies_once_and_on_change(state: State, rt: Runtime) -> None:
    nft = FakeNft()
    ctl = NfTablesChainController(Applied(), nft)
    rt.register(NfTablesChainConfigController())
    rt.register(ctl)
    rt.start()
    await rt.settle()
    # no chain resource: the table is still ensured, empty
    assert ctl.applies == 1 and nft.chains() == []
    put_config(state, MACHINE + BLOCK + RULE)
    await rt.settle()
    assert ctl.applies == 2 and nft.chains() == ["ingress"]
    batch = nft.batches[-1]["nftables"]
    assert batch[1] == {"flush": {"table": {"family": "inet", "name": "talos"}}}
    assert not any("delete" in c for c in batch)  # the table had no chain yet
    # steady state: the same config again, an unrelated trigger: nothing committed
    put_config(state, MACHINE + BLOCK + RULE)
    await rt.settle()
    rt.contexts[ctl.name].trigger()
    await rt.settle()
    assert ctl.applies == 2
    # a changed config re-applies, deleting the old chain in the same batch
    put_config(state, MACHINE + BLOCK + RULE2)
    await rt.settle()
    assert ctl.applies == 3
    cmds = nft.batches[-1]["nftables"]
    assert {"delete": {"chain": {"family": "inet", "table": "talos", "name": "ingress"}}} in cmds
    assert cmds.index({"flush": {"table": {"family": "inet", "name": "talos"}}}) < len(cmds)


async def test_chain_controller_reapplies_after_a_foreign_change(state: State, rt: Runtime) -> None:
    nft = FakeNft()
    ctl = NfTablesChainController(Applied(), nft)
    rt.register(NfTablesChainConfigController())
    rt.register(ctl)
    put_config(state, MACHINE + BLOCK + RULE)
    rt.start()
    await rt.settle()
    assert ctl.applies == 1
    assert nft.table is not None
    nft.table["nftables"] = nft.table["nftables"][:-1]  # someone deleted a rule by hand
    rt.contexts[ctl.name].trigger()
    await rt.settle()
    assert ctl.applies == 2
    # counters and handles changing is not a foreign change
    assert nft.table is not None
    for item in nft.table["nftables"]:
        for v in item.values():
            v["handle"] = 1000
    rt.contexts[ctl.name].trigger()
    await rt.settle()
    assert ctl.applies == 2


async def test_restart_adopts_an_unchanged_table(tmp_path: Path) -> None:
    nft = FakeNft()
    path = str(tmp_path / "applied.json")
    for run, want in ((1, 1), (2, 0)):
        state = State()
        register_all(state)
        put_config(state, MACHINE + BLOCK + RULE)
        rt = Runtime(state)
        ctl = NfTablesChainController(Applied(path), nft)
        rt.register(NfTablesChainConfigController())
        rt.register(ctl)
        async with rt:
            await rt.settle()
        assert ctl.applies == want, f"run {run}"
    assert APPLIED_KEY in Applied(path).items(APPLIED_KIND)
    # a restart with another config applies
    state = State()
    register_all(state)
    put_config(state, MACHINE + BLOCK + RULE2)
    rt = Runtime(state)
    ctl = NfTablesChainController(Applied(path), nft)
    rt.register(NfTablesChainConfigController())
    rt.register(ctl)
    async with rt:
        await rt.settle()
    assert ctl.applies == 1


async def test_nftables_unavailable_is_logged_once_and_retried(
    state: State, rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    nft = FakeNft()
    nft.error = "Operation not supported"
    ctl = NfTablesChainController(Applied(), nft)
    rt.register(NfTablesChainConfigController())
    rt.register(ctl)
    put_config(state, MACHINE + BLOCK + RULE)
    caplog.set_level(logging.INFO)
    rt.start()
    await until(lambda: ctl.retry is not None and ctl.retry.pending)
    await asyncio.sleep(1.2)  # several back-off retries
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "Operation not supported" in errors[0].getMessage()
    assert rt.restarts.get(ctl.name, 0) == 0  # degraded, not crashed
    assert state.get(NETWORK, NFTABLES_CHAIN_TYPE, "ingress") is not None
    nft.error = None  # nf_tables came back (module loaded): the retry applies
    await until(lambda: ctl.applies == 1, timeout=40)
    assert nft.chains() == ["ingress"]
