"""machined applies a full config to a node's kernel, adopts it on restart, and removes
only what it created when the config shrinks (issue: apply specs to the kernel)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from harness import Lab, Node, wait_until

MACHINED = str(Path(sys.executable).with_name("machined"))

FULL = """version: v1alpha1
machine:
  type: worker
  network:
    hostname: node1.example.org
    nameservers: [192.0.2.53, 2001:db8::53, 1.1.1.1, 8.8.8.8]
    extraHostEntries:
      - ip: 192.0.2.100
        aliases: [registry, registry.example.org]
    interfaces:
      - interface: eth0
        mtu: 1400
        addresses: [192.0.2.10/24, 2001:db8:1::10/64]
        routes:
          - network: 0.0.0.0/0
            gateway: 192.0.2.1
            metric: 100
          - network: 198.51.100.0/24
            gateway: 192.0.2.254
            source: 192.0.2.10
            metric: 200
            mtu: 1280
          - network: 2001:db8:2::/64
            gateway: 2001:db8:1::1
            metric: 300
      - interface: br0
        addresses: [10.10.0.1/24]
        bridge:
          interfaces: [p1, p2]
          stp:
            enabled: false  # with STP on, the kernel itself reports port states for ~30 s
"""

# The same node with the second route, the IPv6 address and route, and the bridge gone.
SMALLER = """version: v1alpha1
machine:
  type: worker
  network:
    hostname: node1.example.org
    nameservers: [192.0.2.53]
    interfaces:
      - interface: eth0
        mtu: 1400
        addresses: [192.0.2.10/24]
        routes:
          - network: 0.0.0.0/0
            gateway: 192.0.2.1
            metric: 100
