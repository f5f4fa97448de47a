"""machined package."""
