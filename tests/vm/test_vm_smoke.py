"""Inside the VM (full Debian kernel): kernel WireGuard between two nodes across a switch."""

from __future__ import annotations

from harness import Lab, Node


def test_kernel_wireguard_handshake_and_ping(lab: Lab) -> None:
    sw = lab.switch("sw")
    a, b = lab.node("a"), lab.node("b")
    pubkeys: dict[str, str] = {}
    for i, n in enumerate((a, b), 1):
        lab.connect(n, sw)
        key = n.etc_dir / "wg.key"
        # One shell per node keeps the process count (slow under TCG) down.
        pubkeys[n.name] = n.sh(
            f"""
            umask 077
            wg genkey > {key}
            ip addr add 192.0.2.{i}/24 dev eth0
            ip link add wg0 type wireguard
            ip addr add 198.51.100.{i}/24 dev wg0
            wg pubkey < {key}
            """
        ).strip()

    def peer(n: Node, other: Node, other_i: int) -> None:
        n.sh(
            f"wg set wg0 private-key {n.etc_dir / 'wg.key'} listen-port 51820 "
            f"peer {pubkeys[other.name]} endpoint 192.0.2.{other_i}:51820 "
            f"allowed-ips 198.51.100.{other_i}/32\n"
            "ip link set wg0 up"
        )

    peer(a, b, 2)
    peer(b, a, 1)
    assert a.link("wg0")["linkinfo"]["info_kind"] == "wireguard"  # the kernel module, not wireguard-go
    # WireGuard queues the first packets while it does the handshake, so one ping suffices.
    a.run(["ping", "-c", "1", "-W", "10", "198.51.100.2"])
    b.run(["ping", "-c", "1", "-W", "10", "198.51.100.1"])
    for n, other in ((a, b), (b, a)):
        handshakes = n.run(["wg", "show", "wg0", "latest-handshakes"]).stdout.split()
        assert handshakes[0] == pubkeys[other.name]
        assert int(handshakes[1]) > 0
        rx, tx = map(int, n.run(["wg", "show", "wg0", "transfer"]).stdout.split()[1:3])
        assert rx > 0 and tx > 0
    # The tunnel really carries the traffic: no peer for an address outside allowed-ips.
    assert a.run(["ping", "-c", "1", "-W", "1", "198.51.100.9"], check=False).returncode != 0
