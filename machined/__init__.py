"""machined: runs one node — loads its config, starts the controllers, serves the API."""
