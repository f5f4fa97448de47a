"""Inside the VM (kernel WireGuard): netd.kernel.wireguard's kernel backend between two nodes.

The backend is chosen by detection (the module is there, so ``kernel``); the link is created by
our rtnetlink message and configured by our own genetlink messages. Proven: handshake and ping;
``wg(8)`` reads back what we wrote; the same desired state from a new backend object (nothing
cached: what a restarted machined does) writes nothing; a peer added and removed as a diff
leaves the other peer's session alone; delete removes the link.

Python starts slowly under QEMU, so each node runs this file as a script once (``b`` first, then
the whole scenario in ``a``) and the test asserts on the JSON it prints.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness import Lab


def keypair() -> tuple[str, str]:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )

    k = X25519PrivateKey.generate()
    priv = k.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    pub = k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(priv).decode(), base64.b64encode(pub).decode()


def test_kernel_backend(lab: Lab) -> None:
    sw = lab.switch("sw")
    a, b = lab.node("a"), lab.node("b")
    (ka, pa), (kb, pb), (_, pc) = keypair(), keypair(), keypair()
    for i, n in enumerate((a, b), 1):
        lab.connect(n, sw)
        n.ip("addr", "add", f"192.0.2.{i}/24", "dev", "eth0")
    spec_a = {
        "privateKey": ka,
        "listenPort": 51820,
        "firewallMark": 32,
        "peers": [{"publicKey": pb, "endpoint": "192.0.2.2:51820", "allowedIPs": ["198.51.100.2/32"]}],
    }
    spec_b = {
        "privateKey": kb,
        "listenPort": 51820,
        "peers": [{"publicKey": pa, "allowedIPs": ["198.51.100.1/32"]}],
    }

    def script(node: Any, *args: str) -> dict[str, Any]:
        out = node.run([sys.executable, __file__, *args], timeout=240).stdout
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result

    rb = script(b, "b", json.dumps(spec_b))
    assert rb["backend"] == "kernel" and rb["wrote"]
    r = script(a, "a", json.dumps(spec_a), pc)
    assert r["backend"] == "kernel" and r["wrote"] and r["kind"] == "wireguard"
    assert r["ping1"] == 0 and r["ping2"] == 0
    dump = [line.split("\t") for line in r["wg_dump"].splitlines()]
    assert dump[0][2:4] == ["51820", "0x20"]  # listen port, fwmark
    assert dump[1][0] == pb and dump[1][2] == "192.0.2.2:51820" and dump[1][3] == "198.51.100.2/32"

    assert r["exists"] and not r["same"]  # adoption: nothing written
    hs = next(p for p in r["dev1"]["peers"] if p["publicKey"] == pb)
    assert hs["lastHandshake"] > 0 and hs["rxBytes"] > 0

    assert r["add"] and {p["publicKey"] for p in r["dev2"]["peers"]} == {pb, pc}
    assert r["remove"] and [p["publicKey"] for p in r["dev3"]["peers"]] == [pb]
    for dev in (r["dev2"], r["dev3"]):
        assert dev["peers"][0]["lastHandshake"] == hs["lastHandshake"]  # b's session untouched
    assert r["gone"]
    assert a.run(["ip", "link", "show", "wg0"], check=False).returncode != 0


# ---- the part that runs inside a node -------------------------------------------------------


def _sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


async def _node(role: str, spec_json: str, third: str = "") -> dict[str, Any]:
    from netd.kernel.wireguard import KernelBackend, link_exists, select_backend
    from netd.resources.link import WireguardPeer, WireguardSpec

    spec = WireguardSpec.model_validate(json.loads(spec_json))
    be = await select_backend("wg0")
    await be.create("wg0")
    res: dict[str, Any] = {"backend": be.name, "wrote": await be.configure("wg0", spec)}
    i = 1 if role == "a" else 2
    _sh("ip", "addr", "add", f"198.51.100.{i}/24", "dev", "wg0")
    _sh("ip", "link", "set", "wg0", "up")
    if role == "b":
        return res
    res["kind"] = json.loads(_sh("ip", "-j", "-d", "link", "show", "wg0").stdout)[0]["linkinfo"]["info_kind"]
    res["ping1"] = _sh("ping", "-c", "1", "-W", "10", "198.51.100.2").returncode
    res["wg_dump"] = _sh("wg", "show", "wg0", "dump").stdout
    fresh = KernelBackend()
    res["exists"] = await fresh.exists("wg0")
    res["same"] = await fresh.configure("wg0", spec)
    res["dev1"] = (await fresh.get("wg0")).to_json()
    extra = WireguardPeer.model_validate({"publicKey": third, "allowedIPs": ["198.51.100.3/32"]})
    more = spec.model_copy(update={"peers": [*spec.peers, extra]})
    res["add"] = await fresh.configure("wg0", more)
    res["dev2"] = (await fresh.get("wg0")).to_json()
    res["remove"] = await fresh.configure("wg0", spec)
    res["dev3"] = (await fresh.get("wg0")).to_json()
    res["ping2"] = _sh("ping", "-c", "1", "-W", "5", "198.51.100.2").returncode
    await fresh.delete("wg0")
    res["gone"] = not link_exists("wg0")
    return res


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_node(*sys.argv[1:]))), flush=True)
