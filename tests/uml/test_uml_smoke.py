"""Inside UML (dummy, 8021q and bonding are modules there): the link kinds the host lacks."""

from __future__ import annotations

from typing import Any

from harness import Lab, wait_until


def test_dummy_vlan_and_bond(lab: Lab) -> None:
    n = lab.node("n")
    lab.stub(n, "eth0")  # VLAN parent
    lab.stub(n, "eth1", up=False)  # bond slaves must be down to be enslaved; each has its own
    lab.stub(n, "eth2", up=False)  # stub peer, so the bond does not loop back onto one segment
    n.sh(
        """
        ip link add dummy0 type dummy
        ip addr add 192.0.2.10/24 dev dummy0
        ip link set dummy0 up
        ip link add link eth0 name eth0.100 type vlan id 100
        ip link set eth0.100 up
        ip link add bond0 type bond mode active-backup miimon 100
        ip link set eth1 master bond0
        ip link set eth2 master bond0
        ip link set bond0 up
        """
    )
    links: dict[str, dict[str, Any]] = {link["ifname"]: link for link in n.ip_json("-d", "link")}
    assert set(links) == {"lo", "eth0", "eth1", "eth2", "dummy0", "eth0.100", "bond0"}

    assert links["dummy0"]["linkinfo"]["info_kind"] == "dummy"
    addrs = n.ip_json("addr", "show", "dev", "dummy0")[0]["addr_info"]
    assert [(a["local"], a["prefixlen"]) for a in addrs if a["family"] == "inet"] == [("192.0.2.10", 24)]

    vlan = links["eth0.100"]
    assert vlan["linkinfo"]["info_kind"] == "vlan"
    assert vlan["linkinfo"]["info_data"]["id"] == 100
    assert vlan["linkinfo"]["info_data"]["protocol"] == "802.1Q"
    assert vlan["link"] == "eth0"
    assert links["eth0"]["linkinfo"]["info_kind"] == "veth"

    bond = links["bond0"]
    assert bond["linkinfo"]["info_kind"] == "bond"
    assert bond["linkinfo"]["info_data"]["mode"] == "active-backup"
    for slave in ("eth1", "eth2"):
        assert links[slave]["master"] == "bond0"
        assert links[slave]["linkinfo"]["info_kind"] == "veth"
        assert links[slave]["linkinfo"]["info_slave_kind"] == "bond"
    active = wait_until(
        lambda: n.link("bond0")["linkinfo"]["info_data"].get("active_slave"), what="an active bond slave"
    )
    assert active in ("eth1", "eth2")
