"""Namespace names used by networking (netd.md §1.6)."""

NETWORK = "network"
NETWORK_CONFIG = "network-config"
FILES = "files"
RUNTIME = "runtime"
CLUSTER = "cluster"
CONFIG = "config"
CLUSTER_RAW = "cluster-raw"  # per-registry affiliates (kubespan.md §5.1); described in cluster.resources
KUBESPAN = "kubespan"  # KubeSpan config, identity, peers (kubespan.md §3, §6)

DESCRIPTIONS: dict[str, str] = {
    NETWORK: "Networking resources: merged specs, kernel statuses, node addresses.",
    NETWORK_CONFIG: "Networking configuration: un-merged specs, one per source layer or operator.",
    FILES: "Files managed by the node (/etc/hosts, /etc/resolv.conf).",
    RUNTIME: "Runtime state of the node (device readiness, mounts, platform).",
    CLUSTER: "Cluster membership: the node identity.",
    CONFIG: "Machine configuration.",
}
