"""The plan of a local cluster: names, addresses, machine configs and NAT rules.

Pure functions of (name, nodes, sites, kubespan, cluster id/secret), so the whole
plan is known — and recorded — before the first namespace exists: `destroy` can
then remove everything a crashed `create` may have made, and the unit tests check
the plan without root.

Addressing (all IPv4; the documentation range stands for "the internet"):

- the internet switch carries 203.0.113.0/24 (RFC 5737 TEST-NET-3): site router
  ``s`` has ``.s`` (s ≤ 16), node ``i`` has the public address ``.(32+i)``
  (i ≤ 200), the discovery service ``.254``;
- site ``s`` is 10.s.0.0/24 behind its router at ``10.s.0.1``; node ``i`` is
  ``10.s.0.(10+i)`` (the global index, so an address names its node).

The router maps each of its nodes 1:1 (a cloud instance's public IP): DNAT of the
public to the private address, SNAT of every packet from the node, including
packets that come back into the site (hairpin), so a node reaching a same-site
node's public address gets replies from that public address too. Nothing routes
one site's private network to another.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import re
from dataclasses import dataclass

INTERNET = ipaddress.IPv4Network("203.0.113.0/24")  # RFC 5737 TEST-NET-3
DISCOVERY_HOST = 254
DISCOVERY_PORT = 3000
PUBLIC_NODE_BASE = 32  # node i is INTERNET[32 + i]; routers take the low addresses
MAX_SITES = 16
MAX_NODES = 200
PRIVATE_NODE_BASE = 10  # node i is 10.<site>.0.(10 + i)
SITE_PREFIXLEN = 24
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,22}[a-z0-9])?$")
NETNS_PREFIX = "c-"
# sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
UNIX_PATH_MAX = 107
SECRET_BYTES = 32  # Talos: cluster id and secret are 32 random bytes each (kubespan.md §1.1)


class PlanError(ValueError):
    """A request that cannot become a cluster (bad name, too many nodes...)."""


@dataclass(frozen=True)
class SitePlan:
    index: int
    switch_netns: str
    router_netns: str
    lan: str  # "10.s.0.0/24"
    router_lan: str  # "10.s.0.1/24"
    router_wan: str  # "203.0.113.s/24"


@dataclass(frozen=True)
class NodePlan:
    name: str  # "n1"; also the hostname and the discovery member id
    index: int
    site: int
    machine_type: str  # "controlplane" for n1, "worker" for the rest
    netns: str
    private: str  # "10.s.0.x/24"
    gateway: str  # the site router's LAN address
    public: str  # "203.0.113.y"
    mac: str  # eth0's address: fixed per (cluster, node), locally administered

    @property
    def private_ip(self) -> str:
        return self.private.split("/", 1)[0]


@dataclass(frozen=True)
class ClusterPlan:
    name: str
    kubespan: bool
    cluster_id: str
    cluster_secret: str
    internet_netns: str
    discovery_netns: str
    discovery_address: str  # "203.0.113.254/24"
    sites: tuple[SitePlan, ...]
    nodes: tuple[NodePlan, ...]

    @property
    def discovery_ip(self) -> str:
        return self.discovery_address.split("/", 1)[0]

    @property
    def discovery_endpoint(self) -> str:
        """Plaintext (``http://``): kubespan.md §1.2, the scheme decides TLS."""
        return f"http://{self.discovery_ip}:{DISCOVERY_PORT}"

    def netns_names(self) -> list[str]:
        """Every namespace, in creation order (switches before what plugs into them)."""
        names = [self.internet_netns, self.discovery_netns]
        for s in self.sites:
            names += [s.switch_netns, s.router_netns]
        names += [n.netns for n in self.nodes]
        return names

    def node(self, name: str) -> NodePlan:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"cluster {self.name} has no node {name!r}")

    def site(self, index: int) -> SitePlan:
        return self.sites[index - 1]

    def site_nodes(self, index: int) -> list[NodePlan]:
        return [n for n in self.nodes if n.site == index]


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise PlanError(
            f"bad cluster name {name!r}: want 1-24 of a-z, 0-9 and '-', starting and ending alphanumeric"
        )


def netns_name(cluster: str, suffix: str) -> str:
    """``c-<cluster>-<suffix>``. Suffixes never contain '-', so the last '-' splits a name
    unambiguously and clusters named ``a`` and ``a-n1`` never share a namespace."""
    return f"{NETNS_PREFIX}{cluster}-{suffix}"


NETNS_SUFFIX_RE = re.compile(r"^(inet|ds|s\d+|r\d+|n\d+)$")


def owns_netns(cluster: str, netns: str) -> bool:
    """Whether ``netns`` is a name this cluster's plan can contain (the sweep when the record
    is lost)."""
    head = f"{NETNS_PREFIX}{cluster}-"
    return netns.startswith(head) and bool(NETNS_SUFFIX_RE.match(netns[len(head) :]))


