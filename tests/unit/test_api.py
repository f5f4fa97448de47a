"""The resource API and netctl against an in-process server (its own event loop in a thread).

Covers the output shapes of ``netctl get`` (table, yaml, json, aliases, one
id, watch), the one-line errors (unknown type with did-you-mean, missing id,
no daemon), the socket mode, apply-config/confirm through the API, and
inspect/version.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cosi import Runtime, State
from machined.api.configs import ApplyMode, ApplyResult, ConfigManager
from machined.api.server import ApiServer
from netctl.cli import main as netctl
from netd.config import LoadedConfig, load_config
from netd.resources import register_all
from netd.resources.hostname import HOSTNAME_STATUS_TYPE, HostnameStatus
from netd.resources.namespaces import NETWORK, NETWORK_CONFIG
from netd.resources.resolver import RESOLVER_SPEC_TYPE, RESOLVER_STATUS_TYPE, ResolverSpec, ResolverStatus

NETCTL = str(Path(sys.executable).with_name("netctl"))
CONFIG = "version: v1alpha1\nmachine:\n  type: worker\n  network:\n    nameservers: [1.1.1.1]\n"


class FakeNode:
    """The parts of machined.node.Node the API uses, over a real State and ConfigManager."""

    def __init__(self, directory: Path) -> None:
        self.state = State()
        register_all(self.state)
        self.runtime = Runtime(self.state)
        self.published: list[LoadedConfig] = []
        self.configs = ConfigManager(
            str(directory / "config.yaml"),
            str(directory / "config.try.yaml"),
            load_config(CONFIG),
            self.published.append,
        )
        self.resets = 0

    def apply_config(self, text: str, mode: ApplyMode, timeout: float) -> ApplyResult:
        return self.configs.apply(text, mode, timeout)

    def confirm_config(self) -> None:
        self.configs.confirm()

    async def reset(self) -> list[str]:
        self.resets += 1
        return []


class ServerThread:
    """An ApiServer on its own event loop; ``call`` runs a function on that loop."""

    def __init__(self, directory: Path, **kw: Any) -> None:
        self.directory = directory
        self.socket = str(directory / "api.sock")
        self.kw = kw
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self.node = FakeNode(self.directory)
        self.server = ApiServer(self.node, self.socket, **self.kw)
        self.done = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as e:
            self.error = e
            self.ready.set()
            return
        self.ready.set()
        await self.done.wait()
        await self.server.stop(0.1)

    def start(self) -> ServerThread:
        self.thread.start()
        self.ready.wait(10)
        if self.error is not None:
            raise self.error
        return self

    def call(self, fn: Callable[[], Any]) -> Any:
        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.done.set)
        self.thread.join(10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    srv = ServerThread(tmp_path).start()

    def seed() -> None:
        st = srv.node.state
        st.put(NETWORK, RESOLVER_SPEC_TYPE, "resolvers", ResolverSpec(dns_servers=["1.1.1.1", "8.8.8.8"]))
        st.put(NETWORK_CONFIG, RESOLVER_SPEC_TYPE, "default/resolvers", ResolverSpec(dns_servers=["1.1.1.1"]))
        st.put(NETWORK, RESOLVER_STATUS_TYPE, "resolvers", ResolverStatus(dns_servers=["1.1.1.1"]), owner="x")
        st.put(
            NETWORK, HOSTNAME_STATUS_TYPE, "hostname", HostnameStatus(hostname="n1", domainname="example.org")
        )

    srv.call(seed)
    yield srv
    srv.stop()


def get(server: ServerThread, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = netctl([*args, "--endpoint", server.socket])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_socket_is_root_only(server: ServerThread) -> None:
    assert os.stat(server.socket).st_mode & 0o777 == 0o600


def test_get_table_by_alias_with_print_columns(
    server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = get(server, capsys, "get", "resolvers")
    assert rc == 0, err
    assert out.splitlines() == [
        "NODE             NAMESPACE   TYPE             ID          VERSION   RESOLVERS",
        'n1.example.org   network     ResolverStatus   resolvers   1         ["1.1.1.1"]',
    ]
    for word in ("ResolverStatus", "RESOLVERSTATUSES", "resolverstatuses.net.talos.dev"):
        rc, out2, _ = get(server, capsys, "get", word)
        assert rc == 0 and out2 == out, word


def test_get_yaml_and_json_shapes(server: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = get(server, capsys, "get", "resolverspecs", "-n", "network-config", "-o", "yaml")
    assert rc == 0
    lines = out.splitlines()
    assert lines[:4] == [
        "node: n1.example.org",
        "metadata:",
        "    namespace: network-config",
        "    type: ResolverSpecs.net.talos.dev",
    ]
    assert "    finalizers: []" in lines
    assert "spec:" in lines and "    dnsServers:" in lines
    rc, out, _ = get(server, capsys, "get", "resolverspecs", "-o", "json")
    docs = [json.loads(x) for x in out.splitlines()]
    assert len(docs) == 1
    d = docs[0]
    assert list(d) == ["node", "metadata", "spec"]
    assert list(d["metadata"]) == [
        "namespace",
        "type",
        "id",
        "version",
        "owner",
        "phase",
        "created",
        "updated",
        "finalizers",
    ]
    assert d["metadata"]["version"] == 1 and d["metadata"]["created"].endswith("Z")
    assert d["spec"] == {"dnsServers": ["1.1.1.1", "8.8.8.8"], "layer": "default"}


def test_get_one_and_meta_types(server: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = get(server, capsys, "get", "resolverspec", "resolvers", "-o", "json")
    assert rc == 0 and json.loads(out)["metadata"]["id"] == "resolvers"
    rc, out, _ = get(server, capsys, "get", "rd", "resolverspecs.net.talos.dev", "-o", "json")
    spec = json.loads(out)["spec"]
    assert spec["type"] == "ResolverSpecs.net.talos.dev" and spec["defaultNamespace"] == "network"
    rc, out, _ = get(server, capsys, "get", "ns")
    assert rc == 0
    ids = [line.split()[3] for line in out.splitlines()[1:]]
    assert {"meta", "network", "network-config", "config"} <= set(ids)


def test_errors_are_one_line(server: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = get(server, capsys, "get", "resolverspecs", "nope")
    assert rc == 1 and out == ""
    assert err == "netctl: resource ResolverSpecs.net.talos.dev(network/nope) does not exist\n"
    rc, _, err = get(server, capsys, "get", "adresspecs")
    assert rc == 1
    assert err == "netctl: resource type 'adresspecs' is not registered (did you mean 'addressspecs'?)\n"


def test_no_daemon(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = netctl(["get", "links", "--endpoint", str(tmp_path / "none.sock")])
    err = capsys.readouterr().err
    assert rc == 1
    assert err == f"netctl: machined is not running (no API socket at {tmp_path / 'none.sock'})\n"
    os.environ["NETCTL_ENDPOINT"] = str(tmp_path / "env.sock")
    try:
        assert netctl(["version"]) == 1
        assert "env.sock" in capsys.readouterr().err
    finally:
        del os.environ["NETCTL_ENDPOINT"]


class Lines:
    """stdout of a process, line by line with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.q: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        out = proc.stdout
        threading.Thread(target=lambda: [self.q.put(x) for x in out], daemon=True).start()

    def next(self, timeout: float = 10) -> str:
        return self.q.get(timeout=timeout).rstrip("\n")


