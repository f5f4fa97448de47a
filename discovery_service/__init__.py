"""discovery_service package."""
