"""What `netctl cluster show` reports: the record's nodes, whether their processes run, and
what each node's machined says (members; with KubeSpan, its peers and their state).

A node whose machined is down, or a daemon that does not know a resource type yet, makes
that cell "n/a": show never fails because one node cannot answer.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from .provision import api_answers, is_running, node_command
from .state import ROLE_DISCOVERY, ROLE_HOLDER, ROLE_MACHINED, ClusterRecord
from .topology import NodePlan

MEMBERS_TYPE = "Members.cluster.talos.dev"
PEER_STATUS_TYPE = "KubeSpanPeerStatuses.kubespan.talos.dev"
PEER_STATUS_NAMESPACE = "kubespan"
NA = "n/a"


@dataclass
class PeerRow:
    label: str
    endpoint: str
    state: str
    receive_bytes: str
    transmit_bytes: str
    last_handshake: str


@dataclass
class NodeReport:
    node: NodePlan
    api: str
    holder_running: bool
    machined_running: bool
    members: list[str] | None = None  # None: could not ask
    peers: list[PeerRow] | None = None
    errors: list[str] = field(default_factory=list)


@dataclass
class ClusterReport:
    record: ClusterRecord
    discovery_running: bool
    nodes: list[NodeReport]


def _text(v: Any) -> str:
    return "" if v is None else str(v)


def _list(endpoint: str, type_: str, namespace: str = "") -> list[tuple[dict[str, Any], Any]]:
    from netctl.client import Client

    with Client(endpoint) as c:
        return c.list(type_, namespace)[2]


def node_report(record: ClusterRecord, node: NodePlan) -> NodeReport:
    from netctl.client import ClientError

    holder = record.process(ROLE_HOLDER, node.name)
    machined = record.process(ROLE_MACHINED, node.name)
    api = str(record.api_socket(node))
    rep = NodeReport(
        node=node,
        api=api,
        holder_running=holder is not None and is_running(holder),
        machined_running=machined is not None and is_running(machined),
    )
    if not rep.machined_running or not api_answers(record.api_socket(node)):
        return rep
    try:
        rep.members = sorted(md["id"] for md, _ in _list(api, MEMBERS_TYPE))
    except ClientError as e:
        rep.errors.append(f"members: {e}")
    if record.plan.kubespan:
        try:
            items = _list(api, PEER_STATUS_TYPE, PEER_STATUS_NAMESPACE)
        except ClientError as e:  # e.g. a daemon without that type yet
            rep.errors.append(f"kubespan peers: {e}")
        else:
            rep.peers = [
                PeerRow(
                    label=_text(spec.get("label")) or md["id"],
                    endpoint=_text(spec.get("endpoint")),
                    state=_text(spec.get("state")),
                    receive_bytes=_text(spec.get("receiveBytes")),
                    transmit_bytes=_text(spec.get("transmitBytes")),
                    last_handshake=_text(spec.get("lastHandshakeTime")),
                )
                for md, spec in sorted(items, key=lambda it: str(it[1].get("label") or it[0]["id"]))
            ]
    return rep


def report(record: ClusterRecord) -> ClusterReport:
    ds = record.process(ROLE_DISCOVERY, "discovery")
    return ClusterReport(
        record=record,
        discovery_running=ds is not None and is_running(ds),
        nodes=[node_report(record, n) for n in record.plan.nodes],
    )


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "".join(
        "   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in rows
    )


def _running(b: bool) -> str:
    return "running" if b else "stopped"


def render_summary(record: ClusterRecord) -> str:
    p = record.plan
    return (
        f"cluster {p.name}: {len(p.nodes)} node(s) in {len(p.sites)} site(s), "
        f"KubeSpan {'on' if p.kubespan else 'off'}, phase {record.phase}\n"
        f"discovery service: {p.discovery_endpoint} (netns {p.discovery_netns})\n"
        f"state: {record.dir}\n"
    )


def render_access(record: ClusterRecord) -> str:
    """How to reach each node: the exact netctl command line, and a shell in it."""
    out = ["", "reach a node's API (any netctl command, with that --endpoint):"]
    for n in record.plan.nodes:
        out.append(f"  {n.name}: {shlex.join(node_command(record, n.name, 'get', 'members'))}")
    out.append("a shell in a node (its network, mounts and hostname):")
    for n in record.plan.nodes:
        holder = record.process(ROLE_HOLDER, n.name)
        if holder is not None:
            out.append(f"  {n.name}: nsenter -t {holder.pid} --net --mount --uts")
    out.append(f"remove it: {shlex.join(['netctl', 'cluster', 'destroy', '--name', record.name])}")
    return "\n".join(out) + "\n"


def render_nodes(rep: ClusterReport) -> str:
    rows = [["NODE", "SITE", "TYPE", "PRIVATE", "PUBLIC", "MACHINED", "MEMBERS", "API"]]
    for r in rep.nodes:
        n = r.node
        members = NA if r.members is None else ",".join(r.members) or "-"
        rows.append(
            [
                n.name,
                str(n.site),
                n.machine_type,
                n.private,
                n.public,
                _running(r.machined_running),
                members,
                r.api,
            ]
        )
    return _table(rows)


def render_peers(rep: ClusterReport) -> str:
    out = []
    for r in rep.nodes:
        out.append(f"\nkubespan peers of {r.node.name}:")
        if r.peers is None:
            out.append(f"  {NA}")
            continue
        if not r.peers:
            out.append("  (none)")
            continue
        rows = [["LABEL", "ENDPOINT", "STATE", "RX", "TX", "LAST HANDSHAKE"]]
        rows += [
            [x.label, x.endpoint, x.state, x.receive_bytes, x.transmit_bytes, x.last_handshake]
            for x in r.peers
        ]
        out.append("".join("  " + line + "\n" for line in _table(rows).splitlines()).rstrip("\n"))
    return "\n".join(out) + "\n"


def render(rep: ClusterReport) -> str:
    text = render_summary(rep.record)
    text += f"discovery-service: {_running(rep.discovery_running)}\n\n"
    text += render_nodes(rep)
    if rep.record.plan.kubespan:
        text += render_peers(rep)
    return text + render_access(rep.record)
