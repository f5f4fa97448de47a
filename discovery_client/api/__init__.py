"""Generated protobuf/gRPC modules for the discovery API (regenerate with `make proto`).

``cluster_pb2``/``cluster_pb2_grpc``: service ``sidero.discovery.server.Cluster`` (spec §4.2).
``affiliate_pb2``: the encrypted payloads ``sidero.discovery.client.*`` (spec §4.3).
"""
