"""DHCPv6 operator against real servers (kea-dhcp6, dnsmasq) in namespaces (operators.md §0, §3, §7 T13/T14).

The node runs the operator under a small stand-alone host (``test_dhcp6_host.py``: addresses
applied with ``ip``, everything published written to a JSON file), the server runs in a second
namespace on the other end of a veth, and tcpdump on the server side records the exchange; the
capture is decoded with scapy, an independent codec. kea serves short lifetimes (valid 20 s,
T1 5 s, T2 10 s) so a renewal happens within a test; dnsmasq cannot lease under 120 s.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from harness import Lab, Node, wait_until

pytestmark = pytest.mark.netns

HOST = str(Path(__file__).with_name("test_dhcp6_host.py"))
MAC = "02:00:00:00:06:01"
SUBNET = "fd00:db8:6::"
DNS = "fd00:db8:6::53"
NTP = "fd00:db8:6::123"
VALID, PREFERRED, T1, T2 = 20, 15, 5, 10

needs = pytest.mark.skipif(
    not (shutil.which("kea-dhcp6") and shutil.which("dnsmasq") and shutil.which("tcpdump")),
    reason="needs kea-dhcp6, dnsmasq and tcpdump (apt-get install kea-dhcp6-server dnsmasq tcpdump)",
)


def kea_config(d: Path, *, rapid_commit: bool = True) -> dict[str, Any]:
    return {
        "Dhcp6": {
            "data-directory": str(d),
            "interfaces-config": {"interfaces": ["eth0"]},
            "lease-database": {"type": "memfile", "persist": True, "name": str(d / "kea-leases6.csv")},
            "valid-lifetime": VALID,
            "preferred-lifetime": PREFERRED,
            "renew-timer": T1,
            "rebind-timer": T2,
            "subnet6": [
                {
                    "id": 1,
                    "subnet": f"{SUBNET}/64",
                    "interface": "eth0",
                    "rapid-commit": rapid_commit,
                    "pools": [{"pool": f"{SUBNET}100-{SUBNET}1ff"}],
                    "option-data": [
                        {"name": "dns-servers", "data": DNS},
                        {"name": "sntp-servers", "data": NTP},
                    ],
                }
            ],
            "loggers": [
                {
                    "name": "kea-dhcp6",
                    "output_options": [{"output": "stdout"}],
                    "severity": "DEBUG",
                    "debuglevel": 50,
                }
            ],
        }
    }


class Lab6:
    """A node and a server namespace joined by one veth, plus the capture on the server side."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.node = lab.node("n6")
        self.srv = lab.node("s6")
        lab.link(self.node, self.srv, "eth0", "eth0", a_mac=MAC)
        self.srv.ip("addr", "add", f"{SUBNET}1/64", "dev", "eth0", "nodad")
        self.dir = self.srv.dir
        self.pcap = self.dir / "dhcp6.pcap"
        self.out = self.node.dir / "dhcp6.json"
        self.host: subprocess.Popen[str] | None = None
        self.server: subprocess.Popen[str] | None = None
        self.tcpdump = self.srv.popen(
            [
                "tcpdump",
                "-i",
                "eth0",
                "--immediate-mode",
                "-U",
                "-n",
                "-w",
                str(self.pcap),
                "udp port 546 or udp port 547",
            ]
        )
        wait_until(lambda: self.pcap.exists(), timeout=10, what="tcpdump started")
        wait_link_local(self.node)
        wait_link_local(self.srv)

    def kea(self, **kw: Any) -> None:
        conf = self.dir / "kea-dhcp6.json"
        conf.write_text(json.dumps(kea_config(self.dir, **kw)))
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "KEA_LOCKFILE_DIR": str(self.dir),
               "KEA_PIDFILE_DIR": str(self.dir)}  # fmt: skip
        self.server = self.srv.popen(["kea-dhcp6", "-c", str(conf)], env=env)

    def dnsmasq(self) -> None:
        self.server = self.srv.popen([
            "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--interface=eth0",
            "--bind-interfaces", f"--dhcp-range={SUBNET}100,{SUBNET}1ff,64,2m",
            f"--dhcp-option=option6:dns-server,[{DNS}]", f"--dhcp-option=option6:sntp-server,[{NTP}]",
            f"--dhcp-leasefile={self.dir / 'dnsmasq.leases'}", f"--pid-file={self.dir / 'dnsmasq.pid'}",
            "--log-dhcp",
        ])  # fmt: skip

    def stop_server(self) -> None:
        assert self.server is not None
        self.server.send_signal(signal.SIGTERM)
        self.server.wait(timeout=10)

    def start_host(self, *extra: str) -> None:
        state = self.node.dir / "state-dhcp6"
        argv = [sys.executable, HOST, "--link", "eth0", "--state-dir", str(state), "--out", str(self.out)]
        self.host = self.node.popen([*argv, *extra])

    def stop_host(self) -> None:
        assert self.host is not None
        self.host.send_signal(signal.SIGTERM)
        assert self.host.wait(timeout=10) == 0

    def published(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.out.read_text()))
        except (OSError, ValueError):
            return {}

    def kernel_addresses(self) -> list[dict[str, Any]]:
        return [
            a for i in self.node.ip_json("-6", "addr", "show", "dev", "eth0")
            for a in i.get("addr_info", []) if a.get("scope") == "global"
        ]  # fmt: skip

    def wait_bound(self, timeout: float = 30) -> dict[str, Any]:
        def bound() -> bool:
            st = self.published().get("status") or {}
            return st.get("state") == "bound" and bool(self.kernel_addresses())

        try:
            wait_until(bound, timeout=timeout, what="dhcp6 bound with its address in the kernel")
        except TimeoutError:
            raise AssertionError(f"not bound: {self.published()}\n{self.logs()}") from None
        return self.published()

    def logs(self) -> str:
        """The tails of the node's and the server's logs (for failure messages)."""
        out = []
        for ns in (self.node, self.srv):
            for f in sorted((ns.dir / "logs").glob("*.log")):
                out.append(f"--- {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-40:]))
        return "\n".join(out)

    def messages(self) -> list[tuple[float, Any]]:
        """(time, scapy DHCP6 message) of everything captured so far."""
        from scapy.layers.dhcp6 import DHCP6
        from scapy.layers.inet import UDP
        from scapy.layers.l2 import Ether  # noqa: F401 - registers the pcap link type
        from scapy.utils import rdpcap

        time.sleep(0.2)  # tcpdump --immediate-mode -U writes each packet at once; give it the moment
        out = []
        for pkt in rdpcap(str(self.pcap)):
            msg = pkt[UDP].payload if UDP in pkt else None
            if isinstance(msg, DHCP6):
                out.append((float(pkt.time), msg))
        return out


def wait_link_local(ns: Node) -> None:
    def ready() -> bool:
        addrs = [a for i in ns.ip_json("-6", "addr", "show", "dev", "eth0") for a in i.get("addr_info", [])]
        return any(a.get("scope") == "link" and not a.get("tentative") for a in addrs)

    wait_until(ready, timeout=15, what=f"{ns.name}: link-local address")


@pytest.fixture
def lab6(lab: Lab) -> Lab6:
    return Lab6(lab)


def _type(msg: Any) -> int:
    return int(msg.msgtype)


def _opt(msg: Any, cls: Any) -> Any:
    return msg.getlayer(cls)


@needs
def test_kea_lease_renew_at_t1(lab6: Lab6) -> None:
    """kea: /128 with the lease's lifetimes, DNS and SNTP mapped; RENEW to kea's Server ID at T1,
    REPLY refreshes the lifetimes; no new SOLICIT while bound."""
    from scapy.layers.dhcp6 import DHCP6OptClientId, DHCP6OptServerId

    lab6.kea()
    lab6.start_host()
    pub = lab6.wait_bound()
    ((addr_id, spec),) = pub["addresses"].items()
    assert addr_id.startswith(f"eth0/{SUBNET}1") and addr_id.endswith("/128")
    assert spec["layer"] == "operator" and spec["family"] == "inet6"
    assert spec["validUntil"] and spec["preferredUntil"]
    (k,) = lab6.kernel_addresses()
    assert (
        k["prefixlen"] == 128 and 0 < k["valid_life_time"] <= VALID and k["preferred_life_time"] <= PREFERRED
    )
    assert pub["resolvers"]["resolvers"]["dnsServers"] == [DNS]
    assert pub["timeservers"]["timeservers"]["timeServers"] == [NTP]
    st = pub["status"]
    assert (
        st["leaseTime"] == VALID
        and st["address"] == f"{k['local']}/128"
        and st["server"].startswith("fe80::")
    )
    # the first exchange: SOLICIT with Rapid Commit answered by a REPLY (kea's rapid-commit)
    msgs = wait_until(lambda: (m := lab6.messages()) and len(m) >= 2 and m, timeout=5, what="2 captured")
    assert [_type(m) for _, m in msgs[:2]] == [1, 7]
    server_id = bytes(_opt(msgs[1][1], DHCP6OptServerId).duid)
    bound_at = msgs[1][0]

    def renewed() -> bool:
        return any(_type(m) == 5 for _, m in lab6.messages())

    wait_until(renewed, timeout=3 * (T1 + 2), what="a RENEW")
    msgs = lab6.messages()
    renew_at, renew = next((t, m) for t, m in msgs if _type(m) == 5)
    assert T1 - 0.5 <= renew_at - bound_at <= T1 + 2, renew_at - bound_at
    assert bytes(_opt(renew, DHCP6OptServerId).duid) == server_id  # to the server that bound us
    assert bytes(_opt(renew, DHCP6OptClientId).duid) == bytes(_opt(msgs[0][1], DHCP6OptClientId).duid)
    wait_until(lambda: any(_type(m) == 7 and t > renew_at for t, m in lab6.messages()), timeout=10,
               what="the REPLY to the RENEW")  # fmt: skip
    assert not [m for t, m in lab6.messages() if _type(m) == 1 and t > bound_at]  # no new SOLICIT
    wait_until(lambda: lab6.published()["status"]["state"] == "bound", timeout=10, what="bound again")
    assert [a["local"] for a in lab6.kernel_addresses()] == [k["local"]]
    assert not lab6.published()["dropped"]


@needs
def test_kea_gone_rebind_then_lease_end(lab6: Lab6) -> None:
    """kea stopped while bound: RENEW at T1, REBIND (no Server ID, multicast) at T2, and at the end
    of the valid lifetime the address leaves the kernel; kea back → a new lease."""
    from scapy.layers.dhcp6 import DHCP6OptServerId

    lab6.kea()
    lab6.start_host()
    lab6.wait_bound()
    bound_at = time.monotonic()
    lab6.stop_server()
    wait_until(lambda: lab6.published()["status"]["state"] == "rebinding", timeout=T2 + 5, what="rebinding")
    msgs = lab6.messages()
    rebinds = [m for _, m in msgs if _type(m) == 6]
    assert rebinds and all(_opt(m, DHCP6OptServerId) is None for m in rebinds)
    assert any(_type(m) == 5 for _, m in msgs)
    wait_until(lambda: not lab6.kernel_addresses(), timeout=VALID + 10, what="address gone at lease end")
    assert time.monotonic() - bound_at >= VALID - 3
    wait_until(lambda: not lab6.published()["addresses"], timeout=3, what="the AddressSpec withdrawn")
    assert lab6.published()["status"]["state"] == "soliciting"
    lab6.kea()
    lab6.wait_bound(timeout=30)


@needs
def test_dnsmasq_lease_and_stable_duid(lab6: Lab6) -> None:
    """dnsmasq (DHCPv6, lease 2 min): /128 with lifetimes and DNS; the DUID is a DUID-LL of the MAC
    kept in the state dir, the same after a restart, which gets the same address without
    removing it (REBIND of the saved lease)."""
    from scapy.layers.dhcp6 import DHCP6OptClientId

    lab6.dnsmasq()
    lab6.start_host()
    pub = lab6.wait_bound()
    (k,) = lab6.kernel_addresses()
    assert k["prefixlen"] == 128 and 0 < k["valid_life_time"] <= 120
    assert pub["resolvers"]["resolvers"]["dnsServers"] == [DNS]
    duid = bytes.fromhex((lab6.node.dir / "state-dhcp6" / "duid").read_text().strip())
    assert duid == bytes.fromhex("00030001" + MAC.replace(":", ""))
    lab6.stop_host()
    assert [a["local"] for a in lab6.kernel_addresses()] == [k["local"]]  # no release on a stop
    n = len(lab6.messages())
    lab6.start_host()
    wait_until(
        lambda: any(_type(m) == 7 for _, m in lab6.messages()[n:]), timeout=30, what="REPLY after restart"
    )
    lab6.wait_bound()
    assert [a["local"] for a in lab6.kernel_addresses()] == [k["local"]]
    after = lab6.messages()[n:]
    assert _type(after[0][1]) == 6  # the saved lease is confirmed with a REBIND
    ids = {bytes(_opt(m, DHCP6OptClientId).duid) for _, m in lab6.messages() if _type(m) in (1, 3, 5, 6)}
    assert ids == {duid}
    assert lab6.published()["addresses"] and f"{k['local']}" in (lab6.dir / "dnsmasq.leases").read_text()


MACHINE_CONFIG = (
    "version: v1alpha1\nmachine:\n  network:\n    interfaces:\n"
    "      - interface: eth0\n        dhcp: true\n"
    "        dhcpOptions:\n          ipv4: false\n          ipv6: true\n"
)


@needs
def test_machined_dhcp6(lab6: Lab6) -> None:
    """Through machined (runner, spec controllers, etc files): the /128 with the lease's lifetimes,
    the DNS server in resolv.conf, `get operators`, a RENEW at T1; a restart keeps the address and
    gets the same one again (stable DUID)."""
    from harness.daemons import Machined

    lab6.kea()
    md = Machined(lab6.node, MACHINE_CONFIG, {})
    md.start()
    k = wait_until(lambda: lab6.kernel_addresses(), timeout=30, what="DHCPv6 address in the kernel")
    (a,) = k
    assert a["prefixlen"] == 128 and 0 < a["valid_life_time"] <= VALID
    specs = md.specs("addressspecs", "-n", "network-config")
    assert f"dhcp6/eth0/eth0/{a['local']}/128" in specs
    resolv = lab6.node.etc_dir / "resolv.conf"
    wait_until(lambda: f"nameserver {DNS}" in resolv.read_text(), timeout=10, what="resolv.conf")
    ops = wait_until(lambda: md.specs("operators").get("dhcp6/eth0"), timeout=10, what="OperatorStatus")
    assert ops["address"] == f"{a['local']}/128" and ops["leaseTime"] == VALID
    wait_until(lambda: any(_type(m) == 5 for _, m in lab6.messages()), timeout=3 * (T1 + 2), what="a RENEW")
    assert md.stop() == 0
    assert [x["local"] for x in lab6.kernel_addresses()] == [a["local"]]  # kept over the restart
    md.start()
    wait_until(lambda: (md.specs("operators").get("dhcp6/eth0") or {}).get("state") == "bound", timeout=30,
               what="bound after the restart")  # fmt: skip
    assert [x["local"] for x in lab6.kernel_addresses()] == [a["local"]]
