"""Inside the VM (kernel WireGuard): netd.kernel.wireguard's kernel backend between two nodes.

The backend is chosen by detection (the module is there, so ``kernel``); the link is created by
our rtnetlink message and configured by our own genetlink messages. Proven: handshake and ping;
``wg(8)`` reads back what we wrote; the same desired state through a new backend object (no
state is cached: what a restarted machined does) writes nothing; a peer added and removed as a
diff leaves the other peer's session alone; delete removes the link.

Python starts very slowly in the VM (imports over 9p), so the backend runs in this test process,
in a thread that has entered the node's network namespace (``setns`` is per thread; commands
it starts inherit it), instead of in a new Python process per node.
"""

from __future__ import annotations

import asyncio
import base64
import ctypes
import json
import subprocess
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from harness import Lab, Node

CLONE_NEWNET = 0x40000000


def keypair() -> tuple[str, str]:
    k = X25519PrivateKey.generate()
    priv = k.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    pub = k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(priv).decode(), base64.b64encode(pub).decode()


def in_node(node: Node, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``fn`` on a fresh event loop in a thread inside ``node``'s network namespace."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(node.path) as f:
                if libc.setns(f.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            asyncio.run(fn())
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if errors:
        raise errors[0]


def sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout


def test_kernel_backend(lab: Lab) -> None:
    from netd.kernel.wireguard import KernelBackend, detect, key_from_b64, link_exists, select_backend
    from netd.resources.link import WireguardPeer, WireguardSpec

    sw = lab.switch("sw")
    a, b = lab.node("a"), lab.node("b")
    (ka, pa), (kb, pb), (_, pc) = keypair(), keypair(), keypair()
    for i, n in enumerate((a, b), 1):
        lab.connect(n, sw)
        n.ip("addr", "add", f"192.0.2.{i}/24", "dev", "eth0")
    spec_a = WireguardSpec.model_validate(
        {
            "privateKey": ka,
            "listenPort": 51820,
            "firewallMark": 32,
            "peers": [{"publicKey": pb, "endpoint": "192.0.2.2:51820", "allowedIPs": ["198.51.100.2/32"]}],
        }
    )
    spec_b = WireguardSpec.model_validate(
        {
            "privateKey": kb,
            "listenPort": 51820,
            "peers": [{"publicKey": pa, "allowedIPs": ["198.51.100.1/32"]}],
        }
    )

    async def up(spec: WireguardSpec, i: int) -> None:
        assert await detect() == "kernel"
        be = await select_backend("wg0")
        assert be.name == "kernel" and not await be.exists("wg0")
        await be.create("wg0")
        assert await be.configure("wg0", spec)
        sh("ip", "addr", "add", f"198.51.100.{i}/24", "dev", "wg0")
        sh("ip", "link", "set", "wg0", "up")

    async def scenario_a() -> None:
        await up(spec_a, 1)
        assert (
            json.loads(sh("ip", "-j", "-d", "link", "show", "wg0"))[0]["linkinfo"]["info_kind"] == "wireguard"
        )
        sh("ping", "-c", "1", "-W", "10", "198.51.100.2")
        # wg(8) reads back what our genetlink messages wrote.
        dump = [line.split("\t") for line in sh("wg", "show", "wg0", "dump").splitlines()]
        assert dump[0][2:4] == ["51820", "0x20"]  # listen port, fwmark
        assert dump[1][0] == pb and dump[1][2] == "192.0.2.2:51820" and dump[1][3] == "198.51.100.2/32"

        fresh = KernelBackend()  # adoption: reads the device, writes nothing
        assert await fresh.exists("wg0")
        assert not await fresh.configure("wg0", spec_a)
        hs = (await fresh.get("wg0")).peer(pb)
        assert hs is not None and hs.last_handshake > 0 and hs.rx_bytes > 0

        extra = WireguardPeer.model_validate({"publicKey": pc, "allowedIPs": ["198.51.100.3/32"]})
        assert await fresh.configure("wg0", spec_a.model_copy(update={"peers": [*spec_a.peers, extra]}))
        dev = await fresh.get("wg0")
        assert sorted(p.public_key for p in dev.peers) == sorted([hs.public_key, key_from_b64(pc)])
        assert await fresh.configure("wg0", spec_a)
        dev = await fresh.get("wg0")
        assert [p.public_key for p in dev.peers] == [hs.public_key]
        assert dev.peers[0].last_handshake == hs.last_handshake  # b's session untouched
        assert fresh.writes == 2
        sh("ping", "-c", "1", "-W", "5", "198.51.100.2")

        await fresh.delete("wg0")
        assert not link_exists("wg0")

    async def up_b() -> None:
        await up(spec_b, 2)

    in_node(b, up_b)
    in_node(a, scenario_a)
    assert a.run(["ip", "link", "show", "wg0"], check=False).returncode != 0