def site_of(index: int, nodes: int, sites: int) -> int:
    """Nodes fill sites in blocks as even as possible (n1, n2 | n3, n4 for 4 nodes in 2 sites),
    so "site 1" is the first nodes, as a reader of `show` expects."""
    return (index - 1) * sites // nodes + 1


def mac_address(cluster: str, index: int) -> str:
    """02:hh:hh:hh:ii:ii: locally administered unicast (byte 0 = 0x02), three bytes of the
    cluster name's hash so two clusters' nodes differ, then the node index."""
    h = hashlib.sha256(cluster.encode()).digest()
    raw = bytes([0x02, h[0], h[1], h[2], index >> 8, index & 0xFF])
    return ":".join(f"{b:02x}" for b in raw)


def new_cluster_secrets() -> tuple[str, str]:
    """(cluster id, cluster secret) as Talos generates them (kubespan.md §1.1): the id is
    URL-safe base64 of 32 random bytes, the secret standard base64 (it is also the WireGuard PSK)."""
    cid = base64.urlsafe_b64encode(os.urandom(SECRET_BYTES)).decode()
    secret = base64.b64encode(os.urandom(SECRET_BYTES)).decode()
    return cid, secret


def plan(
    name: str, nodes: int, sites: int, kubespan: bool, cluster_id: str, cluster_secret: str
) -> ClusterPlan:
    check_name(name)
    if not 1 <= sites <= MAX_SITES:
        raise PlanError(f"--sites {sites}: want 1-{MAX_SITES}")
    if not sites <= nodes <= MAX_NODES:
        raise PlanError(f"--nodes {nodes}: want {sites}-{MAX_NODES} (at least one node per site)")
    site_plans = []
    for s in range(1, sites + 1):
        lan = ipaddress.IPv4Network(f"10.{s}.0.0/{SITE_PREFIXLEN}")
        site_plans.append(
            SitePlan(
                index=s,
                switch_netns=netns_name(name, f"s{s}"),
                router_netns=netns_name(name, f"r{s}"),
                lan=str(lan),
                router_lan=f"{lan[1]}/{SITE_PREFIXLEN}",
                router_wan=f"{INTERNET[s]}/{INTERNET.prefixlen}",
            )
        )
    node_plans = []
    for i in range(1, nodes + 1):
        site = site_plans[site_of(i, nodes, sites) - 1]
        lan = ipaddress.IPv4Network(site.lan)
        node_plans.append(
            NodePlan(
                name=f"n{i}",
                index=i,
                site=site.index,
                machine_type="controlplane" if i == 1 else "worker",
                netns=netns_name(name, f"n{i}"),
                private=f"{lan[PRIVATE_NODE_BASE + i]}/{SITE_PREFIXLEN}",
                gateway=str(lan[1]),
                public=str(INTERNET[PUBLIC_NODE_BASE + i]),
                mac=mac_address(name, i),
            )
        )
    return ClusterPlan(
        name=name,
        kubespan=kubespan,
        cluster_id=cluster_id,
        cluster_secret=cluster_secret,
        internet_netns=netns_name(name, "inet"),
        discovery_netns=netns_name(name, "ds"),
        discovery_address=f"{INTERNET[DISCOVERY_HOST]}/{INTERNET.prefixlen}",
        sites=tuple(site_plans),
        nodes=tuple(node_plans),
    )


def machine_config(p: ClusterPlan, node: NodePlan) -> str:
    """The node's v1alpha1 machine config: static address and default route via the site
    router, discovery through the cluster's own service (the Kubernetes registry off: there
    is no Kubernetes), KubeSpan when asked. JSON-compatible flow values keep it short and
    free of YAML 1.1 surprises."""
    kubespan = "    kubespan:\n      enabled: true\n" if p.kubespan else ""
    return f"""version: v1alpha1
machine:
  type: {node.machine_type}
  network:
    hostname: {node.name}
    interfaces:
      - interface: eth0
        addresses: [{node.private}]
        routes:
          - network: 0.0.0.0/0
            gateway: {node.gateway}
{kubespan}cluster:
  id: {p.cluster_id}
  secret: {p.cluster_secret}
  discovery:
    enabled: true
    registries:
      kubernetes:
        disabled: true
      service:
        endpoint: {p.discovery_endpoint}
"""


NAT_TABLE = "netctl_nat"


def nat_ruleset(p: ClusterPlan, site: int) -> str:
    """The site router's nftables script (`nft -f`): 1:1 NAT for each of its nodes.

    SNAT matches on the source alone, not on the output interface, so hairpin traffic
    (a node to a same-site node's public address) is rewritten as well and its replies
    come back through the router, where conntrack undoes both translations.
    """
    lines = [
        f"table ip {NAT_TABLE} {{",
        "  chain prerouting {",
        "    type nat hook prerouting priority dstnat; policy accept;",
    ]
    nodes = p.site_nodes(site)
    lines += [f"    ip daddr {n.public} dnat to {n.private_ip}" for n in nodes]
    lines += [
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
    ]
    lines += [f"    ip saddr {n.private_ip} snat to {n.public}" for n in nodes]
    lines += ["  }", "}", ""]
    return "\n".join(lines)
