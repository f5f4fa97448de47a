"""Inside the VM (kernel WireGuard): static WireGuard links from the machine config, through machined.

Two nodes, machined on each with a wg0 peering the other node. Proven: the link is a kernel
``wireguard`` link (``ip -d link``), handshake and ping over it, LinkStatus reports it
(``kind: wireguard``, public key, the peer's handshake); a peer added and then removed by
apply-config is written as a diff (the existing peer's handshake time does not change).

Python starts slowly in the VM (imports over 9p, TCG): one machined per node, and the API
(apply-config, get) is called from this test process instead of a ``netctl`` process per call.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from harness import Lab, Node, wait_until

MACHINED = str(Path(sys.executable).with_name("machined"))


def keypair() -> tuple[str, str]:
    k = X25519PrivateKey.generate()
    priv = k.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    pub = k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(priv).decode(), base64.b64encode(pub).decode()


def config(i: int, priv: str, peers: list[tuple[str, str, str]]) -> str:
    """Node ``i`` (192.0.2.i on eth0, 10.9.0.i on wg0); peers as (public key, endpoint, allowed IP)."""
    text = (
        "version: v1alpha1\nmachine:\n  type: worker\n  network:\n    interfaces:\n"
        f"      - interface: eth0\n        addresses: [192.0.2.{i}/24]\n"
        f"      - interface: wg0\n        addresses: [10.9.0.{i}/24]\n"
        f"        wireguard:\n          privateKey: {priv}\n          listenPort: 51820\n          peers:\n"
    )
    for pub, endpoint, allowed in peers:
        text += f"            - publicKey: {pub}\n              allowedIPs: [{allowed}]\n"
        text += "              persistentKeepaliveInterval: 1s\n"
        if endpoint:
            text += f"              endpoint: {endpoint}\n"
    return text


def handshakes(node: Node) -> dict[str, int]:
    out = node.run(["wg", "show", "wg0", "latest-handshakes"]).stdout
    return {k: int(v) for k, v in (line.split() for line in out.splitlines())}


def wg0(node: Node) -> dict[str, Any] | None:
    r = node.run(["ip", "-d", "-j", "addr", "show", "wg0"], check=False)
    if r.returncode != 0:
        return None
    link: dict[str, Any] = json.loads(r.stdout)[0]
    return link


def ready(node: Node, i: int) -> bool:
    link = wg0(node)
    return (
        link is not None
        and "UP" in link["flags"]
        and any(a.get("local") == f"10.9.0.{i}" for a in link.get("addr_info", []))
    )


def test_static_wireguard_kernel_through_machined(lab: Lab) -> None:
    t0 = time.monotonic()
    sw = lab.switch("sw")
    a, b = lab.node("a"), lab.node("b")
    for n in (a, b):
        lab.connect(n, sw)
    (ka, pa), (kb, pb_), (_, pc) = keypair(), keypair(), keypair()
    cfg_a = config(1, ka, [(pb_, "192.0.2.2:51820", "10.9.0.2/32")])
    cfg_b = config(2, kb, [(pa, "192.0.2.1:51820", "10.9.0.1/32")])
    procs = []
    for n, cfg in ((a, cfg_a), (b, cfg_b)):
        (n.dir / "config.yaml").write_text(cfg)
        args = [MACHINED, "--config", str(n.dir / "config.yaml"), "--state-dir", str(n.state_dir)]
        args += ["--etc-dir", str(n.etc_dir), "--api", str(n.dir / "api.sock")]
        procs.append(n.popen(args))
    # Imported while both machined start (the VM has two CPUs): grpc's import is slow over 9p.
    from machined.api import machined_pb2 as pb
    from netctl.client import Client

    wait_until(lambda: ready(a, 1) and ready(b, 2), timeout=120, what="wg0 up with its address on both")
    print(f"wg0 up after {time.monotonic() - t0:.1f}s")
    link = wg0(a)
    assert link is not None and link["linkinfo"]["info_kind"] == "wireguard"  # kernel, not wireguard-go
    a.run(["ping", "-c", "1", "-W", "10", "10.9.0.2"])
    hs = handshakes(a)[pb_]
    assert hs > 0

    with Client(str(a.dir / "api.sock")) as client:

        def status() -> dict[str, Any]:
            st: dict[str, Any] = client.get("links", "wg0", "network")[3]
            return st

        def with_handshake() -> bool:
            st = status()
            peers = st.get("wireguard", {}).get("peers", [])
            return (
                st.get("kind") == "wireguard" and len(peers) == 1 and bool(peers[0].get("lastHandshakeTime"))
            )

        wait_until(with_handshake, timeout=30, what="LinkStatus wg0 with the handshake")
        assert status()["wireguard"]["publicKey"] == pa

        def apply(text: str) -> None:
            client.call("ApplyConfiguration", pb.ApplyConfigurationRequest(data=text, mode=pb.AUTO))

        print(f"LinkStatus after {time.monotonic() - t0:.1f}s")
        apply(config(1, ka, [(pb_, "192.0.2.2:51820", "10.9.0.2/32"), (pc, "", "10.9.0.3/32")]))
        wait_until(lambda: pc in handshakes(a), timeout=60, what="peer added")
        assert handshakes(a)[pb_] == hs
        print(f"peer added after {time.monotonic() - t0:.1f}s")
        apply(cfg_a)
        wait_until(lambda: pc not in handshakes(a), timeout=60, what="peer removed")
        time.sleep(2)  # a re-added peer would handshake again within its 1 s keepalive
        assert handshakes(a)[pb_] == hs
    a.run(["ping", "-c", "1", "-W", "10", "10.9.0.2"])
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=30)
    print(f"total {time.monotonic() - t0:.1f}s")
