"""``netctl kubespan showconf``: join a machine that is not a node to the KubeSpan mesh (issue 13,
like Kilo's ``kgctl showconf``). Pure: the command fetches the resources, this module builds

- the outside machine's **wg-quick file** (written with ``wgconfig``): its private key, an
  address from the cluster's KubeSpan /64, and every node as a ``[Peer]`` (public key,
  allowed IPs, one endpoint, keepalive 25 s);
- the **KubeSpanPeerConfig** document that makes every node add the machine as a static peer
  of its ``kubespan`` link (netd/config/kubespan_peer.py).

The outside machine's address (:func:`outside_address`): the /64's first 8 bytes, then the
first 8 bytes of SHA-256(``"kubespan-peer:"`` + its public key) as interface ID. Nodes take
theirs from a MAC by modified EUI-64 (kubespan/identity.py), which puts ``ff:fe`` in bytes 3-4
of the interface ID; ours never has ``ff:fe`` there (byte 4 is changed when the hash gives
it), so it cannot collide with a node's whatever the node's MAC. It depends on the key only:
the same key (``--key-file``) gives the same address, two machines two addresses. An address
a node already holds (a node with an 8-byte MAC has no ``ff:fe``) is skipped by hashing again
with a counter.
"""

from __future__ import annotations

import base64
import hashlib
import io
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubespan.constants import KEEPALIVE
from kubespan.peer_state import is_public
from kubespan.peers import Endpoint, Network, cidr_cover
from netd.kernel.nftables import Interval, merge_intervals, subtract_intervals

KEEPALIVE_SECONDS = int(KEEPALIVE)  # as the nodes keep their static peers alive
_ADDRESS_LABEL = b"kubespan-peer:"


class ShowconfError(ValueError):
    """What the node reported cannot give a configuration (the message says what is missing)."""


@dataclass(frozen=True)
class MeshNode:
    """One node as a ``[Peer]`` of the outside machine."""

    label: str
    public_key: str
    allowed_ips: tuple[Network, ...]
    endpoints: tuple[Endpoint, ...]

    @property
    def endpoint(self) -> Endpoint | None:
        return pick_endpoint(self.endpoints)


@dataclass
class Mesh:
    """What one node's API says about the mesh: its own identity and every peer."""

    subnet: ipaddress.IPv6Network
    nodes: list[MeshNode] = field(default_factory=list)

    def addresses(self) -> list[ipaddress.IPv6Address]:
        """Every single IPv6 address a node routes (its KubeSpan /128 among them)."""
        return [
            ipaddress.IPv6Address(int(p.network_address))
            for n in self.nodes
            for p in n.allowed_ips
            if p.version == 6 and p.prefixlen == 128
        ]


# ---- choices ---------------------------------------------------------------------------------


def pick_endpoint(endpoints: Sequence[Endpoint]) -> Endpoint | None:
    """The first public endpoint (:func:`kubespan.peer_state.is_public`, the nodes' own
    definition: documentation ranges count as public), else the first one; None without
    endpoints. An outside machine is rarely on a node's private network."""
    return next((e for e in endpoints if is_public(e.ip)), endpoints[0] if endpoints else None)


def _interface_id(public_key: str, counter: int) -> bytes:
    data = _ADDRESS_LABEL + public_key.encode()
    if counter:
        data += b":" + str(counter).encode()
    iid = bytearray(hashlib.sha256(data).digest()[:8])
    if iid[3] == 0xFF and iid[4] == 0xFE:
        iid[4] = 0xFD  # never the EUI-64 marker of a node address
    return bytes(iid)


def outside_address(
    subnet: ipaddress.IPv6Network,
    public_key: str,
    taken: Iterable[ipaddress.IPv6Address] = (),
) -> ipaddress.IPv6Interface:
    """The outside machine's KubeSpan address as /128 (module docstring)."""
    if subnet.version != 6 or subnet.prefixlen != 64:
        raise ShowconfError(f"KubeSpan subnet {subnet}: want an IPv6 /64")
    used = set(taken)
    for counter in range(1000):
        iid = _interface_id(public_key, counter)
        ip = ipaddress.IPv6Address(subnet.network_address.packed[:8] + iid)
        if ip not in used and iid != bytes(8):
            return ipaddress.IPv6Interface((ip, 128))
    raise ShowconfError(f"no free address in {subnet}")  # pragma: no cover - 1000 collisions


# ---- from the node's resources ---------------------------------------------------------------


def _networks(texts: Iterable[str], what: str) -> list[Network]:
    out: list[Network] = []
    for text in texts:
        try:
            out.append(ipaddress.ip_interface(text).network)
        except ValueError:
            raise ShowconfError(f"{what}: bad prefix {text!r}") from None
    return out


def _endpoints(texts: Iterable[str], what: str) -> tuple[Endpoint, ...]:
    out: list[Endpoint] = []
    for text in texts:
        try:
            out.append(Endpoint.parse(text))
        except ValueError:
            raise ShowconfError(f"{what}: bad endpoint {text!r}") from None
    return tuple(out)


def _intervals(nets: Iterable[Network]) -> tuple[list[Interval], list[Interval]]:
    spans = [(n.version, (int(n.network_address), int(n.broadcast_address) + 1)) for n in nets]
    return merge_intervals(i for v, i in spans if v == 4), merge_intervals(i for v, i in spans if v == 6)


