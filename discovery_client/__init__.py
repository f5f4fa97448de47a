"""discovery_client package."""
