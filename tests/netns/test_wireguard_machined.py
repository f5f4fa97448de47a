"""Static WireGuard links from ``machine.network.interfaces[].wireguard``, end to end through
machined, on the userspace backend (the host kernel has no WireGuard: wireguard-go).

Two nodes on a switch, machined on each with the same kind of config (eth0 addresses, a wg0
device peering with the other node, an address on wg0). Proven: handshake and ping over wg0;
LinkStatus (``netctl get links wg0``) says ``kind: wireguard`` with the public key, listen port
and the peer's handshake time and byte counters; a machined restart keeps the tunnel (same
ifindex, same wireguard-go process, a ping across it loses at most a couple of packets, no new
handshake: nothing was rewritten); a peer added and then removed by apply-config is written as
a diff (the existing peer's session, i.e. its handshake time, is untouched); wg0 removed from the
config deletes the link and stops its wireguard-go.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import Lab, Node, wait_until

BIN = Path(sys.executable).parent
MACHINED = str(BIN / "machined")
NETCTL = str(BIN / "netctl")


def keypair() -> tuple[str, str]:
    priv = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True).stdout.strip()
    pub = subprocess.run(["wg", "pubkey"], input=priv, capture_output=True, text=True, check=True)
    return priv, pub.stdout.strip()


def config(i: int, priv: str, peers: list[tuple[str, str, str]]) -> str:
    """Node ``i`` (192.0.2.i on eth0, 10.9.0.i on wg0); peers as (public key, endpoint, allowed IP)."""
    lines = [
        "version: v1alpha1",
        "machine:",
        "  type: worker",
        "  network:",
        "    interfaces:",
        "      - interface: eth0",
        f"        addresses: [192.0.2.{i}/24]",
        "      - interface: wg0",
        f"        addresses: [10.9.0.{i}/24]",
        "        wireguard:",
        f"          privateKey: {priv}",
        "          listenPort: 51820",
        "          peers:",
    ]
    for pub, endpoint, allowed in peers:
        lines += [
            f"            - publicKey: {pub}",
            f"              endpoint: {endpoint}" if endpoint else "              endpoint: ''",
            f"              allowedIPs: [{allowed}]",
            "              persistentKeepaliveInterval: 1s",
        ]
    return "\n".join(lines) + "\n"


class Machined:
    def __init__(self, node: Node, text: str) -> None:
        self.node = node
        self.config = node.dir / "config.yaml"
        self.config.write_text(text)
        self.api = str(node.dir / "api.sock")
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        n = self.node
        self.proc = n.popen(
            [
                MACHINED, "--config", str(self.config), "--state-dir", str(n.state_dir),
                "--etc-dir", str(n.etc_dir), "--api", self.api, "--log-level", "debug",
            ]
        )  # fmt: skip

    def wait_api(self) -> None:
        wait_until(lambda: self.netctl("get", "ns", check=False).returncode == 0, timeout=30, what="API up")

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=15) == 0

    def netctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.node.run([NETCTL, *args, "--endpoint", self.api], check=check, timeout=60)

    def link(self, name: str) -> dict[str, Any] | None:
        r = self.netctl("get", "links", name, "-o", "json", check=False)
        if r.returncode != 0:
            return None
        spec: dict[str, Any] = json.loads(r.stdout.splitlines()[0])["spec"]
        return spec

    def apply(self, text: str) -> None:
        path = self.node.dir / "new.yaml"
        path.write_text(text)
        assert self.netctl("apply-config", str(path)).stdout == "applied\n"


def handshakes(node: Node) -> dict[str, int]:
    """``wg show wg0 latest-handshakes`` (over wireguard-go's UAPI socket): key → unix seconds."""
    out = node.run(["wg", "show", "wg0", "latest-handshakes"]).stdout
    return {k: int(v) for k, v in (line.split() for line in out.splitlines())}


def writes(node: Node) -> int:
    """WireGuard configuration writes machined logged in this node (all its runs)."""
    return sum(
        p.read_text().count("WireGuard configuration written") for p in node.log_dir.glob("*machined*.log")
    )


def wg_pid(node: Node) -> int:
    code = "from netd.kernel.wireguard import UserspaceBackend; print(UserspaceBackend().pid('wg0'))"
    return int(node.run([sys.executable, "-c", code]).stdout)


def pings(node: Node, dst: str) -> bool:
    return node.run(["ping", "-c", "1", "-W", "1", dst], check=False).returncode == 0


def test_static_wireguard_through_machined(lab: Lab) -> None:
    t0 = time.monotonic()
    sw = lab.switch("sw")
    a, b = lab.node("a"), lab.node("b")
    for n in (a, b):
        lab.connect(n, sw, "eth0")
    (ka, pa), (kb, pb), (_, pc) = keypair(), keypair(), keypair()
    cfg_a = config(1, ka, [(pb, "192.0.2.2:51820", "10.9.0.2/32")])
    cfg_b = config(2, kb, [(pa, "192.0.2.1:51820", "10.9.0.1/32")])
    ma, mb = Machined(a, cfg_a), Machined(b, cfg_b)
    ma.start()
    mb.start()
    ma.wait_api()
    mb.wait_api()

    # handshake and ping over wg0
    wait_until(lambda: pings(a, "10.9.0.2"), timeout=30, what="ping over wg0")
    for n in (a, b):
        link = n.link("wg0")
        assert link["linkinfo"]["info_kind"] == "tun"  # wireguard-go's device
        assert "UP" in link["flags"]
        assert f"10.9.0.{1 if n is a else 2}/24" in n.run(["ip", "-br", "addr", "show", "wg0"]).stdout

    # LinkStatus: kind wireguard, keys, port, the peer's session
    def status_ok() -> bool:
        st = ma.link("wg0")
        if st is None or st.get("kind") != "wireguard":
            return False
        peers = st["wireguard"]["peers"]
        return len(peers) == 1 and bool(peers[0].get("lastHandshakeTime")) and peers[0].get("rxBytes", 0) > 0

    wait_until(status_ok, timeout=20, what="LinkStatus wg0 with a handshake")
    st = ma.link("wg0")
    assert st is not None
    wg = st["wireguard"]
    assert wg["publicKey"] == pa and "privateKey" not in wg
    assert wg["listenPort"] == 51820
    peer = wg["peers"][0]
    assert peer["publicKey"] == pb and peer["endpoint"] == "192.0.2.2:51820"
    assert peer["allowedIPs"] == ["10.9.0.2/32"]
    assert peer["rxBytes"] > 0 and peer["txBytes"] > 0
    # the counters are refreshed without netlink events (the 5 s timer)
    rx0 = peer["rxBytes"]
    wait_until(
        lambda: (ma.link("wg0") or {}).get("wireguard", {}).get("peers", [{}])[0].get("rxBytes", 0) > rx0,
        timeout=15,
        what="rx bytes refreshed",
    )
    print(f"up and handshaken after {time.monotonic() - t0:.1f}s")

    # machined restart: the tunnel stays (same link, same wireguard-go, no rewrite)
    index, pid, hs, w0 = a.link("wg0")["ifindex"], wg_pid(a), handshakes(a)[pb], writes(a)
    assert w0 == 1  # created and configured once; the link events since wrote nothing
    monitor = a.popen(["ip", "monitor", "link"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    ping = a.popen(["ping", "-i", "0.1", "-c", "100", "-W", "1", "10.9.0.2"], stdout=subprocess.PIPE)
    time.sleep(1)
    t1 = time.monotonic()
    ma.stop()
    ma.start()
    ma.wait_api()
    print(f"machined restarted in {time.monotonic() - t1:.1f}s")
    out = ping.communicate(timeout=60)[0]
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m is not None, out
    sent, received = int(m[1]), int(m[2])
    assert received >= 0.9 * sent, out
    time.sleep(2)  # let the new machined's first passes finish
    monitor.terminate()
    events = monitor.communicate(timeout=5)[0]
    assert "Deleted" not in events, events
    assert a.link("wg0")["ifindex"] == index
    assert wg_pid(a) == pid
    assert handshakes(a)[pb] == hs  # the peer was not re-added (a re-add resets the session)
    assert writes(a) == w0  # the new machined adopted the device: read it, wrote nothing
    wait_until(status_ok, timeout=20, what="LinkStatus after the restart")

    # a peer added, then removed: written as a diff (the existing peer's session stays)
    ma.apply(config(1, ka, [(pb, "192.0.2.2:51820", "10.9.0.2/32"), (pc, "", "10.9.0.3/32")]))
    wait_until(lambda: pc in handshakes(a), timeout=20, what="peer added")
    wait_until(
        lambda: len((ma.link("wg0") or {}).get("wireguard", {}).get("peers", [])) == 2,
        timeout=20,
        what="LinkStatus with two peers",
    )
    assert handshakes(a)[pb] == hs
    assert writes(a) == w0 + 1
    ma.apply(cfg_a)
    wait_until(lambda: pc not in handshakes(a), timeout=20, what="peer removed")
    time.sleep(2)  # a re-added peer would handshake again within its 1 s keepalive
    assert handshakes(a)[pb] == hs
    assert writes(a) == w0 + 2
    assert a.link("wg0")["ifindex"] == index and wg_pid(a) == pid
    assert pings(a, "10.9.0.2")

    # wg0 gone from the config: the link is deleted and its wireguard-go stops
    ma.apply(cfg_a[: cfg_a.index("      - interface: wg0")])
    wait_until(
        lambda: a.run(["ip", "link", "show", "wg0"], check=False).returncode != 0, timeout=20, what="wg0 gone"
    )
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout=10, what="wireguard-go stopped")
    ma.stop()
    mb.stop()
    print(f"total {time.monotonic() - t0:.1f}s")
