"""Thin adapters between specs/statuses and the kernel: netlink, sysfs, files.

Nothing here decides what the node should look like; controllers do. These
modules only translate between kernel objects and resource specs.
"""
