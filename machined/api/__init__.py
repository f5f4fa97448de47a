"""The machined API: resources (Get/List/Watch) and machine operations (config, reset).

``machined.proto`` defines it; ``machined_pb2*`` are generated from it by
``make proto`` and committed. This package file stays import-free: ``netctl``
imports the generated messages from here without pulling in the server, the
resource models or pydantic.
"""
