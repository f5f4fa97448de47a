"""`netctl plan` end to end in a node: every kernel command line vector, and all three formats."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from harness import Lab, Node

NETCTL = str(Path(sys.executable).with_name("netctl"))
DATA = Path(__file__).resolve().parents[1] / "data"
VECTORS: list[dict[str, Any]] = json.loads((DATA / "cmdline-vectors.json").read_text())

# bondMaster keys whose zero value the spec omits (netd.md §2.4), for comparing with the vectors
BOND_ZERO: dict[str, Any] = {
    "primary": 0,
    "adSelect": "stable",
    "miimon": 0,
    "updelay": 0,
    "downdelay": 0,
    "arpInterval": 0,
    "resendIgmp": 0,
    "minLinks": 0,
    "lpInterval": 0,
    "packetsPerSlave": 0,
    "numPeerNotif": 0,
    "tlbLogicalLb": 0,
    "allSlavesActive": 0,
    "useCarrier": False,
    "adActorSysPrio": 0,
    "adUserPortKey": 0,
    "peerNotifyDelay": 0,
}
FAIL_OVER_MAC = {0: "none", 1: "active", 2: "follow"}


def plan(node: Node, *args: str, check: bool = True) -> tuple[str, str, int]:
    r = node.run([NETCTL, "plan", *args], check=check, timeout=120)
    return r.stdout, r.stderr, r.returncode


def make_links(lab: Lab, node: Node, vec: dict[str, Any]) -> None:
    names = {i["name"] for i in vec.get("interfaces", [])}
    for i in vec.get("interfaces", []):
        if not i.get("loopback"):
            lab.stub(node, i["name"], mac=i.get("mac"))
    # links the vector ignores exist too, so "not brought up, no default DHCP" is observable
    for name in vec["expect"].get("ignored_links", []) + vec.get("partial", {}).get("ignored_links", []):
        if name not in names:
            names.add(name)
            lab.stub(node, name)


def as_vector(resources: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "hostname": None,
        "addresses": [],
        "routes": [],
        "resolvers": [],
        "time_servers": [],
        "dhcp_links": [],
        "links": [],
    }
    for r in resources:
        md, spec = r["metadata"], r["spec"]
        if not md["id"].startswith("cmdline/"):
            continue
        kind = md["type"].split(".")[0]
        if kind == "AddressSpecs":
            out["addresses"].append(
                {"address": spec["address"], "link": spec["linkName"], "family": spec["family"]}
            )
        elif kind == "RouteSpecs":
            route = {
                "link": spec["outLinkName"],
                "metric": spec["priority"],
                "family": spec["family"],
                "scope": spec["scope"],
            }
            route |= {
                k: spec[s] for k, s in (("dst", "dst"), ("gateway", "gateway"), ("src", "src")) if spec[s]
            }
            assert (spec["table"], spec["type"], spec["protocol"]) == ("main", "unicast", "boot")
            out["routes"].append(route)
        elif kind == "ResolverSpecs":
            out["resolvers"] = spec["dnsServers"]
        elif kind == "TimeServerSpecs":
            out["time_servers"] = spec["timeServers"]
        elif kind == "HostnameSpecs":
            out["hostname"] = ".".join(p for p in (spec["hostname"], spec["domainname"]) if p)
        elif kind == "OperatorSpecs":
            assert spec["requireUp"] is True and spec["dhcp4"]["routeMetric"] == 1024
            out["dhcp_links"].append(spec["linkName"])
        elif kind == "LinkSpecs":
            link: dict[str, Any] = {"name": spec["name"], "up": spec["up"]}
            for key, src in (
                ("logical", "logical"),
                ("mtu", "mtu"),
                ("kind", "kind"),
                ("parent", "parentName"),
            ):
                if spec.get(src):
                    link[key] = spec[src]
            if spec["type"] != "netrom":  # the zero value: not set
                link["type"] = spec["type"]
            if "vlan" in spec:
                link["vlan"] = {"id": spec["vlan"]["vlanID"], "protocol": spec["vlan"]["vlanProtocol"]}
            if "bondMaster" in spec:
                bond = BOND_ZERO | spec["bondMaster"]
                bond["failOverMac"] = FAIL_OVER_MAC[bond["failOverMac"]]
                link["bond"] = bond
            if "masterName" in spec:
                link["bond_slave"] = {"master": spec["masterName"], "index": spec.get("slaveIndex", 0)}
            out["links"].append(link)
    return out


def canon(v: dict[str, Any]) -> dict[str, Any]:
    key = lambda x: json.dumps(x, sort_keys=True)  # noqa: E731
    return {
        k: sorted(v[k], key=key) if k in ("addresses", "routes", "links", "dhcp_links") else v[k] for k in v
    }


def default_ids(resources: list[dict[str, Any]]) -> set[str]:
    return {r["metadata"]["id"] for r in resources if r["metadata"]["id"].startswith("default/")}


@pytest.mark.parametrize("vec", VECTORS, ids=[v["name"] for v in VECTORS])
def test_cmdline_vector(lab: Lab, vec: dict[str, Any]) -> None:
    node = lab.node("plan")
    make_links(lab, node, vec)
    out, err, rc = plan(node, "--cmdline", vec["cmdline"], "-n", "network-config", "-o", "json")
    assert rc == 0, err
    resources = [json.loads(line) for line in out.splitlines()]
    assert all(r["node"] == "" and r["metadata"]["namespace"] == "network-config" for r in resources)
    got = as_vector(resources)
    exp = vec["expect"]
    if "error" in exp:
        assert exp["error"] in err
        partial = vec.get("partial", {})
        assert sorted(got.pop("dhcp_links")) == sorted(partial.get("dhcp_links", []))
        assert all(not v for v in got.values()), got  # nothing else from the command line
        ignored = partial.get("ignored_links", [])
    else:
        assert "cmdline" not in err
        ignored = exp["ignored_links"]
        exp = {k: v for k, v in exp.items() if k != "ignored_links"}
        assert canon(got) == canon(exp)
    for name in ignored:  # an ignored link is not brought up and gets no default DHCP
        assert f"default/{name}" not in default_ids(resources)
        assert f"default/dhcp4/{name}" not in default_ids(resources)


def test_plan_config_cmdline_platform_all_formats(lab: Lab, tmp_path: Path) -> None:
    node = lab.node("p")
    lab.stub(node, "eth0", mac="52:54:00:00:00:10")
    lab.stub(node, "eth1", mac="52:54:00:00:00:11")
    cfg = node.dir / "config.yaml"
    cfg.write_text(
        "version: v1alpha1\nmachine:\n  type: worker\n  network:\n    hostname: cfg.example.org\n"
        "    interfaces:\n      - interface: eth1\n        addresses: [10.1.0.5/24]\n"
        "        routes:\n          - network: 10.2.0.0/16\n"
        "            gateway: 10.1.0.1\n            metric: 50\n"
    )
    platform = node.dir / "platform.yaml"
    platform.write_text(
        "resolvers:\n  - dnsServers: [9.9.9.9]\nlinks:\n  - {name: eth0, up: true, mtu: 1400}\n"
    )
    args = [
        "--config",
        str(cfg),
        "--cmdline",
        "ip=172.20.0.2::172.20.0.1:255.255.255.0::eth0:::::",
        "--platform-config",
        str(platform),
    ]
    out, _, _ = plan(node, *args, "-o", "json")
    docs = [json.loads(line) for line in out.splitlines()]
    ids = [(d["metadata"]["type"], d["metadata"]["id"]) for d in docs]
    assert ids == sorted(ids)  # sorted by type, then id
    by = {(t.split(".")[0], i): d for (t, i), d in zip(ids, docs, strict=True)}
    assert by[("AddressSpecs", "eth1/10.1.0.5/24")]["spec"]["layer"] == "configuration"
    assert by[("AddressSpecs", "eth0/172.20.0.2/24")]["spec"]["layer"] == "cmdline"
    assert by[("RouteSpecs", "inet4/10.1.0.1/10.2.0.0/16/50")]["spec"]["outLinkName"] == "eth1"
    assert by[("LinkSpecs", "eth0")]["spec"]["mtu"] == 1400
    assert by[("ResolverSpecs", "resolvers")]["spec"]["dnsServers"] == ["9.9.9.9"]
    assert by[("HostnameSpecs", "hostname")]["spec"]["hostname"] == "cfg"
    assert ("OperatorSpecs", "dhcp4/eth0") not in by and ("OperatorSpecs", "dhcp4/eth1") not in by
    assert all(set(d) == {"node", "metadata", "spec"} and d["metadata"]["finalizers"] == [] for d in docs)

    yaml_out, _, _ = plan(node, *args, "-o", "yaml")
    blocks = yaml_out.split("---\n")
    assert len(blocks) == len(docs)
    assert blocks[0].startswith("node: ")
    assert "\nmetadata:\n    namespace: network\n    type: " in blocks[0]
    assert "    finalizers: []\n" in blocks[0]

    table, _, _ = plan(node, *args)
    first = table.splitlines()[0].split()
    assert first == ["NODE", "NAMESPACE", "TYPE", "ID", "VERSION"]
    assert "   network     LinkSpec   eth0" in table  # node column empty, 3-space padding
    # network-config keeps one spec per layer
    layered, _, _ = plan(node, *args, "-n", "network-config", "-o", "json")
    lids = {json.loads(line)["metadata"]["id"] for line in layered.splitlines()}
    assert {"cmdline/eth0", "platform/eth0", "default/lo", "configuration/eth1"} <= lids


def test_plan_invalid_config_exits_1_with_every_error(lab: Lab) -> None:
    node = lab.node("bad")
    cfg = node.dir / "bad.yaml"
    cfg.write_text(
        "version: v1alpha1\nmachine:\n  network:\n    hostnme: x\n    nameservers: [1.1.1.1]\n"
        "    interfaces:\n      - interface: eth0\n        mtu: 99999999999\n"
    )
    out, err, rc = plan(node, "--config", str(cfg), check=False)
    assert rc == 1 and out == ""
    lines = [line for line in err.splitlines() if not line.startswith("warning:")]
    assert len(lines) >= 2
    assert any(line.startswith("v1alpha1: machine.network.hostnme:") for line in lines)
    assert any(line.startswith("v1alpha1: machine.network.interfaces[0].mtu:") for line in lines)
