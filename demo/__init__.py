"""`make demo`: a small cluster of nodes in network namespaces, torn down at the end."""
