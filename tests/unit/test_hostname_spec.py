"""HostnameSpecController (with a fake UTS namespace), ResolverSpecController and
TimeServerSpecController in a cosi.Runtime (netd.md §5.4, §5.5)."""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import AsyncIterator, Callable

import pytest

from cosi import Backoff, Input, InputKind, Output, OutputKind, Phase, Runtime, State
from netd.controllers.hostname_spec import HostnameSpecController, apply_uts
from netd.controllers.resolver_spec import ResolverSpecController, TimeServerSpecController
from netd.netip import parse_addr
from netd.resources import register_all
from netd.resources.hostname import HOSTNAME_SPEC_TYPE, HOSTNAME_STATUS_TYPE, HostnameSpec, HostnameStatus
from netd.resources.namespaces import NETWORK
from netd.resources.resolver import RESOLVER_SPEC_TYPE, RESOLVER_STATUS_TYPE, ResolverSpec, ResolverStatus
from netd.resources.timeserver import (
    TIME_SERVER_SPEC_TYPE,
    TIME_SERVER_STATUS_TYPE,
    TimeServerSpec,
    TimeServerStatus,
)

MERGE = "network.HostnameMergeController"  # owner of the merged specs, as in a node


class FakeUts:
    def __init__(self, hostname: str = "localhost", domainname: str = "(none)") -> None:
        self.name = hostname
        self.domain = domainname
        self.calls: list[tuple[str, str]] = []
        self.fail: OSError | None = None

    def hostname(self) -> str:
        return self.name

    def domainname(self) -> str:
        return self.domain

    def set_hostname(self, name: str) -> None:
        if self.fail is not None:
            raise self.fail
        self.calls.append(("sethostname", name))
        self.name = name

    def set_domainname(self, name: str) -> None:
        if self.fail is not None:
            raise self.fail
        self.calls.append(("setdomainname", name))
        self.domain = name


def fast_backoff() -> Backoff:
    return Backoff(initial=0.01, maximum=0.05)


