"""The operator runner (operators/runner.py) in a real cosi.Runtime with fake operators:
start on link up, output published with the operator's id prefix and layer operator, status,
stop and withdrawal on link down, restart on a changed spec, crash restart keeping the
output, leave, and an operator that is not available."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from cosi import Backoff, Runtime, State
from netd.netip import parse_prefix
from netd.resources import (
    ADDRESS_SPEC_TYPE,
    LINK_STATUS_TYPE,
    NETWORK,
    NETWORK_CONFIG,
    OPERATOR_SPEC_TYPE,
    AddressSpec,
    OperatorSpec,
    register_all,
)
from netd.resources.enums import ConfigLayer, OperationalState
from netd.resources.enums import Operator as Kind
from netd.resources.link import LinkSpec, LinkStatus
from netd.resources.operator import DHCP4OperatorSpec
from netd.resources.operator_status import OPERATOR_STATUS_TYPE, OperatorStatusSpec
from operators.base import Operator, OperatorHost, OperatorOutput
from operators.registry import OperatorRegistry
from operators.runner import OperatorSpecController, state_dir_name

SRC = "network.LinkStatusController"


async def until(cond: Callable[[], object], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


class Fake(Operator):
    instances: list[Fake] = []

    def __init__(self, spec: OperatorSpec, crash: bool = False) -> None:
        self.spec = spec
        self.crash = crash
        self.cancelled = False
        self.left = False
        self.index: int | None = None
        self.state_dir: Path | None = None
        Fake.instances.append(self)

    async def run(self, host: OperatorHost) -> None:
        self.index = await host.wait_link_up()
        self.state_dir = host.state_dir
        addr = AddressSpec.configured(parse_prefix("10.0.0.5/24"), host.spec.link_name, ConfigLayer.DEFAULT)
        addr = addr.model_copy(update={"layer": ConfigLayer.OPERATOR})
        mtu = LinkSpec(name=host.spec.link_name, mtu=1400, up=True)  # no layer: the runner sets it
        host.publish(OperatorOutput(addresses={addr.id(): addr}, links={"eth0": mtu}))
        host.set_status(OperatorStatusSpec(operator="dhcp4", link_name="eth0", state="bound"))
        if self.crash:
            self.crash = False
            raise RuntimeError("boom")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise

    async def leave(self, host: OperatorHost) -> None:
        self.left = True


def link(state: State, up: bool = True) -> None:
    st = OperationalState.UP if up else OperationalState.LOWER_LAYER_DOWN
    state.put(NETWORK, LINK_STATUS_TYPE, "eth0", LinkStatus(index=7, operational_state=st), SRC)


def spec(metric: int = 1024) -> OperatorSpec:
    return OperatorSpec(
        operator=Kind.DHCP4, link_name="eth0", require_up=True, dhcp4=DHCP4OperatorSpec(route_metric=metric)
    )


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[State, OperatorSpecController]]:
    Fake.instances = []
    state = State()
    register_all(state)
    reg = OperatorRegistry()
    reg.register(Kind.DHCP4, lambda s: Fake(s, crash=s.dhcp4.route_metric == 666 and not Fake.instances))
    runner = OperatorSpecController(tmp_path, reg, backoff=lambda: Backoff(initial=0.01, maximum=0.05))
    rt = Runtime(state)
    rt.register(runner)
    rt.start()
    yield state, runner
    await rt.stop()


ADDR_ID = "dhcp4/eth0/eth0/10.0.0.5/24"


async def test_start_publish_stop(env: tuple[State, OperatorSpecController], tmp_path: Path) -> None:
    state, _runner = env
    state.put(NETWORK, OPERATOR_SPEC_TYPE, "dhcp4/eth0", spec(), "network.OperatorMergeController")
    link(state, up=False)
    await asyncio.sleep(0.05)
    assert not Fake.instances  # requireUp: not while lowerLayerDown
    link(state, up=True)
    await until(lambda: state.get(NETWORK_CONFIG, ADDRESS_SPEC_TYPE, ADDR_ID) is not None)
    addr = state.must_get(NETWORK_CONFIG, ADDRESS_SPEC_TYPE, ADDR_ID)
    assert addr.md.owner == "network.OperatorSpecController"
    mtu = state.must_get(NETWORK_CONFIG, "LinkSpecs.net.talos.dev", "dhcp4/eth0/eth0")
    assert mtu.spec.layer is ConfigLayer.OPERATOR  # type: ignore[attr-defined]
    await until(lambda: state.get(NETWORK, OPERATOR_STATUS_TYPE, "dhcp4/eth0") is not None)
    (op,) = Fake.instances
    assert op.index == 7
    assert op.state_dir == tmp_path / "operators" / state_dir_name("dhcp4/eth0") and op.state_dir.is_dir()

    link(state, up=False)  # §1.3: stopped, output withdrawn at once
    await until(lambda: state.get(NETWORK_CONFIG, ADDRESS_SPEC_TYPE, ADDR_ID) is None)
    await until(lambda: op.cancelled)
    assert state.get(NETWORK, OPERATOR_STATUS_TYPE, "dhcp4/eth0") is None
    assert not op.left  # a plain stop is no leave


async def test_changed_spec_restarts(env: tuple[State, OperatorSpecController]) -> None:
    state, _runner = env
    link(state)
    state.put(NETWORK, OPERATOR_SPEC_TYPE, "dhcp4/eth0", spec(), "network.OperatorMergeController")
    await until(lambda: state.get(NETWORK_CONFIG, ADDRESS_SPEC_TYPE, ADDR_ID) is not None)
    # only the layer changed: same operator
    same = spec().model_copy(update={"layer": ConfigLayer.CONFIGURATION})
    state.put(NETWORK, OPERATOR_SPEC_TYPE, "dhcp4/eth0", same, "network.OperatorMergeController")
    await asyncio.sleep(0.05)
    assert len(Fake.instances) == 1
    state.put(NETWORK, OPERATOR_SPEC_TYPE, "dhcp4/eth0", spec(200), "network.OperatorMergeController")
    await until(lambda: len(Fake.instances) == 2 and Fake.instances[1].index == 7)
    assert Fake.instances[0].cancelled
    await until(lambda: state.get(NETWORK_CONFIG, ADDRESS_SPEC_TYPE, ADDR_ID) is not None)


async def test_crash_restarts_keeping_output(env: tuple[State, OperatorSpecController]) -> None:
    state, runner = env
    link(state)
    state.put(NETWORK, OPERATOR_SPEC_TYPE, "dhcp4/eth0", spec(666), "network.OperatorMergeController")
    await until(lambda: len(Fake.instances) == 2)
    assert runner.running["dhcp4/eth0"].restarts == 1
    r = state.must_get(NETWORK_CONFIG, ADDRESS_SPEC_TYPE, ADDR_ID)
    assert r.md.version == 1  # never withdrawn in between


async def test_leave(env: tuple[State, OperatorSpecController]) -> None:
    state, runner = env
    link(state)
    state.put(NETWORK, OPERATOR_SPEC_TYPE, "dhcp4/eth0", spec(), "network.OperatorMergeController")
    await until(lambda: state.get(NETWORK_CONFIG, ADDRESS_SPEC_TYPE, ADDR_ID) is not None)
    assert await runner.leave()
    (op,) = Fake.instances
    assert op.cancelled and op.left
    await asyncio.sleep(0.05)
    assert len(Fake.instances) == 1  # nothing starts again


async def test_not_available(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import sys

    reg = OperatorRegistry()
    saved = sys.modules.get("operators.dhcp6")
    sys.modules["operators.dhcp6"] = None  # type: ignore[assignment]  # import fails
    try:
        s = OperatorSpec(operator=Kind.DHCP6, link_name="eth0")
        assert reg.create(s) is None
        assert reg.create(s) is None
    finally:
        if saved is not None:
            sys.modules["operators.dhcp6"] = saved
        else:
            del sys.modules["operators.dhcp6"]
    assert sum("operator dhcp6 not available" in r.message for r in caplog.records) == 1
