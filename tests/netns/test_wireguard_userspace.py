"""Userspace WireGuard (wireguard-go) through netd.kernel.wireguard, on the host kernel.

Two nodes on a switch each get ``wg0`` created and configured by our backend (the CLI
``python -m netd.kernel.wireguard`` run inside the node: a fresh process each time, so every
call after the first is also an adoption). Proven here: handshake and ping across the tunnel;
a peer added and removed as a diff (the existing peer's session is untouched: same handshake
time, counters still growing, same wireguard-go); a "restart" (fresh process, same desired
state) writes nothing while ping keeps flowing; delete stops wireguard-go; lab cleanup kills
the other one.
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
from harness import Lab, Node


def keypair() -> tuple[str, str]:
    k = X25519PrivateKey.generate()
    priv = k.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    pub = k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(priv).decode(), base64.b64encode(pub).decode()


def wg(node: Node, *args: str) -> dict[str, Any]:
    argv = [sys.executable, "-m", "netd.kernel.wireguard", "--backend", "userspace"]
    argv += ["--log-dir", str(node.log_dir), *args]
    out = node.run(argv).stdout.strip().splitlines()
    result: dict[str, Any] = json.loads(out[-1])
    return result


def apply(node: Node, spec: dict[str, Any]) -> dict[str, Any]:
    return wg(node, "apply", "wg0", json.dumps(spec))


def peer_of(dev: dict[str, Any], pub: str) -> dict[str, Any]:
    (p,) = [p for p in dev["peers"] if p["publicKey"] == pub]
    return p


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


STATUS_PY = """
import asyncio, json
from netd.kernel.wireguard import is_userspace_device, read_device
dev = asyncio.run(read_device("wg0", "tun"))
u = [is_userspace_device("wg0"), is_userspace_device("wg0", "tun"), is_userspace_device("eth0")]
print(json.dumps({"userspace": u, "spec": dev.to_spec().model_dump(mode="json", by_alias=True)}))
"""


def test_userspace_wireguard(lab: Lab) -> None:
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
    # b has no endpoint for a (don't care): it learns a's from the handshake, and that is in sync.
    spec_b = {
        "privateKey": kb,
        "listenPort": 51820,
        "peers": [{"publicKey": pa, "allowedIPs": ["198.51.100.1/32"], "persistentKeepaliveInterval": "25s"}],
    }

    t0 = time.monotonic()
    ra, rb = apply(a, spec_a), apply(b, spec_b)
    t_create = time.monotonic() - t0
    assert ra["created"] and ra["wrote"] and rb["created"] and rb["wrote"]
    assert ra["backend"] == "userspace" and ra["pid"] and rb["pid"]
    pid_a, pid_b = ra["pid"], rb["pid"]
    for i, n in enumerate((a, b), 1):
        n.sh(
            f"ip addr add 198.51.100.{i}/24 dev wg0\nip link set wg0 up\ntest -S /var/run/wireguard/wg0.sock"
        )
        assert n.link("wg0")["linkinfo"]["info_kind"] == "tun"  # wireguard-go, not the kernel module
    a.run(["ping", "-c", "1", "-W", "10", "198.51.100.2"])
    b.run(["ping", "-c", "1", "-W", "10", "198.51.100.1"])

    dev_a = wg(a, "get", "wg0")
    assert dev_a["pid"] == pid_a and dev_a["listenPort"] == 51820 and dev_a["fwmark"] == 32
    hs = peer_of(dev_a, pb)
    assert hs["lastHandshake"] > 0 and hs["rxBytes"] > 0 and hs["txBytes"] > 0
    dev_b = wg(b, "get", "wg0")
    assert peer_of(dev_b, pa)["endpoint"] == "192.0.2.1:51820"  # learnt

    # What LinkStatus will use: a tun with a UAPI socket is a wireguard device; its spec.
    status = a.run([sys.executable, "-c", STATUS_PY]).stdout
    assert json.loads(status) == {
        "userspace": [True, True, False],
        "spec": {
            "publicKey": pa,
            "listenPort": 51820,
            "firewallMark": 32,
            "peers": [
                {
                    "publicKey": pb,
                    "presharedKey": "",
                    "endpoint": "192.0.2.2:51820",
                    "persistentKeepaliveInterval": "0s",
                    "allowedIPs": ["198.51.100.2/32"],
                }
            ],
        },
    }

    # Same desired state again (a fresh process each time): nothing written on either side.
    assert not apply(a, spec_a)["wrote"]
    assert not apply(b, spec_b)["wrote"]

    # A third peer added, as a diff: b's session on a is untouched.
    third = {"publicKey": pc, "allowedIPs": ["198.51.100.3/32"]}
    r = apply(a, spec_a | {"peers": [*spec_a["peers"], third]})
    assert r["wrote"] and r["pid"] == pid_a
    dev3 = wg(a, "get", "wg0")
    assert {p["publicKey"] for p in dev3["peers"]} == {pb, pc}
    after = peer_of(dev3, pb)
    assert after["lastHandshake"] == hs["lastHandshake"]
    assert after["rxBytes"] >= hs["rxBytes"] and after["endpoint"] == "192.0.2.2:51820"
    a.run(["ping", "-c", "1", "-W", "5", "198.51.100.2"])
    # ... and removed again.
    assert apply(a, spec_a)["wrote"]
    dev4 = wg(a, "get", "wg0")
    assert [p["publicKey"] for p in dev4["peers"]] == [pb]
    assert peer_of(dev4, pb)["lastHandshake"] == hs["lastHandshake"]
    assert peer_of(dev4, pb)["rxBytes"] > hs["rxBytes"]

    # "Restart": fresh processes re-apply the same state while a ping runs through the tunnel.
    ping = a.popen(["ping", "-c", "25", "-i", "0.1", "-W", "1", "198.51.100.2"], log=a.log_dir / "ping.log")
    time.sleep(0.3)
    t0 = time.monotonic()
    ra, rb = apply(a, spec_a), apply(b, spec_b)
    t_adopt = time.monotonic() - t0
    assert ping.wait(timeout=30) == 0
    assert not ra["wrote"] and not rb["wrote"] and not ra["created"] and not rb["created"]
    assert (ra["pid"], rb["pid"]) == (pid_a, pid_b)
    assert " 0% packet loss" in (a.log_dir / "ping.log").read_text()
    dev5 = wg(a, "get", "wg0")
    assert peer_of(dev5, pb)["rxBytes"] > peer_of(dev4, pb)["rxBytes"]

    # Delete: link, socket and wireguard-go gone on a.
    assert wg(a, "delete", "wg0")["pid"] is None
    assert a.run(["ip", "link", "show", "wg0"], check=False).returncode != 0
    assert a.run(["test", "-e", "/var/run/wireguard/wg0.sock"], check=False).returncode != 0
    assert not alive(pid_a)

    # Lab cleanup kills b's wireguard-go (detached from us, found by its namespaces).
    assert alive(pid_b)
    assert not lab.close()
    assert not alive(pid_b)
    print(f"create+configure both {t_create:.2f}s, adopt both {t_adopt:.2f}s", file=sys.stderr)
