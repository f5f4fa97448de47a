"""`netctl get` of every registered resource type, in all three formats, from a running node."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from harness import Lab, wait_until

BIN = Path(sys.executable).parent

CONFIG = """version: v1alpha1
machine:
  type: controlplane
  network:
    hostname: every.example.org
    nameservers: [192.0.2.53]
    interfaces:
      - interface: eth0
        addresses: [192.0.2.10/24]
        routes:
          - network: 0.0.0.0/0
            gateway: 192.0.2.1
    kubespan:  # identity, link, rules, table-180 routes; no peers without the service
      enabled: true
cluster:
  id: 8XuV9TZHW08DOk3bVxQjH9ih_TBKjnh-j44tsCLSBzo=
  secret: kCQsKr4B28VUl7qw1sVkTDNF9fFH++ViIuKsss+C6kc=
  discovery:  # local Affiliate and Member, no network traffic
    enabled: true
    registries:
      service:
        disabled: true
  network:
    podSubnets: [10.244.0.0/16]
    serviceSubnets: [10.96.0.0/12]
---
apiVersion: v1alpha1
kind: NetworkRuleConfig
name: ssh
portSelector:
  ports: [22]
  protocol: tcp
ingress:
  - subnet: 192.0.2.0/24
"""


def test_get_every_type_in_every_format(lab: Lab) -> None:
    node = lab.node("every")
    sw = lab.switch("sw")
    lab.connect(node, sw, "eth0")
    cfg = node.dir / "config.yaml"
    cfg.write_text(CONFIG)
    api = str(node.dir / "api.sock")
    node.popen(
        [
            str(BIN / "machined"),
            "--config",
            str(cfg),
            "--state-dir",
            str(node.state_dir),
            "--etc-dir",
            str(node.etc_dir),
            "--api",
            api,
        ]
    )

    def netctl(*args: str) -> str:
        return node.run([str(BIN / "netctl"), *args, "--endpoint", api], timeout=60).stdout

    def lines(*args: str) -> list[dict[str, object]]:
        return [json.loads(line) for line in netctl("get", *args, "-o", "json").splitlines()]

    wait_until(
        lambda: lines("addresses") and lines("nftableschains") and lines("etcfilestatuses"),
        timeout=30,
        what="the node converged",
    )
    definitions = lines("rd")
    types = {d["spec"]["type"]: d["spec"]["defaultNamespace"] for d in definitions}  # type: ignore[index]
    assert len(types) >= 28 and "NfTablesChains.net.talos.dev" in types
    seen_any = 0
    for type_, namespace in sorted(types.items()):
        docs = lines(type_, "-n", namespace)
        for d in docs:
            assert set(d) == {"node", "metadata", "spec"}
            md = d["metadata"]
            assert md["type"] == type_ and md["namespace"] == namespace  # type: ignore[index]
            assert isinstance(md["version"], int) and md["finalizers"] is not None  # type: ignore[index]
            assert d["node"] == "every.example.org"
        seen_any += bool(docs)
        yaml_out = netctl("get", type_, "-n", namespace, "-o", "yaml")
        assert yaml_out.count("\nmetadata:\n") + yaml_out.startswith("metadata:") == len(docs)
        assert yaml_out.count("---\n") == max(0, len(docs) - 1)
        table = netctl("get", type_, "-n", namespace).splitlines()
        if docs:
            assert table[0].split()[:5] == ["NODE", "NAMESPACE", "TYPE", "ID", "VERSION"]
            assert len(table) == len(docs) + 1
    # the node produces resources of most types (not probes, link refreshes, filters, identities)
    # Empty on a node alone: operators/probes it has none of, and the KubeSpan peer types and the
    # discovery service status (no service, no peers).
    assert seen_any >= len(types) - 12
    for word in (
        "links",
        "routes",
        "addresses",
        "hostname",
        "resolvers",
        "timeservers",
        "nodeaddresses",
        "netstatus",
        "chains",
        "ns",
        "rd",
        "mc",
        "devicesstatuses",
    ):
        assert lines(word), word
