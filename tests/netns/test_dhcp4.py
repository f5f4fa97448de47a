"""The DHCPv4 operator in machined against real servers (kea, dnsmasq) in namespaces.

Topology: switch ``sw``; node ``srv`` (10.0.0.1/24 on eth0) runs the DHCP server (and tcpdump);
node ``n1`` runs machined with ``dhcp: true`` on eth0 (a veth: not "physical", so DHCP is
enabled in the config, operators.md §1.2).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from typing import Any

import pytest
from harness import Lab, wait_until
from harness.daemons import Machined
from harness.nodes import Node

MAC = "02:00:00:00:00:01"
KEA = "/usr/sbin/kea-dhcp4"
DNSMASQ = "/usr/sbin/dnsmasq"


def config(metric: int = 100, hostname: str | None = None) -> str:
    host = f"    hostname: {hostname}\n" if hostname else ""
    return (
        "version: v1alpha1\nmachine:\n  network:\n"
        f"{host}"
        "    interfaces:\n"
        "      - interface: eth0\n        dhcp: true\n"
        f"        dhcpOptions:\n          routeMetric: {metric}\n"
    )


class Kea:
    """kea-dhcp4 on ``srv``'s eth0 with a short lease (renewals within a test)."""

    def __init__(self, node: Node, *, valid: int = 20, options: list[dict[str, Any]] | None = None,
                 reservation: str | None = None) -> None:  # fmt: skip
        self.node = node
        self.dir = node.dir / "kea"
        self.dir.mkdir(exist_ok=True)
        self.proc: subprocess.Popen[str] | None = None
        opts = options if options is not None else [
            {"name": "routers", "data": "10.0.0.1"},
            {"name": "domain-name-servers", "data": "10.0.0.1"},
            {"name": "ntp-servers", "data": "10.0.0.2"},
            {"name": "interface-mtu", "data": "1400"},
            {"name": "host-name", "data": "node-a"},
            {"name": "domain-name", "data": "lab.test"},
        ]  # fmt: skip
        subnet: dict[str, Any] = {
            "id": 1, "subnet": "10.0.0.0/24", "pools": [{"pool": "10.0.0.50 - 10.0.0.60"}],
            "option-data": opts,
        }  # fmt: skip
        if reservation:
            subnet["reservations"] = [{"hw-address": MAC, "ip-address": reservation}]
        cfg = {
            "Dhcp4": {
                "interfaces-config": {"interfaces": ["eth0"], "dhcp-socket-type": "raw"},
                "lease-database": {"type": "memfile", "persist": False},
                "valid-lifetime": valid, "renew-timer": valid // 2, "rebind-timer": valid * 7 // 8,
                "authoritative": True,
                "subnet4": [subnet],
                "loggers": [{
                    "name": "kea-dhcp4", "severity": "DEBUG", "debuglevel": 40,
                    "output_options": [{"output": str(self.dir / "kea.log")}],
                }],
            }
        }  # fmt: skip
        self.conf = self.dir / "kea.json"
        self.conf.write_text(json.dumps(cfg, indent=1))

    def start(self) -> None:
        env = {"KEA_PIDFILE_DIR": str(self.dir), "KEA_LOCKFILE_DIR": str(self.dir)}
        self.proc = self.node.popen([KEA, "-c", str(self.conf)], env=env)
        wait_until(lambda: self.node.run(["ss", "-Hlun", "sport = :67"], check=False).stdout.strip(),
                   timeout=20, what="kea listening")  # fmt: skip

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=15)


