"""KubeSpan (kubespan.md): the WireGuard mesh between cluster members.

``kubespan.identity``
    The node's KubeSpan identity (§3): X25519 keys persisted in ``kubespan-identity.yaml``,
    the cluster ULA /64 (§3.2), the node address by modified EUI-64 (§3.3), and which MAC
    seeds it when the node has no physical NIC. The resource and its controller live in
    ``cluster`` (``KubeSpanIdentities.kubespan.talos.dev``), next to the affiliate that
    publishes the public key.

Peers, endpoints, the manager and the kernel side are still to come.
"""