async def until(cond: Callable[[], object], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


def test_apply_uts_only_what_differs() -> None:
    uts = FakeUts("cp1", "(none)")
    assert apply_uts(uts, "cp1", "example.org") == ["setdomainname"]
    assert apply_uts(uts, "cp1", "example.org") == []
    assert apply_uts(uts, "cp2", "") == ["sethostname", "setdomainname"]
    assert (uts.name, uts.domain) == ("cp2", "")


def test_declarations() -> None:
    h = HostnameSpecController(FakeUts())
    assert h.name == "network.HostnameSpecController"
    assert list(h.inputs()) == [Input(NETWORK, HOSTNAME_SPEC_TYPE, InputKind.STRONG)]
    assert list(h.outputs()) == [Output(NETWORK, HOSTNAME_STATUS_TYPE, OutputKind.EXCLUSIVE)]
    r, t = ResolverSpecController(), TimeServerSpecController()
    assert (r.name, t.name) == ("network.ResolverSpecController", "network.TimeServerSpecController")
    assert list(r.inputs()) == [Input(NETWORK, RESOLVER_SPEC_TYPE, InputKind.STRONG)]
    assert list(r.outputs()) == [Output(NETWORK, RESOLVER_STATUS_TYPE, OutputKind.EXCLUSIVE)]
    assert list(t.inputs()) == [Input(NETWORK, TIME_SERVER_SPEC_TYPE, InputKind.STRONG)]
    assert list(t.outputs()) == [Output(NETWORK, TIME_SERVER_STATUS_TYPE, OutputKind.EXCLUSIVE)]


@pytest.fixture
def uts() -> FakeUts:
    return FakeUts()


@pytest.fixture
async def rt(uts: FakeUts) -> AsyncIterator[Runtime]:
    state = State()
    register_all(state)
    runtime = Runtime(state, backoff=fast_backoff)
    runtime.register(HostnameSpecController(uts))
    runtime.register(ResolverSpecController())
    runtime.register(TimeServerSpecController())
    async with runtime:
        yield runtime


async def test_hostname_spec_to_status_and_kernel(rt: Runtime, uts: FakeUts) -> None:
    s = rt.state
    s.put(
        NETWORK, HOSTNAME_SPEC_TYPE, "hostname", HostnameSpec(hostname="cp1", domainname="example.org"), MERGE
    )
    assert await rt.settle()
    st = s.must_get(NETWORK, HOSTNAME_STATUS_TYPE, "hostname")
    assert st.md.owner == "network.HostnameSpecController"
    assert st.spec == HostnameStatus(hostname="cp1", domainname="example.org")
    assert s.must_get(NETWORK, HOSTNAME_SPEC_TYPE, "hostname").md.finalizers == (
        "network.HostnameSpecController",
    )
    assert uts.calls == [("sethostname", "cp1"), ("setdomainname", "example.org")]
    # Steady state: nothing more reaches the kernel, the status is not rewritten.
    version = st.md.version
    rt.contexts["network.HostnameSpecController"].trigger()
    assert await rt.settle()
    assert len(uts.calls) == 2 and s.must_get(NETWORK, HOSTNAME_STATUS_TYPE, "hostname").md.version == version
    # A change: only the differing name is set (the empty domain clears it).
    s.put(NETWORK, HOSTNAME_SPEC_TYPE, "hostname", HostnameSpec(hostname="cp1"), MERGE)
    await until(lambda: uts.domain == "")
    assert uts.calls[2:] == [("setdomainname", "")]
    assert s.must_get(NETWORK, HOSTNAME_STATUS_TYPE, "hostname").spec == HostnameStatus(hostname="cp1")


async def test_hostname_teardown_destroys_status_and_releases(rt: Runtime, uts: FakeUts) -> None:
    s = rt.state
    s.put(NETWORK, HOSTNAME_SPEC_TYPE, "hostname", HostnameSpec(hostname="cp1"), MERGE)
    await until(lambda: s.get(NETWORK, HOSTNAME_STATUS_TYPE, "hostname") is not None)
    assert not s.teardown(NETWORK, HOSTNAME_SPEC_TYPE, "hostname", MERGE)
    await until(lambda: not s.must_get(NETWORK, HOSTNAME_SPEC_TYPE, "hostname").md.finalizers)
    assert s.get(NETWORK, HOSTNAME_STATUS_TYPE, "hostname") is None
    assert s.must_get(NETWORK, HOSTNAME_SPEC_TYPE, "hostname").md.phase is Phase.TEARING_DOWN
    s.destroy(NETWORK, HOSTNAME_SPEC_TYPE, "hostname", MERGE)
    assert uts.name == "cp1"  # the kernel keeps the last name


async def test_hostname_syscall_error_retried_and_logged_once(
    rt: Runtime, uts: FakeUts, caplog: pytest.LogCaptureFixture
) -> None:
    s = rt.state
    uts.fail = OSError(errno.EPERM, "Operation not permitted")
    with caplog.at_level(logging.INFO, logger="network.HostnameSpecController"):
        s.put(NETWORK, HOSTNAME_SPEC_TYPE, "hostname", HostnameSpec(hostname="cp1"), MERGE)
        # The status is written as in the reference; the kernel call keeps being retried.
        await until(lambda: s.get(NETWORK, HOSTNAME_STATUS_TYPE, "hostname") is not None)
        ctx = rt.contexts["network.HostnameSpecController"]
        start = ctx.reconciles
        await until(lambda: ctx.reconciles >= start + 2, timeout=5.0)
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "Operation not permitted" in errors[0].getMessage()
        uts.fail = None
        await until(lambda: uts.name == "cp1")
        await until(lambda: any("applied after retry" in r.getMessage() for r in caplog.records))
    assert rt.restarts == {}


async def test_resolver_and_timeserver_copies(rt: Runtime) -> None:
    s = rt.state
    servers = [parse_addr("10.0.0.53"), parse_addr("2001:db8::53")]
    s.put(
        NETWORK,
        RESOLVER_SPEC_TYPE,
        "resolvers",
        ResolverSpec(dns_servers=servers),
        "network.ResolverMergeController",
    )
    s.put(
        NETWORK,
        TIME_SERVER_SPEC_TYPE,
        "timeservers",
        TimeServerSpec(time_servers=["ntp.example.org", "10.0.0.123"]),
        "network.TimeServerMergeController",
    )
    assert await rt.settle()
    r = s.must_get(NETWORK, RESOLVER_STATUS_TYPE, "resolvers")
    assert r.spec == ResolverStatus(dns_servers=servers) and r.md.owner == "network.ResolverSpecController"
    t = s.must_get(NETWORK, TIME_SERVER_STATUS_TYPE, "timeservers")
    assert t.spec == TimeServerStatus(time_servers=["ntp.example.org", "10.0.0.123"])
    assert t.md.owner == "network.TimeServerSpecController"
    assert s.must_get(NETWORK, RESOLVER_SPEC_TYPE, "resolvers").md.finalizers == (
        "network.ResolverSpecController",
    )
    assert s.must_get(NETWORK, TIME_SERVER_SPEC_TYPE, "timeservers").md.finalizers == (
        "network.TimeServerSpecController",
    )
    # An update is copied; teardown destroys the status and releases the spec.
    s.put(
        NETWORK,
        RESOLVER_SPEC_TYPE,
        "resolvers",
        ResolverSpec(dns_servers=servers[:1]),
        "network.ResolverMergeController",
    )
    await until(
        lambda: (
            s.must_get(NETWORK, RESOLVER_STATUS_TYPE, "resolvers").spec
            == ResolverStatus(dns_servers=servers[:1])
        )
    )
    assert not s.teardown(NETWORK, TIME_SERVER_SPEC_TYPE, "timeservers", "network.TimeServerMergeController")
    await until(lambda: not s.must_get(NETWORK, TIME_SERVER_SPEC_TYPE, "timeservers").md.finalizers)
    assert s.get(NETWORK, TIME_SERVER_STATUS_TYPE, "timeservers") is None
    s.destroy(NETWORK, TIME_SERVER_SPEC_TYPE, "timeservers", "network.TimeServerMergeController")
    assert s.get(NETWORK, RESOLVER_STATUS_TYPE, "resolvers") is not None
