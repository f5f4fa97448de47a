"""A small asyncio etcd v3 client shared by the discovery service's replicated store and the VIP operator."""
