"""kubespan package."""