class Dnsmasq:
    """dnsmasq as a DHCP server only (port=0), authoritative, lease 2 min (its minimum)."""

    def __init__(self, node: Node, *, host_ip: str | None = "10.0.0.50", extra: tuple[str, ...] = ()) -> None:
        self.node = node
        self.dir = node.dir / "dnsmasq"
        self.dir.mkdir(exist_ok=True)
        self.proc: subprocess.Popen[str] | None = None
        self.host_ip = host_ip
        self.extra = extra

    def start(self) -> None:
        argv = [
            DNSMASQ, "--keep-in-foreground", "--port=0", "--interface=eth0", "--bind-interfaces",
            "--dhcp-authoritative", "--dhcp-range=10.0.0.100,10.0.0.150,255.255.255.0,2m",
            f"--dhcp-leasefile={self.dir / 'leases'}", f"--pid-file={self.dir / 'pid'}",
            "--dhcp-option=option:router,10.0.0.1", "--dhcp-option=option:dns-server,10.0.0.1",
            "--dhcp-option=option:ntp-server,10.0.0.2", "--dhcp-option=option:mtu,1400",
            "--domain=lab.test", "--log-dhcp", "--log-facility=-", "--user=root",
        ]  # fmt: skip
        if self.host_ip:
            argv.append(f"--dhcp-host={MAC},{self.host_ip},node-d")
        self.proc = self.node.popen([*argv, *self.extra])
        wait_until(lambda: self.node.run(["ss", "-Hlun", "sport = :67"], check=False).stdout.strip(),
                   timeout=20, what="dnsmasq listening")  # fmt: skip

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=15)


def setup(lab: Lab, tunables: dict[str, Any] | None = None, **cfg: Any) -> tuple[Node, Machined]:
    sw = lab.switch("sw")
    srv = lab.node("srv")
    n1 = lab.node("n1")
    lab.connect(srv, sw)
    lab.connect(n1, sw, mac=MAC)
    srv.sh("ip addr add 10.0.0.1/24 dev eth0\nip addr add 10.0.0.2/24 dev eth0")
    env = {}
    if tunables:
        path = lab.dir / "tunables.yaml"
        path.write_text("".join(f"{k}: {v}\n" for k, v in tunables.items()))
        env["NETD_TUNABLES"] = str(path)
    return srv, Machined(n1, config(**cfg), env)


def addrs(node: Node) -> list[dict[str, Any]]:
    out = []
    for link in node.ip_json("-4", "addr", "show", "dev", "eth0"):
        out += [a for a in link.get("addr_info", []) if a.get("scope") == "global"]
    return out


def has_addr(node: Node, ip: str) -> dict[str, Any] | None:
    return next((a for a in addrs(node) if a["local"] == ip), None)


def default_routes(node: Node) -> list[dict[str, Any]]:
    return [r for r in node.ip_json("-4", "route", "show", "default") if r.get("dev") == "eth0"]


class Monitor:
    """``ip monitor address`` in the node: every deletion of an address is seen."""

    def __init__(self, node: Node) -> None:
        self.path = node.dir / f"monitor-{time.monotonic_ns()}.txt"
        self.proc = node.popen(["ip", "-4", "monitor", "address"], log=self.path)
        time.sleep(0.3)

    def deleted(self, ip: str) -> list[str]:
        return [
            line for line in self.path.read_text().splitlines() if line.startswith("Deleted") and ip in line
        ]


def resolv(node: Node) -> str:
    return (node.etc_dir / "resolv.conf").read_text()


def check_lease(m: Machined, ip: str, hostname: str) -> None:
    n = m.node
    a = wait_until(lambda: has_addr(n, ip), timeout=30, what=f"{ip} on eth0")
    assert a["prefixlen"] == 24
    assert a["valid_life_time"] != 4294967295  # §0: the kernel lifetime is the lease's
    routes = wait_until(lambda: default_routes(n), timeout=10, what="default route")
    assert [(r["gateway"], r["prefsrc"], r["metric"]) for r in routes] == [("10.0.0.1", ip, 100)]
    boot = n.ip_json("-4", "route", "show", "default", "proto", "boot")  # (ip -j omits "boot")
    assert [r["gateway"] for r in boot] == ["10.0.0.1"]
    wait_until(lambda: "nameserver 10.0.0.1" in resolv(n), timeout=10, what="resolv.conf")
    assert [x for x in resolv(n).splitlines() if x.startswith("nameserver")] == ["nameserver 10.0.0.1"]
    wait_until(lambda: n.link("eth0")["mtu"] == 1400, timeout=10, what="MTU 1400")
    wait_until(lambda: n.run(["hostname"]).stdout.strip() == hostname, timeout=10, what="hostname")
    ts = m.specs("timeserverstatuses")
    assert any(s.get("timeServers") == ["10.0.0.2"] for s in ts.values()), ts
    st = m.specs("operators")["dhcp4/eth0"]
    assert st["state"] == "bound" and st["address"] == f"{ip}/24" and st["server"] == "10.0.0.1"
    ids = m.specs("addressspecs", "-n", "network-config")
    assert ids[f"dhcp4/eth0/eth0/{ip}/24"]["layer"] == "operator"