def watch(server: ServerThread, *args: str) -> tuple[subprocess.Popen[str], Lines]:
    proc = subprocess.Popen(
        [NETCTL, "get", *args, "-w", "--endpoint", server.socket], stdout=subprocess.PIPE, text=True
    )
    return proc, Lines(proc)


def test_watch_table(server: ServerThread) -> None:
    proc, lines = watch(server, "resolverspecs", "-n", "network-config")
    try:
        assert lines.next().split() == ["*", "NODE", "NAMESPACE", "TYPE", "ID", "VERSION"]
        assert lines.next().split() == [
            "+",
            "n1.example.org",
            "network-config",
            "ResolverSpec",
            "default/resolvers",
            "1",
        ]
        st = server.node.state
        server.call(
            lambda: st.put(
                NETWORK_CONFIG, RESOLVER_SPEC_TYPE, "default/resolvers", ResolverSpec(dns_servers=["9.9.9.9"])
            )
        )
        row = lines.next()
        assert row.startswith(" ") and row.split() == [
            "n1.example.org",
            "network-config",
            "ResolverSpec",
            "default/resolvers",
            "2",
        ]
        server.call(lambda: st.put(NETWORK_CONFIG, RESOLVER_SPEC_TYPE, "cmdline/resolvers", ResolverSpec()))
        assert lines.next().split()[0] == "+"
        server.call(lambda: st.destroy(NETWORK_CONFIG, RESOLVER_SPEC_TYPE, "cmdline/resolvers"))
        assert lines.next().split()[:1] == ["-"]
    finally:
        proc.kill()
        proc.wait()


