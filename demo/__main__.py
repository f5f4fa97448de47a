"""Two nodes on one switch, each running machined with a static config.

Prints what `netctl plan` makes of node a's config, then each node's links,
addresses and routes as machined reports them (`netctl get`, over the node's
API socket), the kernel's view (`ip -br addr`), and a ping between the nodes.
Everything is removed at the end, also on Ctrl-C.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the namespace harness the tests use

from harness import Lab, Node  # noqa: E402

BIN = Path(sys.executable).parent
NODES = {"a": "192.168.50.11", "b": "192.168.50.12"}

CONFIG = """version: v1alpha1
machine:
  type: worker
  network:
    hostname: {name}.demo.internal
    nameservers: [192.168.50.1]
    interfaces:
      - interface: eth0
        addresses: [{ip}/24, fd50::{n}/64]
        routes:
          - network: 10.50.0.0/16
            gateway: 192.168.50.1
            metric: 100
"""


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def show(node: Node, *cmd: str) -> None:
    print(f"$ {' '.join(cmd)}    # on node {node.name}", flush=True)
    print(node.run(list(cmd), check=False).stdout.rstrip(), flush=True)


def wait_for_address(node: Node, ip: str, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ip in node.run(["ip", "-br", "addr"], check=False).stdout:
            return True
        time.sleep(0.2)
    return False


def main() -> int:
    with Lab() as lab:
        sw = lab.switch("sw")
        nodes: dict[str, Node] = {}
        for i, (name, ip) in enumerate(NODES.items(), start=1):
            node = lab.node(name, hostname=f"{name}-boot")
            lab.connect(node, sw, "eth0", mac=f"02:50:00:00:00:0{i}")
            cfg = node.dir / "config.yaml"
            cfg.write_text(CONFIG.format(name=name, ip=ip, n=i))
            nodes[name] = node

        a = nodes["a"]
        banner("netctl plan on node a (what machined will apply)")
        show(a, str(BIN / "netctl"), "plan", "--config", str(a.dir / "config.yaml"))

        banner("starting machined on each node")
        for node in nodes.values():
            node.popen(
                [
                    str(BIN / "machined"),
                    "--config",
                    str(node.dir / "config.yaml"),
                    "--state-dir",
                    str(node.state_dir),
                    "--etc-dir",
                    str(node.etc_dir),
                ]
            )
        applied = all(wait_for_address(node, NODES[name]) for name, node in nodes.items())
        if not applied:
            print("machined did not apply the addresses in time; logs:", file=sys.stderr)
            for node in nodes.values():
                for log in node.log_dir.glob("*.log"):
                    print(log.read_text()[-3000:], file=sys.stderr)
            return 1
        netctl = str(BIN / "netctl")
        for node in nodes.values():
            banner(f"node {node.name}")
            for what in ("links", "addresses", "routes", "hostname", "resolvers"):
                show(node, netctl, "get", what)
            show(node, "ip", "-br", "addr")
            resolv = node.etc_dir / "resolv.conf"
            if resolv.exists():
                print(f"$ cat {resolv}\n{resolv.read_text().rstrip()}")
        banner("ping a -> b")
        r = a.run(["ping", "-c", "3", "-i", "0.2", "-W", "2", NODES["b"]], check=False)
        print(r.stdout.rstrip())
        banner("tearing down")
        return 0 if r.returncode == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as e:
        print(f"demo: {e}", file=sys.stderr)
        sys.exit(1)
