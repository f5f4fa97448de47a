"""Cluster discovery on the node: identities, affiliates and members (kubespan.md §2, §3, §4.7, §5).

``cluster.resources``
    DiscoveryConfig, KubeSpanConfig, KubeSpanIdentity, Affiliate, Member (+ ``register_all``).
``cluster.identity``
    jxskiss base62 (§2.1) and the persisted node identity (§2).
``cluster.config`` / ``cluster.affiliates``
    Pure functions: the derived config objects (§1.2); the local affiliate and its KubeSpan
    endpoints (§5.2, §5.3), the wire form (§4.7), merge (§5.4) and members (§5.5).
``cluster.controllers``
    The controllers machined runs (``machined.wiring``).

The KubeSpan identity's keys and addresses are in ``kubespan.identity``.
"""
