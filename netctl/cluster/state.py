"""The record of a local cluster: `<state-dir>/<name>/cluster.json`, plus where its files live.

The record is written before anything it names is created and rewritten after every
process start, so `destroy` always knows at least as much as exists (a process started
after the last write still lives in a recorded namespace, where `destroy` finds it).

Layout of `<state-dir>/<name>/` (mode 0700: the configs hold the cluster secret)::

    cluster.json                 this record
    discovery-service.log
    router-s<s>.nft              the NAT ruleset loaded into router s
    n<i>/config.yaml             the node's machine config (machined --config)
    n<i>/state/ n<i>/etc/        machined --state-dir / --etc-dir
    n<i>/api.sock                machined --api: `netctl --endpoint` reaches it from the host
    n<i>/machined.log n<i>/holder.log
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netd.kernel.files import write_if_changed

from .topology import ClusterPlan, NodePlan, SitePlan

DEFAULT_STATE_DIR = Path("/run/netctl/clusters")
"""Under /run (a tmpfs on systemd hosts): the record lives exactly as long as the namespaces,
processes and tmpfs mounts it describes, all of which a reboot removes too."""
STATE_DIR_ENV = "NETCTL_CLUSTERS_DIR"
RECORD_FILE = "cluster.json"
RECORD_VERSION = 1

PHASE_CREATING = "creating"
PHASE_READY = "ready"

ROLE_HOLDER = "holder"
ROLE_MACHINED = "machined"
ROLE_DISCOVERY = "discovery-service"


def default_state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


@dataclass
class ProcessRecord:
    """One process we started. ``start_time`` (clock ticks after boot, /proc/PID/stat field 22)
    makes the pid safe to signal later: a recycled pid has another start time."""

    role: str
    owner: str  # node name, or "discovery"
    pid: int
    start_time: int


@dataclass
class ClusterRecord:
    plan: ClusterPlan
    dir: Path
    phase: str = PHASE_CREATING
    processes: list[ProcessRecord] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def path(self) -> Path:
        return self.dir / RECORD_FILE

    # ---- per-node files ---------------------------------------------------------------

    def node_dir(self, node: NodePlan | str) -> Path:
        return self.dir / (node if isinstance(node, str) else node.name)

    def config_path(self, node: NodePlan | str) -> Path:
        return self.node_dir(node) / "config.yaml"

    def api_socket(self, node: NodePlan | str) -> Path:
        return self.node_dir(node) / "api.sock"

    def nat_path(self, site: int) -> Path:
        return self.dir / f"router-s{site}.nft"

    # ---- processes ----------------------------------------------------------------------

    def process(self, role: str, owner: str) -> ProcessRecord | None:
        """The latest process of that role and owner (a restarted machined replaces the old)."""
        for p in reversed(self.processes):
            if p.role == role and p.owner == owner:
                return p
        return None

    def add_process(self, p: ProcessRecord) -> None:
        self.processes.append(p)
        self.save()

    # ---- persistence ----------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "version": RECORD_VERSION,
            "phase": self.phase,
            "plan": dataclasses.asdict(self.plan),
            "processes": [dataclasses.asdict(p) for p in self.processes],
        }

    def save(self) -> None:
        text = json.dumps(self.to_json(), indent=2) + "\n"
        write_if_changed(str(self.path), text.encode(), 0o600)

    @classmethod
    def load(cls, directory: Path) -> ClusterRecord:
        """Raises OSError when there is no record, ValueError when it is not one of ours."""
        data = json.loads((directory / RECORD_FILE).read_text())
        if not isinstance(data, dict) or data.get("version") != RECORD_VERSION:
            raise ValueError(f"{directory / RECORD_FILE}: not a version {RECORD_VERSION} cluster record")
        return cls(
            plan=plan_from_json(data["plan"]),
            dir=directory,
            phase=str(data["phase"]),
            processes=[ProcessRecord(**p) for p in data["processes"]],
        )


def plan_from_json(d: dict[str, Any]) -> ClusterPlan:
    fields = {k: v for k, v in d.items() if k not in ("sites", "nodes")}
    return ClusterPlan(
        **fields,
        sites=tuple(SitePlan(**s) for s in d["sites"]),
        nodes=tuple(NodePlan(**n) for n in d["nodes"]),
    )