def test_watch_json_and_yaml(server: ServerThread) -> None:
    st = server.node.state
    proc, lines = watch(server, "resolverspecs", "-o", "json")
    try:
        first = json.loads(lines.next())
        assert list(first) == ["node", "event", "metadata", "spec"] and first["event"] == "created"
        server.call(lambda: st.put(NETWORK, RESOLVER_SPEC_TYPE, "resolvers", ResolverSpec()))
        assert json.loads(lines.next())["event"] == "updated"
    finally:
        proc.kill()
        proc.wait()
    proc, lines = watch(server, "resolverspecs", "resolvers", "-o", "yaml")
    try:
        assert lines.next() == "node: n1.example.org"
        assert lines.next() == "event: created"
        assert lines.next() == "metadata:"
        server.call(
            lambda: st.put(NETWORK, RESOLVER_SPEC_TYPE, "resolvers", ResolverSpec(dns_servers=["1.0.0.1"]))
        )
        seen = [lines.next() for _ in range(20)]
        i = seen.index("---")
        assert seen[i + 1 : i + 3] == ["node: n1.example.org", "event: updated"]
    finally:
        proc.kill()
        proc.wait()


def test_apply_config_through_the_api(server: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    new = server.directory / "new.yaml"
    new.write_text(CONFIG.replace("1.1.1.1", "9.9.9.9"))
    rc, out, err = get(server, capsys, "apply-config", str(new))
    assert (rc, out) == (0, "applied\n"), err
    assert (server.directory / "config.yaml").read_text() == new.read_text()
    rc, out, _ = get(server, capsys, "apply-config", str(new), "--mode", "try", "--timeout", "1m")
    assert (
        rc == 0
        and out.startswith("applied in try mode; rolls back at 20")
        and out.endswith("Z unless confirmed\n")
    )
    rc, out, _ = get(server, capsys, "apply-config", "--confirm")
    assert (rc, out) == (0, "confirmed\n")
    rc, out, err = get(server, capsys, "apply-config", "--confirm")
    assert rc == 1 and err.startswith("netctl: no config applied in try mode")
    bad = server.directory / "bad.yaml"
    bad.write_text(
        "version: v1alpha1\nmachine:\n  network:\n    interfaces:\n"
        "      - interface: eth0\n        addresses: [10.0.0.1/255.255.255.0]\n"
    )
    before = (server.directory / "config.yaml").read_text()
    rc, out, err = get(server, capsys, "apply-config", str(bad))
    assert rc == 1 and out == ""
    assert any(
        x.startswith("v1alpha1: machine.network.interfaces[0].addresses[0]:") for x in err.splitlines()
    )
    assert (server.directory / "config.yaml").read_text() == before
    assert len(server.node.published) == 2


def test_inspect_version_reset(server: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = get(server, capsys, "inspect", "dependencies")
    assert rc == 0 and out.startswith("digraph dependencies {")
    rc, out, _ = get(server, capsys, "version")
    assert rc == 0 and "Server:" in out and "NODE: n1.example.org" in out
    rc, out, _ = get(server, capsys, "reset")
    assert (rc, out) == (0, "reset\n") and server.node.resets == 1


def test_netctl_get_needs_no_resource_models(server: ServerThread) -> None:
    """netctl prints what the API sent: pydantic and the resource models stay unimported."""
    code = (
        "import sys\nfrom netctl.cli import main\n"
        f"assert main(['get', 'resolverspecs', '-o', 'yaml', '--endpoint', {server.socket!r}]) == 0\n"
        "assert main(['get', 'rd', '--endpoint', '/nonexistent']) == 1\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('pydantic', 'netd', 'cosi', 'pyroute2')]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "dnsServers" in r.stdout


def test_plan_and_validate_do_not_import_grpc() -> None:
    code = (
        "import sys\nfrom netctl.cli import build_parser\n"
        "build_parser(['plan']); build_parser(['validate'])\nassert 'grpc' not in sys.modules\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
