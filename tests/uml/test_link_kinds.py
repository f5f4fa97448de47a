"""Bond, VLAN and dummy links from LinkSpecs, on the UML kernel (the host has none of them).

One node, one controller process (``link_kinds_runner.py``: Python is ~10x slower
under UML) through four phases:

1. apply: an 802.3ad bond and an active-backup bond with options, two veth slaves
   each (every slave has its own stub peer: no loop), an 802.1Q and an 802.1ad VLAN on
   a veth, a VLAN on the 802.3ad bond (the bond is its IFLA_LINK parent, not its
   master), a dummy with an address (AddressSpecController), a bond made by hand that
   matches its spec (adopted: nothing written);
2. change: new bond options (down, slaves detached, updated, re-attached), a VLAN's id
   and another's protocol changed (each deleted and created again);
3. restart: fresh controllers on the same state write nothing (their log of writes is
   empty, ``ip monitor`` sees no event);
4. remove the active-backup bond: gone, its slaves stay.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from harness import Lab

RUNNER = str(Path(__file__).with_name("link_kinds_runner.py"))
ETHER = "ether"


def slave(name: str, bond: str, index: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "up": True, "type": ETHER}
    if bond:
        spec |= {"masterName": bond, "slaveIndex": index}
    return spec


def logical(name: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "logical": True, "up": True, "kind": kind, "type": ETHER, **extra}


def vlan(name: str, parent: str, vid: int, protocol: str = "802.1q") -> dict[str, Any]:
    return logical(name, "vlan", parentName=parent, vlan={"vlanID": vid, "vlanProtocol": protocol})


LACP = {
    "mode": "802.3ad",
    "xmitHashPolicy": "layer3+4",
    "lacpRate": "fast",
    "miimon": 100,
    "updelay": 200,
    "downdelay": 200,
    "useCarrier": True,
}
AB = {
    "mode": "active-backup",
    "primary": "@eth3",
    "miimon": 100,
    "updelay": 300,
    "downdelay": 100,
    "xmitHashPolicy": "layer2+3",
    "useCarrier": True,
}
# bond2 is made by hand with these options before the controller starts: adopted, no write
ADOPTED = {
    "mode": "balance-rr",
    "miimon": 100,
    "updelay": 200,
    "xmitHashPolicy": "layer3+4",
    "useCarrier": True,
}
DUMMY_ADDR = {
    "address": "192.0.2.10/24",
    "linkName": "dummy0",
    "family": "inet4",
    "scope": "global",
    "flags": "permanent",
    "layer": "configuration",
}


def phase_specs(lacp: dict[str, Any], ab: dict[str, Any] | None, vid: int, qinq: str) -> dict[str, Any]:
    links = [
        slave("eth0", "", 0),
        logical("bond0", "bond", bondMaster=lacp),
        slave("eth1", "bond0", 0),
        slave("eth2", "bond0", 1),
        slave("eth3", "bond1" if ab else "", 0),
        slave("eth4", "bond1" if ab else "", 1),
        vlan("vlan0", "eth0", vid),
        vlan("eth0.200", "eth0", 200, qinq),
        vlan("bond0.10", "bond0", 10),
        logical("dummy0", "dummy"),
        logical("bond2", "bond", bondMaster=ADOPTED),
    ]
    if ab:
        links.append(logical("bond1", "bond", bondMaster=ab))
    return {"links": links, "addresses": [DUMMY_ADDR]}


def info(report: dict[str, Any], name: str) -> dict[str, Any]:
    data: dict[str, Any] = report["links"][name]["linkinfo"]["info_data"]
    return data


def check_slaves(report: dict[str, Any], bond: str, slaves: tuple[str, ...]) -> None:
    links = report["links"]
    for s in slaves:
        assert links[s].get("master") == bond, (s, links[s])
        assert links[s]["linkinfo"]["info_slave_kind"] == "bond"
    assert "UP" in links[bond]["flags"]


def check_vlan(report: dict[str, Any], name: str, parent: str, vid: int, protocol: str) -> None:
    lk = report["links"][name]
    assert lk["linkinfo"]["info_kind"] == "vlan"
    assert lk["link"] == parent
    assert "master" not in lk
    assert info(report, name)["id"] == vid
    assert info(report, name)["protocol"] == protocol


def test_bond_vlan_dummy(lab: Lab) -> None:
    n = lab.node("n")
    lab.stub(n, "eth0")
    for s in ("eth1", "eth2", "eth3", "eth4"):
        lab.stub(n, s, up=False)
    eth3 = n.link("eth3")["ifindex"]
    n.sh("ip link add bond2 type bond mode balance-rr miimon 100 updelay 200 xmit_hash_policy layer3+4")
    n.sh("ip link set bond2 up")

    changed_lacp = {
        **LACP,
        "xmitHashPolicy": "layer2",
        "lacpRate": "slow",
        "miimon": 200,
        "updelay": 400,
        "minLinks": 1,
    }
    changed_ab = {**AB, "primary": "@eth4", "miimon": 50, "updelay": 125, "peerNotifyDelay": 100}
    phases = [
        phase_specs(LACP, AB, 100, "802.1ad"),
        phase_specs(changed_lacp, changed_ab, 101, "802.1q"),
        {**phase_specs(changed_lacp, changed_ab, 101, "802.1q"), "restart": True, "monitor": True, "wait": 3},
        phase_specs(changed_lacp, None, 101, "802.1q"),
    ]
    path = n.dir / "phases.json"
    path.write_text(json.dumps(phases))
    out = n.run([sys.executable, RUNNER, str(n.state_dir), str(path)], timeout=300)
    reports = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 4, out.stderr
    applied, changed, restarted, removed = reports
    for i, r in enumerate(reports, 1):  # shown on failure
        print(f"phase {i} ({r['seconds']} s):", *r["log"], *r["events"], sep="\n  ")

    # 1. applied
    assert applied["failing"] == [], applied["log"]
    b0 = info(applied, "bond0")
    assert (b0["mode"], b0["xmit_hash_policy"], b0["ad_lacp_rate"]) == ("802.3ad", "layer3+4", "fast")
    assert (b0["miimon"], b0["updelay"], b0["downdelay"], b0["use_carrier"]) == (100, 200, 200, 1)
    assert b0["ad_actor_sys_prio"] == 65535
    check_slaves(applied, "bond0", ("eth1", "eth2"))
    b1 = info(applied, "bond1")
    assert (b1["mode"], b1["primary"], b1["xmit_hash_policy"]) == ("active-backup", "eth3", "layer2+3")
    assert (b1["miimon"], b1["updelay"], b1["downdelay"]) == (100, 300, 100)
    check_slaves(applied, "bond1", ("eth3", "eth4"))
    # LinkStatus decodes the bond back
    st = applied["bonds"]["bond1"]
    assert (st["mode"], st["primary"], st["miimon"], st["updelay"]) == ("active-backup", eth3, 100, 300)
    assert applied["bonds"]["bond0"]["lacpRate"] == "fast"
    check_vlan(applied, "vlan0", "eth0", 100, "802.1Q")
    check_vlan(applied, "eth0.200", "eth0", 200, "802.1ad")
    check_vlan(applied, "bond0.10", "bond0", 10, "802.1Q")
    assert applied["links"]["dummy0"]["linkinfo"]["info_kind"] == "dummy"
    assert not [line for line in applied["log"] if "bond2" in line]  # adopted as it is
    addrs = n.ip_json("addr", "show", "dev", "dummy0")[0]["addr_info"]
    assert ("192.0.2.10", 24) in [(a["local"], a["prefixlen"]) for a in addrs]

    # 2. changed options converge, slaves back in their bonds; a new VLAN id is a new VLAN
    assert changed["failing"] == [], changed["log"]
    b0 = info(changed, "bond0")
    assert (b0["xmit_hash_policy"], b0["ad_lacp_rate"], b0["miimon"], b0["updelay"]) == (
        "layer2",
        "slow",
        200,
        400,
    )
    assert b0["min_links"] == 1
    check_slaves(changed, "bond0", ("eth1", "eth2"))
    b1 = info(changed, "bond1")
    assert (b1["primary"], b1["miimon"], b1["updelay"], b1["peer_notify_delay"]) == ("eth4", 50, 100, 100)
    check_slaves(changed, "bond1", ("eth3", "eth4"))
    check_vlan(changed, "vlan0", "eth0", 101, "802.1Q")  # id changed: a new link
    check_vlan(changed, "eth0.200", "eth0", 200, "802.1Q")  # protocol changed: a new link
    for name in ("vlan0", "eth0.200"):
        assert changed["links"][name]["ifindex"] != applied["links"][name]["ifindex"]
        assert f"deleted link {name} (vlan)" in " ".join(changed["log"])
    assert changed["bonds"]["bond1"]["peerNotifyDelay"] == 100  # LinkStatus, IFLA_BOND_PEER_NOTIF_DELAY
    check_vlan(changed, "bond0.10", "bond0", 10, "802.1Q")  # survived the bond's update
    assert any("updated link bond0" in line for line in changed["log"]), changed["log"]

    # 3. a restart on the same state writes nothing
    assert restarted["failing"] == []
    assert restarted["log"] == [], restarted["log"]
    assert restarted["events"] == [], restarted["events"]
    assert restarted["links"].keys() == changed["links"].keys()

    # 4. bond1 removed: gone, its slaves stay (released)
    assert removed["failing"] == [], removed["log"]
    assert "bond1" not in removed["links"]
    for s in ("eth3", "eth4"):
        assert s in removed["links"] and "master" not in removed["links"][s]
    check_slaves(removed, "bond0", ("eth1", "eth2"))
    assert set(removed["links"]) >= {"bond0", "bond0.10", "vlan0", "eth0.200", "dummy0"}
