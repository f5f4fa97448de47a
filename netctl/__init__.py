"""netctl package."""