def test_lease_from_kea(lab: Lab) -> None:
    srv, m = setup(lab)
    kea = Kea(srv, valid=600)
    kea.start()
    m.start()
    check_lease(m, "10.0.0.50", "node-a")
    assert "search lab.test" in resolv(m.node)


def test_lease_from_dnsmasq(lab: Lab) -> None:
    srv, m = setup(lab)
    Dnsmasq(srv).start()
    m.start()
    check_lease(m, "10.0.0.50", "node-d")


@pytest.mark.timeout(180)
def test_renew_unicast_then_rebind_expire_and_back(lab: Lab) -> None:
    """kea, lease 20 s (T1 10 s, T2 17 s): the renewal at T1 is a unicast REQUEST to the server
    id with ciaddr; with kea stopped the client rebinds (broadcast) at T2 and the address leaves
    the kernel at the lease end; kea back → a new lease."""
    srv, m = setup(lab)
    kea = Kea(srv, valid=20)
    kea.start()
    cap = srv.dir / "dhcp.pcap"
    tcpdump = srv.popen(["tcpdump", "-i", "eth0", "-n", "-U", "-w", str(cap), "udp port 67 or udp port 68"])
    time.sleep(1)
    m.start()
    wait_until(lambda: has_addr(m.node, "10.0.0.50"), timeout=30, what="lease")
    t_bound = time.monotonic()
    mon = Monitor(m.node)
    time.sleep(13)  # past T1 (10 s): one renewal
    assert not mon.deleted("10.0.0.50")
    st = m.specs("operators")["dhcp4/eth0"]
    assert st["state"] == "bound"
    kea.stop()
    # T2 comes 17 s after the last ACK, the end 20 s after it.
    wait_until(
        lambda: m.specs("operators")["dhcp4/eth0"]["state"] == "rebinding", timeout=25, what="rebinding"
    )
    wait_until(lambda: not has_addr(m.node, "10.0.0.50"), timeout=15, what="address gone at lease end")
    # the operator withdraws its spec at its own lease-end timer, a moment after the kernel
    # expired the address (valid_lft): wait for it rather than race it
    wait_until(
        lambda: m.specs("addressspecs", "-n", "network-config").get("dhcp4/eth0/eth0/10.0.0.50/24") is None,
        timeout=10,
        what="lease spec withdrawn",
    )
    assert not has_addr(m.node, "10.0.0.50")  # and not re-added meanwhile
    kea.start()
    wait_until(lambda: has_addr(m.node, "10.0.0.50"), timeout=90, what="new lease")
    tcpdump.send_signal(signal.SIGINT)
    tcpdump.wait(timeout=10)
    from scapy.all import BOOTP, DHCP, IP, rdpcap

    requests = []
    for p in rdpcap(str(cap)):
        if DHCP in p and p[BOOTP].op == 1:
            opts = dict(o for o in p[DHCP].options if isinstance(o, tuple) and len(o) == 2)
            if opts.get("message-type") == 3:
                requests.append((p[IP].src, p[IP].dst, p[BOOTP].ciaddr, opts))
    renew = [r for r in requests if r[1] == "10.0.0.1"]
    assert renew, requests
    src, _, ciaddr, opts = renew[0]
    assert src == "10.0.0.50" and ciaddr == "10.0.0.50"
    assert "requested_addr" not in opts and "server_id" not in opts
    rebind = [r for r in requests if r[1] == "255.255.255.255" and r[2] == "10.0.0.50"]
    assert rebind, requests
    assert t_bound  # (kept for debugging timings)