def mesh_from_resources(
    identity: Mapping[str, Any],
    peer_specs: Sequence[tuple[str, Mapping[str, Any]]],
    local_affiliate: Mapping[str, Any] | None,
) -> Mesh:
    """The mesh as node X sees it.

    ``identity``: X's KubeSpanIdentity spec (only ``address``, ``subnet`` and ``publicKey`` are
    read: the resource also holds X's private key). ``peer_specs``: (id = public key, spec) of
    X's KubeSpanPeerSpecs, every other node with its allowed IPs as X routes them. X itself:
    its KubeSpan /128 plus its node addresses and additional prefixes from its own affiliate
    (``local_affiliate``, the merged ``cluster`` affiliate carrying X's public key), less what
    another node already has. No node's allowed IPs keep an address one of the chosen
    endpoints is on: the tunnel would have to carry its own packets.
    """
    try:
        subnet = ipaddress.IPv6Network(str(identity.get("subnet") or ""))
        address = ipaddress.IPv6Interface(str(identity.get("address") or "")).ip
    except ValueError:
        raise ShowconfError("the node has no KubeSpan address: is KubeSpan enabled there?") from None
    own_key = str(identity.get("publicKey") or "")
    if not own_key:
        raise ShowconfError("the node's KubeSpanIdentity has no public key")
    others: list[MeshNode] = []
    for key, spec in sorted(peer_specs, key=lambda p: (str(p[1].get("label", "")), p[0])):
        label = str(spec.get("label") or key[:8])
        others.append(
            MeshNode(
                label=label,
                public_key=key,
                allowed_ips=tuple(_networks(spec.get("allowedIPs") or [], f"peer {label} allowedIPs")),
                endpoints=_endpoints(spec.get("endpoints") or [], f"peer {label}"),
            )
        )
    ks = (local_affiliate or {}).get("kubespan") or {}
    own_nets: list[Network] = [ipaddress.IPv6Network(address)]
    own_nets += [ipaddress.ip_network(a) for a in (local_affiliate or {}).get("addresses") or []]
    own_nets += _networks(ks.get("additionalAddresses") or [], "the node's additionalAddresses")
    v4, v6 = _intervals(own_nets)
    taken4, taken6 = _intervals(n for o in others for n in o.allowed_ips)
    label = str((local_affiliate or {}).get("nodename") or (local_affiliate or {}).get("hostname") or "")
    me = MeshNode(
        label=label or "node",
        public_key=own_key,
        allowed_ips=cidr_cover(subtract_intervals(v4, taken4), subtract_intervals(v6, taken6)),
        endpoints=_endpoints(ks.get("endpoints") or [], "the node's own endpoints"),
    )
    nodes = [me, *others]
    hosts = [ipaddress.ip_network(e.ip) for n in nodes if (e := n.endpoint) is not None]
    h4, h6 = _intervals(hosts)
    out: list[MeshNode] = []
    for n in nodes:
        a4, a6 = _intervals(n.allowed_ips)
        nets = cidr_cover(subtract_intervals(a4, h4), subtract_intervals(a6, h6))
        out.append(MeshNode(n.label, n.public_key, nets, n.endpoints))
    return Mesh(subnet=subnet, nodes=out)


# ---- the two documents -----------------------------------------------------------------------


def public_key_of(private_b64: str) -> str:
    """WireGuard's public key of a base64 private key; ShowconfError naming the problem."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    try:
        raw = base64.b64decode(private_b64.strip(), validate=True)
    except ValueError:
        raise ShowconfError("private key: not base64 (want the output of `wg genkey`)") from None
    if len(raw) != 32:
        raise ShowconfError(f"private key: {len(raw)} bytes, want 32")
    pub = X25519PrivateKey.from_private_bytes(raw).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(pub).decode()


def generate_private_key() -> str:
    from kubespan.identity import generate_private_key as generate

    return generate()


def wg_quick(
    mesh: Mesh,
    *,
    name: str,
    private_key: str,
    address: ipaddress.IPv6Interface,
    listen_port: int | None = None,
    node: str = "",
) -> str:
    """The wg-quick file of the outside machine (``wgconfig``), one ``[Peer]`` per node."""
    from wgconfig import WGConfig

    wc = WGConfig()
    source = f" (from node {node})" if node else ""
    wc.initialize_file(
        f"# KubeSpan: {name}, a machine outside the cluster; mesh {mesh.subnet}{source}.\n"
        "# Holds a private key: keep it 0600. Bring it up with `wg-quick up ./<file>`."
    )
    wc.add_attr(None, "PrivateKey", private_key)
    wc.add_attr(None, "Address", str(address))
    if listen_port:
        wc.add_attr(None, "ListenPort", listen_port)
    for n in mesh.nodes:
        wc.add_peer(n.public_key, f"# {n.label}")
        if n.allowed_ips:
            wc.add_attr(n.public_key, "AllowedIPs", ", ".join(str(p) for p in n.allowed_ips))
        if (e := n.endpoint) is not None:
            wc.add_attr(n.public_key, "Endpoint", str(e))
        wc.add_attr(n.public_key, "PersistentKeepalive", KEEPALIVE_SECONDS)
    out = io.StringIO()
    wc.write_to_fileobj(out)
    return out.getvalue()


def peer_document(
    *, name: str, public_key: str, allowed_ips: Sequence[ipaddress.IPv6Interface], endpoint: str = ""
) -> str:
    """The ``KubeSpanPeerConfig`` document (YAML) to add to every node's machine config."""
    lines = [
        "apiVersion: v1alpha1",
        "kind: KubeSpanPeerConfig",
        f'name: "{name}"',
        f'publicKey: "{public_key}"',
        "allowedIPs:",
        *(f"  - {p}" for p in allowed_ips),
    ]
    if endpoint:
        lines.append(f'endpoint: "{endpoint}"')
    return "\n".join(lines) + "\n"
