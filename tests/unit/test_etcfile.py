"""resolv.conf / hosts rendering (netd.md §5.6), the atomic write helper, and both EtcFile
controllers in a cosi.Runtime (network statuses → EtcFileSpec → files in an etc dir)."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from cosi import Backoff, Input, InputKind, Output, OutputKind, Phase, Runtime, State
from netd.config import load_config
from netd.controllers.etcfile import (
    FilesEtcFileController,
    NetworkEtcFileController,
    align_columns,
    render_hosts,
    render_resolv_conf,
    safe_file_name,
)
from netd.kernel.files import write_if_changed
from netd.netip import parse_addr, parse_prefix
from netd.resources import register_all
from netd.resources.files import ETC_FILE_SPEC_TYPE, ETC_FILE_STATUS_TYPE, EtcFileSpec, EtcFileStatus
from netd.resources.hostname import HOSTNAME_STATUS_TYPE, HostnameStatus
from netd.resources.machine_config import MACHINE_CONFIG_ID, MACHINE_CONFIG_TYPE, MachineConfigSpec
from netd.resources.namespaces import CONFIG, FILES, NETWORK
from netd.resources.nodeaddress import NODE_ADDRESS_TYPE, NodeAddress
from netd.resources.resolver import RESOLVER_STATUS_TYPE, ResolverStatus

A = parse_addr

# ---- resolv.conf -----------------------------------------------------------------------


def test_resolv_conf_documented_example() -> None:
    got = render_resolv_conf([A("1.1.1.1"), A("8.8.8.8")], "example.com", False)
    assert got == b"nameserver 1.1.1.1\nnameserver 8.8.8.8\n\nsearch example.com\n"


def test_resolv_conf_at_most_three_nameservers() -> None:
    servers = [A("10.0.0.1"), A("10.0.0.2"), A("2001:db8::53"), A("10.0.0.4")]
    got = render_resolv_conf(servers, "", False)
    assert got == b"nameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 2001:db8::53\n"


def test_resolv_conf_no_domain_no_search_line() -> None:
    assert render_resolv_conf([A("1.1.1.1")], "", False) == b"nameserver 1.1.1.1\n"


def test_resolv_conf_disable_search_domain() -> None:
    assert render_resolv_conf([A("1.1.1.1")], "example.com", True) == b"nameserver 1.1.1.1\n"


def test_resolv_conf_no_servers() -> None:
    assert render_resolv_conf([], "", False) == b""
    assert render_resolv_conf([], "example.com", False) == b"\nsearch example.com\n"


def test_resolv_conf_ipv6_text_like_go() -> None:
    got = render_resolv_conf([A("2001:DB8:0:0::1"), A("::ffff:1.2.3.4")], "", False)
    assert got == b"nameserver 2001:db8::1\nnameserver ::ffff:1.2.3.4\n"


# ---- hosts -----------------------------------------------------------------------------


def test_hosts_documented_example() -> None:
    got = render_hosts(A("172.20.0.2"), "talos-1", "example.com")
    assert got.decode() == (
        "127.0.0.1  localhost\n"
        "172.20.0.2 talos-1.example.com talos-1\n"
        "::1        localhost ip6-localhost ip6-loopback\n"
        "ff02::1    ip6-allnodes\n"
        "ff02::2    ip6-allrouters\n"
    )


def test_hosts_no_domain_names_only_the_hostname() -> None:
    got = render_hosts(A("10.0.0.2"), "node", "")
    assert got.decode().splitlines()[1] == "10.0.0.2  node"  # "127.0.0.1" is the longest: width 10


def test_hosts_short_default_ip_aligns_on_127_0_0_1() -> None:
    got = render_hosts(A("10.0.0.2"), "cp1", "example.org").decode().splitlines()
    assert got == [
        "127.0.0.1 localhost",
        "10.0.0.2  cp1.example.org cp1",
        "::1       localhost ip6-localhost ip6-loopback",
        "ff02::1   ip6-allnodes",
        "ff02::2   ip6-allrouters",
    ]


def test_hosts_ipv6_default_address_widens_the_column() -> None:
    got = render_hosts(A("2001:db8:1234::10"), "n", "d.example").decode()
    assert got == (
        "127.0.0.1         localhost\n"
        "2001:db8:1234::10 n.d.example n\n"
        "::1               localhost ip6-localhost ip6-loopback\n"
        "ff02::1           ip6-allnodes\n"
        "ff02::2           ip6-allrouters\n"
    )


def test_hosts_extra_entries_with_aliases_are_aligned_too() -> None:
    extra = [("192.168.1.100", ["example.com", "www.example.com"]), ("fd00::1", ["gw"])]
    got = render_hosts(A("172.20.0.2"), "talos-1", "", extra).decode()
    assert got == (
        "127.0.0.1     localhost\n"
        "172.20.0.2    talos-1\n"
        "::1           localhost ip6-localhost ip6-loopback\n"
        "ff02::1       ip6-allnodes\n"
        "ff02::2       ip6-allrouters\n"
        "192.168.1.100 example.com www.example.com\n"
        "fd00::1       gw\n"
    )


def test_hosts_extra_entry_ip_is_verbatim_and_empty_aliases_keep_padding() -> None:
    # Go's tabwriter pads a tab-terminated cell even when the rest of the line is empty.
    assert align_columns([("a", "x"), ("bbb", "")]) == "a   x\nbbb \n"
    got = render_hosts(A("10.0.0.2"), "h", "", [("10.0.0.9", [])]).decode()
    assert got.endswith("10.0.0.9  \n")


def test_safe_file_name() -> None:
    assert safe_file_name("resolv.conf") and safe_file_name("hosts")
    for bad in ("", ".", "..", "../passwd", "a/b", "x\0"):
        assert not safe_file_name(bad)


# ---- write_if_changed -------------------------------------------------------------------


def test_write_if_changed_writes_once_then_leaves_the_file(tmp_path: Path) -> None:
    p = tmp_path / "etc" / "hosts"
    assert write_if_changed(str(p), b"one\n", 0o644)  # parent created
    st = p.stat()
    assert p.read_bytes() == b"one\n" and stat.S_IMODE(st.st_mode) == 0o644
    assert stat.S_IMODE(p.parent.stat().st_mode) == 0o755
    assert not write_if_changed(str(p), b"one\n", 0o644)
    st2 = p.stat()
    assert (st2.st_ino, st2.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    assert write_if_changed(str(p), b"two\n", 0o644)
    assert p.read_bytes() == b"two\n" and p.stat().st_ino != st.st_ino  # replaced by rename
    assert sorted(os.listdir(p.parent)) == ["hosts"]  # no temporary file left


def test_write_if_changed_fixes_mode_without_rewriting(tmp_path: Path) -> None:
    p = tmp_path / "resolv.conf"
    p.write_bytes(b"x\n")
    p.chmod(0o600)
    ino = p.stat().st_ino
    assert not write_if_changed(str(p), b"x\n", 0o644)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644 and p.stat().st_ino == ino


def test_write_if_changed_replaces_a_symlink_not_its_target(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"same\n")
    link = tmp_path / "resolv.conf"
    link.symlink_to(target)
    assert write_if_changed(str(link), b"same\n")
    assert not link.is_symlink() and link.read_bytes() == b"same\n"
    assert target.read_bytes() == b"same\n"


def test_write_if_changed_failure_leaves_no_temp_file(tmp_path: Path) -> None:
    d = tmp_path / "etc"
    (d / "hosts").mkdir(parents=True)  # a directory in the way: rename fails
    (d / "hosts" / "x").write_text("x")
    with pytest.raises(OSError):
        write_if_changed(str(d / "hosts"), b"data\n")
    assert sorted(os.listdir(d)) == ["hosts"]


# ---- controllers ------------------------------------------------------------------------


def fast_backoff() -> Backoff:
    return Backoff(initial=0.01, maximum=0.05)


async def until(cond: Callable[[], object], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


MC_YAML = """\
version: v1alpha1
machine:
  type: controlplane
  network:
    disableSearchDomain: {disable}
    extraHostEntries:
      - ip: 192.168.1.100
        aliases: [example.com, www.example.com]
