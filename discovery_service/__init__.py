"""A self-hostable discovery service: the `sidero.discovery.server.Cluster` gRPC API (kubespan.md §4.8).

Layout: `model` (records and the pure §4.8 merge/expiry rules), `limits` (validation), `store`
(the backend protocol) with `memory_store` and `etcd_store`, `subscriptions` (Watch fan-out),
`ratelimit`, `statefile`, `metrics`, `servicer` (the gRPC adapter), `server` (assembly), `cli`.
"""