def test_classless_routes_win(lab: Lab) -> None:
    srv, m = setup(lab)
    opts = [
        {"name": "routers", "data": "10.0.0.2"},
        # RFC 3442 bytes (kea 2.2 has no text form): 0/0 → 10.0.0.1, 192.168.100/24 → 10.0.0.254
        {"code": 121, "space": "dhcp4", "csv-format": False, "data": "000A00000118C0A8640A0000FE"},
    ]
    Kea(srv, valid=600, options=opts).start()
    m.start()
    wait_until(lambda: has_addr(m.node, "10.0.0.50"), timeout=30, what="lease")
    routes = wait_until(
        lambda: (r := m.node.ip_json("-4", "route", "show", "proto", "boot")) and len(r) >= 2 and r,
        timeout=10,
        what="routes",
    )
    got = sorted((r["dst"], r.get("gateway")) for r in routes)
    assert got == [("192.168.100.0/24", "10.0.0.254"), ("default", "10.0.0.1")]
    assert all(r["metric"] == 100 for r in routes)
    time.sleep(1)
    assert not [r for r in m.node.ip_json("-4", "route") if r.get("gateway") == "10.0.0.2"]


def test_restart_while_bound_init_reboot_no_flap(lab: Lab) -> None:
    srv, m = setup(lab)
    Kea(srv, valid=600).start()
    m.start()
    a = wait_until(lambda: has_addr(m.node, "10.0.0.50"), timeout=30, what="lease")
    wait_until(lambda: default_routes(m.node), timeout=10, what="default route")
    mon = Monitor(m.node)
    assert m.stop() == 0
    assert has_addr(m.node, "10.0.0.50")  # a stop keeps the kernel state
    m.start()
    wait_until(
        lambda: m.specs("operators").get("dhcp4/eth0", {}).get("state") == "bound",
        timeout=30,
        what="re-bound",
    )
    time.sleep(2)
    b = has_addr(m.node, "10.0.0.50")
    assert b is not None and a["local"] == b["local"]
    assert not mon.deleted("10.0.0.50")
    assert default_routes(m.node)
    log = "\n".join(p.read_text() for p in m.node.log_dir.glob("*machined*.log"))
    # one DORA before the restart, then INIT-REBOOT: a REQUEST, no new DISCOVER
    assert log.count("sent DISCOVER") == 1 and log.count("sent REQUEST") == 2, log


@pytest.mark.timeout(240)
def test_nak_goes_back_to_init(lab: Lab) -> None:
    """dnsmasq (lease 2 min, authoritative): reservation changed → the renewal at T1 gets a NAK,
    the client goes back to INIT and takes the new address."""
    srv, m = setup(lab)
    d = Dnsmasq(srv, host_ip="10.0.0.50")
    d.start()
    m.start()
    wait_until(lambda: has_addr(m.node, "10.0.0.50"), timeout=30, what="lease")
    d.stop()
    (d.dir / "leases").unlink(missing_ok=True)
    d2 = Dnsmasq(srv, host_ip="10.0.0.60")
    d2.start()
    wait_until(lambda: has_addr(m.node, "10.0.0.60"), timeout=120, what="new address after the NAK")
    wait_until(lambda: not has_addr(m.node, "10.0.0.50"), timeout=10, what="old address gone")
    wait_until(lambda: default_routes(m.node) and default_routes(m.node)[0]["prefsrc"] == "10.0.0.60",
               timeout=10, what="route src")  # fmt: skip