"""


def start(node: Node, config: str) -> subprocess.Popen[str]:
    path = node.dir / "config.yaml"
    path.write_text(config)
    return node.popen(
        [
            MACHINED,
            "--config",
            str(path),
            "--state-dir",
            str(node.state_dir),
            "--etc-dir",
            str(node.etc_dir),
            "--api",
            str(node.dir / "machined.sock"),
        ]
    )


def tentative(node: Node) -> list[str]:
    return [a["local"] for i in node.ip_json("addr") for a in i["addr_info"] if a.get("tentative")]


def started(node: Node) -> int:
    """How many times machined logged that it started in this node."""
    return sum(p.read_text().count("node started") for p in node.log_dir.glob("*machined*.log"))


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def addrs(node: Node, dev: str) -> set[str]:
    return {
        f"{a['local']}/{a['prefixlen']}"
        for i in node.ip_json("addr", "show", "dev", dev)
        for a in i["addr_info"]
        if a.get("scope") != "link"
    }


def routes(node: Node, *family: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = node.ip_json(*family, "route", "show")
    return out


def find(rs: list[dict[str, Any]], dst: str) -> dict[str, Any] | None:
    return next((r for r in rs if r.get("dst") == dst), None)


@pytest.fixture
def node(lab: Lab) -> Node:
    n = lab.node("n1")
    sw = lab.switch("sw")
    lab.connect(n, sw, "eth0", mac="02:00:00:00:01:01")
    gw = lab.node("gw")  # something on the link so the gateways resolve and carrier is up
    lab.connect(gw, sw, "eth0")
    gw.sh("ip addr add 192.0.2.1/24 dev eth0; ip addr add 2001:db8:1::1/64 dev eth0 nodad")
    lab.stub(n, "p1")
    lab.stub(n, "p2")
    return n


def converged_full(node: Node) -> bool:
    if not {"192.0.2.10/24", "2001:db8:1::10/64"} <= addrs(node, "eth0"):
        return False
    v4 = routes(node)
    return (
        find(v4, "198.51.100.0/24") is not None
        and find(v4, "default") is not None
        and (find(routes(node, "-6"), "2001:db8:2::/64") is not None)
        and "10.10.0.1/24" in addrs(node, "br0")
    )


def test_full_config_restart_and_shrink(lab: Lab, node: Node) -> None:
    proc = start(node, FULL)
    wait_until(lambda: converged_full(node), timeout=30, what="the full config in the kernel")

    eth0 = node.link("eth0")
    assert eth0["mtu"] == 1400 and "UP" in eth0["flags"]
    br0 = node.link("br0")
    assert br0["linkinfo"]["info_kind"] == "bridge" and br0["linkinfo"]["info_data"]["stp_state"] == 0
    for port in ("p1", "p2"):
        assert node.link(port).get("master") == "br0"
    v4 = routes(node)
    default = find(v4, "default")
    assert default is not None and default["gateway"] == "192.0.2.1" and default["metric"] == 100
    assert default["protocol"] == "static"
    r = find(v4, "198.51.100.0/24")
    assert r is not None and (r["gateway"], r["prefsrc"], r["metric"]) == ("192.0.2.254", "192.0.2.10", 200)
    assert {"mtu": 1280} in r.get("metrics", [])
    r6 = find(routes(node, "-6"), "2001:db8:2::/64")
    assert r6 is not None and r6["gateway"] == "2001:db8:1::1" and r6["metric"] == 300

    assert node.run(["hostname"]).stdout.strip() == "node1"
    assert node.run(["domainname"]).stdout.strip() == "example.org"
    wait_until(lambda: (node.etc_dir / "hosts").exists(), timeout=10, what="hosts")
    assert (node.etc_dir / "resolv.conf").read_text() == (
        "nameserver 192.0.2.53\nnameserver 2001:db8::53\nnameserver 1.1.1.1\n\nsearch example.org\n"
    )
    hosts = (node.etc_dir / "hosts").read_text().splitlines()
    assert hosts[0].split() == ["127.0.0.1", "localhost"]
    assert hosts[1].split()[1:] == ["node1.example.org", "node1"]  # default address, fqdn, hostname
    assert hosts[-1].split() == ["192.0.2.100", "registry", "registry.example.org"]

    # foreign objects, added by hand: must survive everything below
    node.sh("ip addr add 192.0.2.77/32 dev eth0; ip route add 203.0.113.0/24 via 192.0.2.1 proto static")

    # restart with the same config: nothing is written to the kernel
    stop(proc)
    # let the kernel finish its own work first (IPv6 DAD after links went up): those events are not ours
    wait_until(lambda: not tentative(node), timeout=30, what="DAD done")
    time.sleep(1)
    monitor = node.popen(
        ["ip", "monitor", "link", "address", "route"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    time.sleep(0.5)
    proc = start(node, FULL)
    wait_until(lambda: started(node) == 2, timeout=30, what="machined restarted")
    time.sleep(3)
    monitor.terminate()
    events = monitor.communicate(timeout=5)[0].strip()
    assert events == "", f"restart wrote to the kernel:\n{events}"

    # restart with a smaller config: what only the old config had leaves; foreign objects stay
    stop(proc)
    proc = start(node, SMALLER)
    wait_until(
        lambda: (
            find(routes(node), "198.51.100.0/24") is None
            and not any(i["ifname"] == "br0" for i in node.ip_json("link"))
        ),
        timeout=30,
        what="the old config removed",
    )
    wait_until(
        lambda: "2001:db8:1::10/64" not in addrs(node, "eth0"), timeout=30, what="old v6 address removed"
    )
    assert find(routes(node, "-6"), "2001:db8:2::/64") is None
    assert "192.0.2.10/24" in addrs(node, "eth0") and "192.0.2.77/32" in addrs(node, "eth0")
    assert find(routes(node), "203.0.113.0/24") is not None
    assert find(routes(node), "default") is not None
    for port in ("p1", "p2"):  # the bridge's ports are physical for us: never deleted
        assert any(i["ifname"] == port for i in node.ip_json("link"))
    stop(proc)
