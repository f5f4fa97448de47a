"""cosi package."""
