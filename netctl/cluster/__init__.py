"""Local clusters: nodes in network namespaces, sites behind 1:1 NAT routers, a discovery
service on a shared "internet" switch (`netctl cluster create|show|destroy`).

The Python API, for the demo and tests::

    from netctl.cluster import create, destroy, load, report, render

    record = create("demo", nodes=4, sites=2, kubespan=True)   # -> ClusterRecord
    record.api_socket("n1")                    # machined's API: netctl ... --endpoint <it>
    enter_node(record, "n1", ["ip", "-br", "addr"])  # argv running a command in node n1
    restart_machined(record, "n3")             # SIGTERM (kernel state kept), start again
    print(render(report(load("demo"))))        # what `netctl cluster show --name demo` prints
    destroy("demo")                            # -> [] when everything is gone

`topology` is pure (names, addresses, configs, NAT rules); `provision` does the work;
`state` is the on-disk record; `show` asks the nodes' APIs.
"""

from __future__ import annotations

from .provision import (
    ClusterExists,
    ClusterNotFound,
    ProvisionError,
    create,
    destroy,
    enter_node,
    load,
    node_command,
    restart_machined,
    start_machined,
    stop_machined,
)
from .show import ClusterReport, render, report
from .state import DEFAULT_STATE_DIR, ClusterRecord
from .topology import ClusterPlan, NodePlan, PlanError, SitePlan

__all__ = [
    "DEFAULT_STATE_DIR",
    "ClusterExists",
    "ClusterNotFound",
    "ClusterPlan",
    "ClusterRecord",
    "ClusterReport",
    "NodePlan",
    "PlanError",
    "ProvisionError",
    "SitePlan",
    "create",
    "destroy",
    "enter_node",
    "load",
    "node_command",
    "render",
    "report",
    "restart_machined",
    "start_machined",
    "stop_machined",
]