ROGUE = r"""
import socket, struct, sys
from scapy.all import BOOTP, DHCP, IP, UDP, Ether, Raw, sendp

iface = sys.argv[1]
COOKIE = b"\x63\x82\x53\x63"
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
s.bind((iface, 0x0800))
sent = 0
while True:
    data = s.recv(4096)
    if len(data) < 28 + 240 or data[9] != 17 or struct.unpack("!H", data[22:24])[0] != 67:
        continue
    bootp = BOOTP(data[28:])
    xid, mac = bootp.xid, bytes(bootp.chaddr[:6])
    l2 = Ether(dst="ff:ff:ff:ff:ff:ff") / IP(src="10.0.0.66", dst="255.255.255.255") / UDP(sport=67, dport=68)
    SID = [("server_id", "10.0.0.66"), "end"]
    def offer(**kw):
        base = dict(op=2, xid=xid, yiaddr="10.0.0.66", chaddr=mac + bytes(10))
        base.update(kw)
        return BOOTP(**base)
    frames = [
        # a well-formed OFFER with the wrong xid, and one for another MAC
        l2 / offer(xid=xid ^ 0xFFFF) / DHCP(options=[("message-type", "offer")] + SID),
        l2 / offer(chaddr=b"\x02\x99" * 3 + bytes(10)) / DHCP(options=[("message-type", "offer")] + SID),
        # right xid and MAC, but hostile bytes: option overflow, truncated, garbage, no cookie
        l2 / Raw(bytes(offer()) + COOKIE + bytes([53, 1, 2, 54, 200]) + b"\x0a\x00"),
        l2 / Raw(bytes(offer())[:100]),
        l2 / Raw(bytes(offer()) + b"\x00\x00\x00\x00" + bytes(range(256)) * 4),
        # huge options: hundreds of instances of a long option, overload pointing at junk
        l2 / offer() / DHCP(options=[("message-type", "offer")] + [(250, b"A" * 255)] * 4 + [(52, b"\x03")]),
        l2 / Raw(bytes(offer(file=bytes([12, 250]) + b"x" * 20)) + COOKIE + bytes([53, 1, 2, 52, 1, 1, 255])),
        # an OFFER of 0.0.0.0, and a NAK nobody asked for
        l2 / offer(yiaddr="0.0.0.0") / DHCP(options=[("message-type", "offer")] + SID),
        l2 / offer(yiaddr="0.0.0.0") / DHCP(options=[("message-type", "nak")] + SID),
    ]
    for f in frames:
        try:
            sendp(f, iface=iface, verbose=False)
        except OSError as e:
            print("rogue could not send:", e, flush=True)
    sent += len(frames)
    print("rogue answered", hex(xid), sent, flush=True)
"""


def test_rogue_server_beside_the_real_one(lab: Lab) -> None:
    """A scapy rogue answers every client message with garbage, huge options, wrong xids and
    wrong MACs (and a NAK of its own); the client still binds to kea's offer, and counts drops."""
    import sys

    srv, m = setup(lab)
    rogue = lab.node("rogue")
    lab.connect(rogue, lab.members["sw"])  # type: ignore[arg-type]
    script = lab.dir / "rogue.py"
    script.write_text(ROGUE)
    rlog = lab.dir / "rogue.log"
    rogue.popen([sys.executable, str(script), "eth0"], log=rlog)
    time.sleep(2)
    Kea(srv, valid=600).start()
    m.start()
    check_lease(m, "10.0.0.50", "node-a")
    assert "rogue answered" in rlog.read_text()
    log = "\n".join(p.read_text() for p in m.node.log_dir.glob("*machined*.log"))
    assert "dropped a packet" in log and "Traceback" not in log
    assert "restarting" not in m.specs("operators")["dhcp4/eth0"].get("state", "")


def test_reset_releases_the_lease(lab: Lab) -> None:
    """``netctl reset``: DHCPRELEASE unicast to the server id with ciaddr (only then), and the
    address leaves the kernel; a plain SIGTERM before sends none."""
    srv, m = setup(lab)
    Kea(srv, valid=600).start()
    cap = srv.dir / "release.pcap"
    tcpdump = srv.popen(["tcpdump", "-i", "eth0", "-n", "-U", "-w", str(cap), "udp port 67"])
    time.sleep(1)
    m.start()
    wait_until(lambda: has_addr(m.node, "10.0.0.50"), timeout=30, what="lease")
    assert m.stop() == 0
    m.start()
    wait_until(
        lambda: m.specs("operators").get("dhcp4/eth0", {}).get("state") == "bound", timeout=30, what="bound"
    )
    m.netctl("reset")
    assert m.proc is not None and m.proc.wait(timeout=30) == 0
    wait_until(lambda: not has_addr(m.node, "10.0.0.50"), timeout=10, what="address removed by reset")
    time.sleep(1)
    tcpdump.send_signal(signal.SIGINT)
    tcpdump.wait(timeout=10)
    from scapy.all import BOOTP, DHCP, IP, rdpcap

    releases = []
    for p in rdpcap(str(cap)):
        if DHCP in p:
            opts = dict(x for x in p[DHCP].options if isinstance(x, tuple) and len(x) == 2)
            if opts.get("message-type") == 7:
                releases.append((p[IP].src, p[IP].dst, p[BOOTP].ciaddr, opts.get("server_id")))
    assert releases == [("10.0.0.50", "10.0.0.1", "10.0.0.50", "10.0.0.1")]
