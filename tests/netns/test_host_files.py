"""Hostname, domainname, resolv.conf and hosts on a node (netd.md §5.4-§5.6, decisions.md).

A runner inside the node (its own UTS namespace, private etc dir) runs the
hostname/resolver/timeserver spec controllers and both EtcFile controllers on
given specs; the test checks the node's names with the real ``hostname`` and
``domainname`` commands, the exact file contents, that the host is untouched, and
that a second run with the same inputs leaves the files alone (same inode, mtime).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from harness import Lab, Node

RUNNER = r"""
import asyncio, json, os, sys

from cosi import Runtime, State
from netd.config import load_config
from netd.controllers.etcfile import FilesEtcFileController, NetworkEtcFileController
from netd.controllers.hostname_spec import HostnameSpecController
from netd.controllers.resolver_spec import ResolverSpecController, TimeServerSpecController
from netd.netip import parse_addr, parse_prefix
from netd.resources import register_all
from netd.resources.files import ETC_FILE_STATUS_TYPE
from netd.resources.hostname import HOSTNAME_SPEC_TYPE, HOSTNAME_STATUS_TYPE, HostnameSpec
from netd.resources.machine_config import MACHINE_CONFIG_ID, MACHINE_CONFIG_TYPE, MachineConfigSpec
from netd.resources.namespaces import CONFIG, FILES, NETWORK
from netd.resources.nodeaddress import NODE_ADDRESS_TYPE, NodeAddress
from netd.resources.resolver import RESOLVER_SPEC_TYPE, RESOLVER_STATUS_TYPE, ResolverSpec
from netd.resources.timeserver import TIME_SERVER_SPEC_TYPE, TIME_SERVER_STATUS_TYPE, TimeServerSpec


async def main(args):
    state = State()
    register_all(state)
    rt = Runtime(state)
    for c in (
        HostnameSpecController(),
        ResolverSpecController(),
        TimeServerSpecController(),
        NetworkEtcFileController(),
        FilesEtcFileController(args["etc_dir"]),
    ):
        rt.register(c)
    loaded = load_config(args["config"])
    state.put(CONFIG, MACHINE_CONFIG_TYPE, MACHINE_CONFIG_ID, MachineConfigSpec(config=loaded.config))
    state.put(NETWORK, HOSTNAME_SPEC_TYPE, "hostname",
              HostnameSpec(hostname=args["hostname"], domainname=args["domainname"]),
              "network.HostnameMergeController")
    state.put(NETWORK, RESOLVER_SPEC_TYPE, "resolvers",
              ResolverSpec(dns_servers=[parse_addr(a) for a in args["resolvers"]]),
              "network.ResolverMergeController")
    state.put(NETWORK, TIME_SERVER_SPEC_TYPE, "timeservers", TimeServerSpec(time_servers=["pool.ntp.org"]),
              "network.TimeServerMergeController")
    state.put(NETWORK, NODE_ADDRESS_TYPE, "default",
              NodeAddress(addresses=[parse_prefix(args["address"])]), "network.NodeAddressController")
    async with rt:
        ok = await rt.settle(timeout=20)
    out = {"settled": ok, "restarts": rt.restarts, "uname": os.uname().nodename}
    for ns, t, i in (
        (NETWORK, HOSTNAME_STATUS_TYPE, "hostname"),
        (NETWORK, RESOLVER_STATUS_TYPE, "resolvers"),
        (NETWORK, TIME_SERVER_STATUS_TYPE, "timeservers"),
        (FILES, ETC_FILE_STATUS_TYPE, "resolv.conf"),
        (FILES, ETC_FILE_STATUS_TYPE, "hosts"),
    ):
        r = state.get(ns, t, i)
        out[f"{t}/{i}"] = None if r is None else r.spec.model_dump(mode="json", by_alias=True)
    print(json.dumps(out))


asyncio.run(main(json.loads(sys.argv[1])))
"""

CONFIG = """\
version: v1alpha1
machine:
  type: controlplane
  network:
    extraHostEntries:
      - ip: 192.168.1.100
        aliases:
          - registry.example.org
          - registry
      - ip: fd00::10
        aliases: [ntp.lan]
"""

EXPECTED_RESOLV_CONF = "nameserver 10.0.0.53\nnameserver 2001:db8::53\n\nsearch example.org\n"
EXPECTED_HOSTS = (
    "127.0.0.1     localhost\n"
    "10.0.0.2      cp1.example.org cp1\n"
    "::1           localhost ip6-localhost ip6-loopback\n"
    "ff02::1       ip6-allnodes\n"
    "ff02::2       ip6-allrouters\n"
    "192.168.1.100 registry.example.org registry\n"
    "fd00::10      ntp.lan\n"
)


def run_controllers(node: Node, tmp_path: Path) -> dict[str, Any]:
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    args = {
        "etc_dir": str(node.etc_dir),
        "config": CONFIG,
        "hostname": "cp1",
        "domainname": "example.org",
        "resolvers": ["10.0.0.53", "2001:db8::53"],
        "address": "10.0.0.2/24",
    }
    res = node.run([sys.executable, str(script), json.dumps(args)], timeout=60)
    out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["settled"] and out["restarts"] == {}, out
    return out


def _stat(p: Path) -> tuple[int, int]:
    st = os.stat(p)
    return st.st_ino, st.st_mtime_ns


def test_hostname_domainname_resolv_conf_and_hosts(lab: Lab, tmp_path: Path) -> None:
    host_name = socket.gethostname()
    with open("/proc/sys/kernel/domainname") as f:
        host_domain = f.read()
    node = lab.node("n1", hostname="before")
    etc = node.etc_dir
    (etc / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")  # not ours: never touched
    passwd_stat = _stat(etc / "passwd")

    out = run_controllers(node, tmp_path)
    assert out["uname"] == "cp1"
    assert out["HostnameStatuses.net.talos.dev/hostname"] == {"hostname": "cp1", "domainname": "example.org"}
    assert out["ResolverStatuses.net.talos.dev/resolvers"] == {"dnsServers": ["10.0.0.53", "2001:db8::53"]}
    assert out["TimeServerStatuses.net.talos.dev/timeservers"] == {"timeServers": ["pool.ntp.org"]}
    assert out["EtcFileStatuses.files.talos.dev/resolv.conf"] is not None
    assert out["EtcFileStatuses.files.talos.dev/hosts"] is not None

    # The node's UTS namespace has the names; the host's does not.
    assert node.run(["hostname"]).stdout.strip() == "cp1"
    assert node.run(["domainname"]).stdout.strip() == "example.org"
    assert socket.gethostname() == host_name
    with open("/proc/sys/kernel/domainname") as f:
        assert f.read() == host_domain

    assert (etc / "resolv.conf").read_text() == EXPECTED_RESOLV_CONF
    assert (etc / "hosts").read_text() == EXPECTED_HOSTS
    for name in ("resolv.conf", "hosts"):
        assert os.stat(etc / name).st_mode & 0o7777 == 0o644
    assert sorted(os.listdir(etc)) == ["hosts", "passwd", "resolv.conf"]  # no temporary files left

    # A second run (a machined restart) with the same inputs rewrites nothing.
    before = {n: _stat(etc / n) for n in ("resolv.conf", "hosts")}
    out2 = run_controllers(node, tmp_path)
    assert out2["uname"] == "cp1"
    assert {n: _stat(etc / n) for n in ("resolv.conf", "hosts")} == before
    assert _stat(etc / "passwd") == passwd_stat
    assert node.run(["hostname"]).stdout.strip() == "cp1"
    assert socket.gethostname() == host_name
