"""Inside the VM (kernel WireGuard): KubeSpan between two machined nodes on the kernel backend.

Nodes a and b on one switch, the discovery service in ``ds``. a advertises only an endpoint b
cannot reach; b advertises an unreachable one first, then one a reaches through a route (neither
on a's subnets), so a has to rotate: on the kernel backend the peer without a session is removed
and re-added in one genetlink write (netd/kernel/wireguard/diff.py). Proven: ``kubespan`` is a
kernel ``wireguard`` link, the peers come ``up``, a ping over the KubeSpan IPv6 addresses works.

Python starts slowly in the VM (imports over 9p, TCG): the API is called from this process.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from harness import Lab, Node, wait_until

BIN = Path(sys.executable).parent
CLUSTER_ID = "8XuV9TZHW08DOk3bVxQjH9ih_TBKjnh-j44tsCLSBzo="
SECRET = "kCQsKr4B28VUl7qw1sVkTDNF9fFH++ViIuKsss+C6kc="
KS = "fd7f:175a:b97c:5602:0:aff:fe00:"


def config(name: str, addresses: str, filters: str, routes: str = "") -> str:
    return f"""version: v1alpha1
machine:
  type: worker
  network:
    hostname: {name}
    interfaces:
      - interface: eth0
        addresses: [{addresses}]
        routes: [{routes}]
    kubespan:
      enabled: true
      harvestExtraEndpoints: false
      filters:
        endpoints: [{filters}]
cluster:
  id: {CLUSTER_ID}
  secret: {SECRET}
  discovery:
    enabled: true
    registries:
      kubernetes:
        disabled: true
      service:
        endpoint: http://10.0.0.254:3000
"""


def link_kind(node: Node) -> str | None:
    r = node.run(["ip", "-d", "-j", "link", "show", "kubespan"], check=False)
    if r.returncode != 0:
        return None
    kind: str = json.loads(r.stdout)[0].get("linkinfo", {}).get("info_kind", "")
    return kind


def test_kubespan_on_kernel_wireguard(lab: Lab, tmp_path: Path) -> None:
    t0 = time.monotonic()
    tunables = tmp_path / "tunables.yaml"
    tunables.write_text("KUBESPAN_MAC_LINK: eth0\nENDPOINT_CONNECTION_TIMEOUT: 6\n")
    env = dict(os.environ, NETD_TUNABLES=str(tunables))
    sw = lab.switch("sw")
    ds, a, b = lab.node("ds"), lab.node("a", hostname="a"), lab.node("b", hostname="b")
    lab.connect(ds, sw, "eth0")
    lab.connect(a, sw, "eth0", mac="02:00:0a:00:00:01")
    lab.connect(b, sw, "eth0", mac="02:00:0a:00:00:02")
    ds.sh("ip addr add 10.0.0.254/24 dev eth0")
    ds.popen([str(BIN / "discovery-service"), "--listen", "10.0.0.254:3000"], env=env)
    cfgs = {
        a: config(
            "a", "10.0.0.1/24, fd00:10::1/64, 198.51.100.1/32", "198.51.100.0/24",
            "{network: 10.9.0.0/24, gateway: 10.0.0.2}",
        ),
        b: config(
            "b", "10.0.0.2/24, fd00:10::2/64, 192.168.99.2/32, 10.9.0.2/32", "192.168.99.0/24, 10.9.0.0/24"
        ),
    }  # fmt: skip
    procs = []
    for n, text in cfgs.items():
        n.sh("sysctl -qw net.ipv6.conf.eth0.accept_dad=0 || true")
        (n.dir / "config.yaml").write_text(text)
        d = n.dir
        args = [str(BIN / "machined"), "--config", str(d / "config.yaml"), "--api", str(d / "api.sock")]
        args += ["--state-dir", str(n.state_dir), "--etc-dir", str(n.etc_dir)]
        procs.append(n.popen(args, env=env))
    from netctl.client import Client

    def states(n: Node) -> dict[str, Any]:
        with Client(str(n.dir / "api.sock")) as client:
            return {spec["label"]: spec for _, spec in client.list("kubespanpeerstatuses", "kubespan")[2]}

    wait_until(lambda: link_kind(a) == link_kind(b) == "wireguard", timeout=180, what="kernel kubespan links")
    print(f"kubespan links after {time.monotonic() - t0:.1f}s")
    wait_until(
        lambda: states(a).get("b", {}).get("state") == "up" and states(b).get("a", {}).get("state") == "up",
        timeout=180,
        interval=1,
        what="peers up",
    )
    print(f"peers up after {time.monotonic() - t0:.1f}s")
    st = states(a)["b"]
    assert st["endpoint"] == "10.9.0.2:51820", st  # rotated off the unreachable first endpoint
    a.run(["ping", "-c", "1", "-W", "10", f"{KS}2"])
    b.run(["ping", "-c", "1", "-W", "10", f"{KS}1"])
    for p in procs:
        p.send_signal(signal.SIGTERM)
