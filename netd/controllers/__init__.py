"""netd controllers: config, merge, spec and status controllers of netd.md §10."""
