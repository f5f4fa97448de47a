"""machined and discovery-service processes inside lab nodes (shared by the cluster tests).

Each wraps one process started in its node's namespaces with the venv's console
scripts, and the ``netctl`` calls the tests make against a node's API socket.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .nodes import Lab, Node
from .sysutil import wait_until

BIN = Path(sys.executable).parent
MACHINED = str(BIN / "machined")
NETCTL = str(BIN / "netctl")
SERVICE = str(BIN / "discovery-service")


class Machined:
    def __init__(self, node: Node, text: str, env: dict[str, str]) -> None:
        self.node = node
        self.config = node.dir / "config.yaml"
        self.config.write_text(text)
        self.api = str(node.dir / "api.sock")
        self.env = env
        self.proc: subprocess.Popen[str] | None = None
        self.started = 0.0

    def start(self, *extra: str) -> None:
        n = self.node
        self.started = time.monotonic()
        self.proc = n.popen(
            [
                MACHINED, "--config", str(self.config), "--state-dir", str(n.state_dir),
                "--etc-dir", str(n.etc_dir), "--api", self.api, "--log-level", "debug", *extra,
            ],
            env=self.env,
        )  # fmt: skip

    def netctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.node.run([NETCTL, *args, "--endpoint", self.api], check=check, timeout=60)

    def get(self, type_: str, *args: str) -> list[dict[str, Any]]:
        r = self.netctl("get", type_, *args, "-o", "json", check=False)
        if r.returncode != 0:
            return []
        return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]

    def specs(self, type_: str, *args: str) -> dict[str, dict[str, Any]]:
        """``get`` as id → spec."""
        return {r["metadata"]["id"]: r["spec"] for r in self.get(type_, *args)}

    def members(self) -> dict[str, dict[str, Any]]:
        return self.specs("members")

    def stop(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


def listening(node: Node, ip: str, port: int) -> bool:
    """A TCP listener on ip:port (grpc binds dual-stack: ``[::ffff:10.0.0.254]:3001``)."""
    out = node.run(["ss", "-Hltn", f"sport = :{port}"], check=False).stdout
    return ip in out


class Service:
    def __init__(
        self, node: Node, env: dict[str, str], ip: str, *, port: int = 3000, gc: float = 1.0
    ) -> None:
        self.node = node
        self.env = env
        self.ip = ip
        self.port = port
        self.gc = gc
        self.proc: subprocess.Popen[str] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.ip}:{self.port}"

    def start(self, *extra: str) -> None:
        argv = [
            SERVICE, "--listen", f"{self.ip}:{self.port}", "--gc-interval", str(self.gc),
            "--log-level", "debug",
        ]  # fmt: skip
        self.proc = self.node.popen([*argv, *extra], env=self.env)
        wait_until(
            lambda: listening(self.node, self.ip, self.port), timeout=30, what="discovery-service listening"
        )

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=15) == 0


class ServiceWorld:
    """The kubespan.md §10 lab: switch ``sw``, the discovery service alone in node ``ds`` on
    ``service_ip``, nodes ``nN`` added on the switch (MAC ``02:00:0a:00:00:0N``); daemons get
    ``tunables`` through a NETD_TUNABLES file and ``env`` on top of the test's environment."""

    def __init__(
        self,
        lab: Lab,
        tmp: Path,
        service_ip: str,
        tunables: Mapping[str, object],
        *,
        gc: float = 1.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.lab = lab
        path = tmp / "tunables.yaml"
        path.write_text("".join(f"{k}: {v}\n" for k, v in tunables.items()))
        self.env = dict(os.environ, NETD_TUNABLES=str(path), **(env or {}))
        self.sw = lab.switch("sw")
        ds = lab.node("ds")
        lab.connect(ds, self.sw, "eth0")
        ds.sh(f"ip addr add {service_ip}/24 dev eth0")
        self.service = Service(ds, self.env, service_ip, gc=gc)
        self.state_file = ds.dir / "state.binpb"
        self.nodes: dict[int, Machined] = {}

    def add(self, i: int, text: str) -> Machined:
        n = self.lab.node(f"n{i}", hostname=f"n{i}")
        self.lab.connect(n, self.sw, "eth0", mac=f"02:00:0a:00:00:0{i}")
        n.sh("sysctl -qw net.ipv6.conf.eth0.accept_dad=0 || true")
        m = Machined(n, text, self.env)
        self.nodes[i] = m
        return m