"""


def machine_config(disable: bool = False) -> MachineConfigSpec:
    loaded = load_config(MC_YAML.format(disable=str(disable).lower()))
    return MachineConfigSpec(config=loaded.config)


@pytest.fixture
async def rt(tmp_path: Path) -> AsyncIterator[Runtime]:
    state = State()
    register_all(state)
    runtime = Runtime(state, backoff=fast_backoff)
    runtime.register(NetworkEtcFileController())
    runtime.register(FilesEtcFileController(str(tmp_path / "etc")))
    async with runtime:
        yield runtime


def put_inputs(s: State, *, disable: bool = False, domain: str = "example.org") -> None:
    s.put(CONFIG, MACHINE_CONFIG_TYPE, MACHINE_CONFIG_ID, machine_config(disable))
    s.put(NETWORK, HOSTNAME_STATUS_TYPE, "hostname", HostnameStatus(hostname="cp1", domainname=domain))
    s.put(
        NETWORK, RESOLVER_STATUS_TYPE, "resolvers", ResolverStatus(dns_servers=[A("10.0.0.53"), A("1.1.1.1")])
    )
    s.put(NETWORK, NODE_ADDRESS_TYPE, "default", NodeAddress(addresses=[parse_prefix("10.0.0.2/24")]))


EXPECTED_HOSTS = (
    "127.0.0.1     localhost\n"
    "10.0.0.2      cp1.example.org cp1\n"
    "::1           localhost ip6-localhost ip6-loopback\n"
    "ff02::1       ip6-allnodes\n"
    "ff02::2       ip6-allrouters\n"
    "192.168.1.100 example.com www.example.com\n"
)


def test_declarations() -> None:
    n = NetworkEtcFileController()
    assert n.name == "network.EtcFileController"
    assert [(i.namespace, i.type, i.id) for i in n.inputs()] == [
        (CONFIG, MACHINE_CONFIG_TYPE, "v1alpha1"),
        (NETWORK, HOSTNAME_STATUS_TYPE, "hostname"),
        (NETWORK, RESOLVER_STATUS_TYPE, "resolvers"),
        (NETWORK, NODE_ADDRESS_TYPE, "default"),
        (FILES, ETC_FILE_SPEC_TYPE, None),
    ]
    assert list(n.inputs())[-1].kind is InputKind.DESTROY_READY
    assert list(n.outputs()) == [Output(FILES, ETC_FILE_SPEC_TYPE, OutputKind.SHARED)]
    f = FilesEtcFileController("/x")
    assert f.name == "files.EtcFileController"
    assert list(f.inputs()) == [Input(FILES, ETC_FILE_SPEC_TYPE, InputKind.STRONG)]
    assert list(f.outputs()) == [Output(FILES, ETC_FILE_STATUS_TYPE, OutputKind.EXCLUSIVE)]


async def test_statuses_to_files(rt: Runtime, tmp_path: Path) -> None:
    s, etc = rt.state, tmp_path / "etc"
    (etc).mkdir()
    (etc / "passwd").write_text("not ours\n")
    put_inputs(s)
    assert await rt.settle()
    assert (
        etc / "resolv.conf"
    ).read_text() == "nameserver 10.0.0.53\nnameserver 1.1.1.1\n\nsearch example.org\n"
    assert (etc / "hosts").read_text() == EXPECTED_HOSTS
    assert (etc / "passwd").read_text() == "not ours\n"
    for id_ in ("resolv.conf", "hosts"):
        assert stat.S_IMODE((etc / id_).stat().st_mode) == 0o644
        spec = s.must_get(FILES, ETC_FILE_SPEC_TYPE, id_)
        assert spec.md.owner == "network.EtcFileController"
        assert spec.md.finalizers == ("files.EtcFileController",)
        assert isinstance(spec.spec, EtcFileSpec) and spec.spec.mode == 0o644
        st = s.must_get(FILES, ETC_FILE_STATUS_TYPE, id_)
        assert st.md.owner == "files.EtcFileController"
        assert st.spec == EtcFileStatus(spec_version=str(spec.md.version))
    # Steady state: no spec or status update, no write.
    before = {i: (etc / i).stat() for i in ("resolv.conf", "hosts")}
    versions = {i: s.must_get(FILES, ETC_FILE_STATUS_TYPE, i).md.version for i in before}
    s.put(CONFIG, MACHINE_CONFIG_TYPE, MACHINE_CONFIG_ID, machine_config())  # equal: no event
    rt.contexts["files.EtcFileController"].trigger()
    rt.contexts["network.EtcFileController"].trigger()
    assert await rt.settle()
    for i, b in before.items():
        a = (etc / i).stat()
        assert (a.st_ino, a.st_mtime_ns) == (b.st_ino, b.st_mtime_ns)
        assert s.must_get(FILES, ETC_FILE_STATUS_TYPE, i).md.version == versions[i]


async def test_disable_search_domain_and_changes_rewrite(rt: Runtime, tmp_path: Path) -> None:
    s, etc = rt.state, tmp_path / "etc"
    put_inputs(s, disable=True)
    assert await rt.settle()
    assert (etc / "resolv.conf").read_text() == "nameserver 10.0.0.53\nnameserver 1.1.1.1\n"
    s.put(CONFIG, MACHINE_CONFIG_TYPE, MACHINE_CONFIG_ID, machine_config(disable=False))
    s.put(NETWORK, HOSTNAME_STATUS_TYPE, "hostname", HostnameStatus(hostname="cp2", domainname="lan"))
    await until(lambda: (etc / "resolv.conf").read_text().endswith("search lan\n"))
    await until(lambda: "10.0.0.2      cp2.lan cp2\n" in (etc / "hosts").read_text())
    assert await rt.settle()
    spec = s.must_get(FILES, ETC_FILE_SPEC_TYPE, "hosts")
    assert s.must_get(FILES, ETC_FILE_STATUS_TYPE, "hosts").spec == EtcFileStatus(
        spec_version=str(spec.md.version)
    )


async def test_hosts_needs_hostname_and_default_address(rt: Runtime, tmp_path: Path) -> None:
    s, etc = rt.state, tmp_path / "etc"
    s.put(NETWORK, RESOLVER_STATUS_TYPE, "resolvers", ResolverStatus(dns_servers=[A("1.1.1.1")]))
    s.put(NETWORK, HOSTNAME_STATUS_TYPE, "hostname", HostnameStatus(hostname="cp1"))
    s.put(NETWORK, NODE_ADDRESS_TYPE, "default", NodeAddress())  # no address yet
    assert await rt.settle()
    assert (etc / "resolv.conf").read_text() == "nameserver 1.1.1.1\n"  # no config, no domain
    assert not (etc / "hosts").exists()
    assert s.get(FILES, ETC_FILE_SPEC_TYPE, "hosts") is None
    s.put(NETWORK, NODE_ADDRESS_TYPE, "default", NodeAddress(addresses=[parse_prefix("2001:db8::2/64")]))
    await until(lambda: (etc / "hosts").exists())
    assert (etc / "hosts").read_text().splitlines()[1] == "2001:db8::2 cp1"


async def test_teardown_keeps_the_file_and_releases_the_spec(rt: Runtime, tmp_path: Path) -> None:
    s, etc = rt.state, tmp_path / "etc"
    put_inputs(s)
    assert await rt.settle()
    content = (etc / "resolv.conf").read_bytes()
    s.teardown(NETWORK, RESOLVER_STATUS_TYPE, "resolvers")  # an external resource: we own it here
    s.destroy(NETWORK, RESOLVER_STATUS_TYPE, "resolvers")
    await until(lambda: s.get(FILES, ETC_FILE_SPEC_TYPE, "resolv.conf") is None)
    await until(lambda: s.get(FILES, ETC_FILE_STATUS_TYPE, "resolv.conf") is None)
    assert (etc / "resolv.conf").read_bytes() == content  # a node keeps its DNS
    assert s.get(FILES, ETC_FILE_SPEC_TYPE, "hosts") is not None


async def test_spec_held_in_teardown_until_released(tmp_path: Path) -> None:
    """files.EtcFileController alone: its finalizer holds a tearing-down spec until it has
    destroyed the status; the file stays."""
    state = State()
    register_all(state)
    runtime = Runtime(state, backoff=fast_backoff)
    runtime.register(FilesEtcFileController(str(tmp_path)))
    owner = "network.EtcFileController"
    async with runtime:
        state.put(FILES, ETC_FILE_SPEC_TYPE, "hosts", EtcFileSpec(contents=b"h\n"), owner)
        await until(lambda: state.get(FILES, ETC_FILE_STATUS_TYPE, "hosts") is not None)
        assert (tmp_path / "hosts").read_bytes() == b"h\n"
        assert not state.teardown(FILES, ETC_FILE_SPEC_TYPE, "hosts", owner)  # finalizer held
        await until(lambda: not state.must_get(FILES, ETC_FILE_SPEC_TYPE, "hosts").md.finalizers)
        assert state.must_get(FILES, ETC_FILE_SPEC_TYPE, "hosts").md.phase is Phase.TEARING_DOWN
        assert state.get(FILES, ETC_FILE_STATUS_TYPE, "hosts") is None
        state.destroy(FILES, ETC_FILE_SPEC_TYPE, "hosts", owner)
        assert (tmp_path / "hosts").read_bytes() == b"h\n"


async def test_restart_with_same_content_does_not_rewrite(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    stats = []
    for _ in range(2):
        state = State()
        register_all(state)
        runtime = Runtime(state, backoff=fast_backoff)
        runtime.register(NetworkEtcFileController())
        runtime.register(FilesEtcFileController(str(etc)))
        async with runtime:
            put_inputs(state)
            assert await runtime.settle()
            assert state.get(FILES, ETC_FILE_STATUS_TYPE, "hosts") is not None
        stats.append({i: (etc / i).stat() for i in ("resolv.conf", "hosts")})
    for i in ("resolv.conf", "hosts"):
        assert (stats[0][i].st_ino, stats[0][i].st_mtime_ns) == (stats[1][i].st_ino, stats[1][i].st_mtime_ns)


async def test_write_error_is_retried_and_other_files_still_written(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    (etc / "hosts").mkdir(parents=True)  # a directory in the way of hosts
    (etc / "hosts" / "x").write_text("x")
    state = State()
    register_all(state)
    runtime = Runtime(state, backoff=fast_backoff)
    runtime.register(NetworkEtcFileController())
    files = FilesEtcFileController(str(etc))
    runtime.register(files)
    async with runtime:
        put_inputs(state)
        await until(lambda: (etc / "resolv.conf").exists())
        await until(lambda: files.retry is not None and files.retry.pending)
        assert state.get(FILES, ETC_FILE_STATUS_TYPE, "hosts") is None
        assert state.get(FILES, ETC_FILE_STATUS_TYPE, "resolv.conf") is not None
        (etc / "hosts" / "x").unlink()
        (etc / "hosts").rmdir()
        await until(lambda: (etc / "hosts").is_file())
        await until(lambda: state.get(FILES, ETC_FILE_STATUS_TYPE, "hosts") is not None)
        assert files.retry is not None and not files.retry.pending
    assert runtime.restarts == {}


async def test_spec_id_that_is_not_a_file_name_is_refused(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    state = State()
    register_all(state)
    runtime = Runtime(state, backoff=fast_backoff)
    files = FilesEtcFileController(str(etc))
    runtime.register(files)
    async with runtime:
        state.put(FILES, ETC_FILE_SPEC_TYPE, "../escape", EtcFileSpec(contents=b"x\n"), "someone")
        state.put(FILES, ETC_FILE_SPEC_TYPE, "hosts", EtcFileSpec(contents=b"h\n"), "someone")
        assert await runtime.settle()
        assert (etc / "hosts").read_bytes() == b"h\n"
        assert not (tmp_path / "escape").exists()
        assert state.get(FILES, ETC_FILE_STATUS_TYPE, "../escape") is None
        assert files.retry is not None and not files.retry.pending
