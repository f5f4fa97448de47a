"""netd.kernel.wireguard.diff: the equality rules of netd.md §5.1 step 5 and the minimal write.

Rule table first, then properties over random desired specs and devices: applying the
computed write (with the kernel's semantics, simulated) gives a device in sync; peers the write
does not mention keep their sessions; a device in sync gets an empty write; and the result agrees
with ``WireguardSpec.matches`` on canonical input.
"""

from __future__ import annotations

import copy
import datetime as dt
import ipaddress
import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netd.kernel.wireguard import WireguardBackend, WireguardError, is_userspace_device, resolve_endpoints
from netd.kernel.wireguard.diff import compute_diff, in_sync
from netd.kernel.wireguard.model import (
    DeviceConfig,
    PeerInfo,
    WireguardDevice,
    canonical_allowed_ips,
    key_to_b64,
    public_key,
)
from netd.resources.link import WireguardPeer, WireguardSpec

K = [bytes([i]) * 32 for i in range(1, 6)]
B = [key_to_b64(k) for k in K]
P = ipaddress.ip_interface


def device(**kw: object) -> WireguardDevice:
    d = WireguardDevice(private_key=K[0], public_key=public_key(K[0]), listen_port=51820)
    for k, v in kw.items():
        setattr(d, k, v)
    return d


def peer_info(i: int, **kw: object) -> PeerInfo:
    p = PeerInfo(
        public_key=K[i],
        endpoint="192.0.2.1:51820",
        persistent_keepalive=25,
        allowed_ips=[P("10.0.0.0/24"), P("fd00::/64")],
        last_handshake=1700000000.0,
        rx_bytes=100,
        tx_bytes=200,
    )
    for k, v in kw.items():
        setattr(p, k, v)
    return p


def peer_spec(i: int, **kw: object) -> WireguardPeer:
    base: dict[str, object] = {
        "public_key": B[i],
        "endpoint": "192.0.2.1:51820",
        "persistent_keepalive_interval": dt.timedelta(seconds=25),
        "allowed_ips": [P("fd00::/64"), P("10.0.0.0/24")],
    }
    return WireguardPeer(**(base | kw))


def spec(peers: list[WireguardPeer], **kw: object) -> WireguardSpec:
    return WireguardSpec(**({"private_key": B[0], "listen_port": 51820, "peers": peers} | kw))


@pytest.mark.parametrize(
    ("desired", "why"),
    [
        (spec([peer_spec(1)]), "identical"),
        (spec([peer_spec(1)], listen_port=0), "listen port 0 = any"),
        (spec([peer_spec(1, endpoint="")]), "empty endpoint = don't care"),
        (spec([peer_spec(1, endpoint="[::ffff:192.0.2.1]:51820")]), "same endpoint, other spelling"),
        (
            spec([peer_spec(1, allowed_ips=[P("10.0.0.7/24"), P("fd00::/64"), P("10.0.0.0/24")])]),
            "masked, dup",
        ),
        (spec([peer_spec(1, preshared_key="")]), "no preshared key = zero key"),
    ],
)
def test_in_sync(desired: WireguardSpec, why: str) -> None:
    assert in_sync(desired, device(peers=[peer_info(1)])), why


@pytest.mark.parametrize(
    ("desired", "expect"),
    [
        (spec([peer_spec(1)], private_key=B[2]), DeviceConfig(private_key=K[2])),
        (spec([peer_spec(1)], listen_port=51821), DeviceConfig(listen_port=51821)),
        (spec([peer_spec(1)], firewall_mark=32), DeviceConfig(fwmark=32)),
    ],
)
def test_device_attribute_changes(desired: WireguardSpec, expect: DeviceConfig) -> None:
    assert compute_diff(desired, device(peers=[peer_info(1)])) == expect


def test_peer_add_remove_change_only_those() -> None:
    dev = device(peers=[peer_info(1), peer_info(2), peer_info(3)])
    desired = spec(
        [
            peer_spec(1),  # unchanged: not mentioned
            peer_spec(2, persistent_keepalive_interval=dt.timedelta(0)),  # changed
            peer_spec(4, endpoint="", allowed_ips=[P("10.4.0.1/16")]),  # new
        ]
    )  # 3 vanished
    cfg = compute_diff(desired, dev)
    assert cfg.private_key is None and cfg.listen_port is None and cfg.fwmark is None
    assert not cfg.replace_peers
    by_key = {p.public_key: p for p in cfg.peers}
    assert set(by_key) == {K[2], K[3], K[4]}
    assert by_key[K[3]].remove
    changed = by_key[K[2]]
    assert changed.persistent_keepalive == 0 and changed.replace_allowed_ips
    assert changed.endpoint == "192.0.2.1:51820" and changed.preshared_key == bytes(32)
    new = by_key[K[4]]
    assert new.endpoint is None  # no endpoint given: none sent (the peer may roam to us)
    assert new.allowed_ips == [P("10.4.0.0/16")]


@pytest.mark.parametrize(
    "peer",
    [
        peer_spec(1, endpoint="192.0.2.9:51820"),
        peer_spec(1, preshared_key=B[3]),
        peer_spec(1, allowed_ips=[P("10.0.0.0/24")]),
        peer_spec(1, persistent_keepalive_interval=dt.timedelta(seconds=5)),
    ],
)
def test_peer_differences(peer: WireguardPeer) -> None:
    live = 1700000000.0 + 30  # the device's handshake was 30 s ago: a live session
    cfg = compute_diff(spec([peer]), device(peers=[peer_info(1)]), now=live)
    assert [p.public_key for p in cfg.peers] == [K[1]]
    assert not cfg.peers[0].remove


@pytest.mark.parametrize(
    ("handshake", "recreated"), [(0.0, True), (1700000000.0 - 181, True), (1700000000.0 - 60, False)]
)
def test_new_endpoint_without_session_recreates_the_peer(handshake: float, recreated: bool) -> None:
    """Rotation (kubespan.md §6.3): with no live session the peer is removed and re-added in the
    same write, so WireGuard initiates on the new endpoint at once instead of after its 5 s
    initiation limit; a live session is never dropped."""
    dev = device(peers=[peer_info(1, last_handshake=handshake)])
    cfg = compute_diff(spec([peer_spec(1, endpoint="192.0.2.9:51820")]), dev, now=1700000000.0)
    flags = [(p.public_key, p.remove) for p in cfg.peers]
    assert flags == ([(K[1], True), (K[1], False)] if recreated else [(K[1], False)])
    assert cfg.peers[-1].endpoint == "192.0.2.9:51820"
    # the same endpoint, spelled the same: nothing at all
    same = compute_diff(spec([peer_spec(1)]), dev, now=1700000000.0)
    assert same.is_empty()


def test_preshared_key_removed_is_cleared() -> None:
    cfg = compute_diff(spec([peer_spec(1)]), device(peers=[peer_info(1, preshared_key=K[4])]))
    assert cfg.peers[0].preshared_key == bytes(32)


def test_empty_private_key_clears() -> None:
    assert compute_diff(spec([], private_key=""), device()).private_key == bytes(32)


async def test_hostname_endpoint_is_resolved_before_compare() -> None:
    desired = await resolve_endpoints(spec([peer_spec(1, endpoint="localhost:51820")]))
    assert desired.peers[0].endpoint == "127.0.0.1:51820"
    assert in_sync(desired, device(peers=[peer_info(1, endpoint="127.0.0.1:51820")]))
    literal = spec([peer_spec(1)])
    assert await resolve_endpoints(literal) is literal


# ---- properties ----------------------------------------------------------------------------


def simulate(dev: WireguardDevice, cfg: DeviceConfig) -> WireguardDevice:
    """Apply a write with the kernel's/wireguard-go's semantics."""
    dev = copy.deepcopy(dev)
    if cfg.private_key is not None:
        dev.private_key, dev.public_key = cfg.private_key, public_key(cfg.private_key)
    if cfg.listen_port is not None:
        dev.listen_port = cfg.listen_port
    if cfg.fwmark is not None:
        dev.fwmark = cfg.fwmark
    if cfg.replace_peers:
        dev.peers = []
    for pc in cfg.peers:
        old = dev.peer(pc.public_key)
        if pc.remove:
            dev.peers = [p for p in dev.peers if p.public_key != pc.public_key]
            continue
        if old is None:
            if pc.update_only:
                continue
            old = PeerInfo(public_key=pc.public_key)
            dev.peers.append(old)
        if pc.preshared_key is not None:
            old.preshared_key = pc.preshared_key
        if pc.endpoint is not None:
            old.endpoint = pc.endpoint
        if pc.persistent_keepalive is not None:
            old.persistent_keepalive = pc.persistent_keepalive
        if pc.replace_allowed_ips:
            old.allowed_ips = []
        old.allowed_ips = canonical_allowed_ips(old.allowed_ips + pc.allowed_ips)
    return dev


idx = st.integers(0, 3)
small_prefixes = st.sampled_from([P("10.0.0.0/24"), P("10.0.0.5/24"), P("fd00::/64"), P("10.1.0.0/16")])
endpoints = st.sampled_from(["", "192.0.2.1:51820", "[fd00::2]:51820"])
psks = st.sampled_from(["", B[4]])
keepalives = st.sampled_from([0, 25])

desired_peers = st.builds(
    lambda i, e, k, a, s: WireguardPeer(
        public_key=B[i],
        endpoint=e,
        persistent_keepalive_interval=dt.timedelta(seconds=k),
        allowed_ips=a,
        preshared_key=s,
    ),
    idx,
    endpoints,
    keepalives,
    st.lists(small_prefixes, max_size=3),
    psks,
)
desired_specs = st.builds(
    lambda k, port, mark, peers: WireguardSpec(
        private_key=B[k], listen_port=port, firewall_mark=mark, peers=peers
    ),
    st.sampled_from([0, 1]),
    st.sampled_from([0, 51820]),
    st.sampled_from([0, 32]),
    st.lists(desired_peers, max_size=4, unique_by=lambda p: p.public_key),
)
device_peers = st.builds(
    lambda i, e, k, a, s, n: PeerInfo(
        public_key=K[i],
        endpoint=e,
        persistent_keepalive=k,
        allowed_ips=canonical_allowed_ips(a),
        preshared_key=s,
        last_handshake=float(n),
        rx_bytes=n,
        tx_bytes=n,
    ),
    idx,
    endpoints,
    keepalives,
    st.lists(small_prefixes, max_size=3),
    st.sampled_from([bytes(32), K[4]]),
    st.integers(1, 10**6),
)
devices = st.builds(
    lambda k, port, mark, peers: WireguardDevice(
        private_key=K[k], public_key=public_key(K[k]), listen_port=port, fwmark=mark, peers=peers
    ),
    st.sampled_from([0, 1]),
    st.sampled_from([0, 51820, 40000]),
    st.sampled_from([0, 32]),
    st.lists(device_peers, max_size=4, unique_by=lambda p: p.public_key),
)


@given(desired_specs, devices)
def test_diff_converges_and_spares_untouched_peers(desired: WireguardSpec, dev: WireguardDevice) -> None:
    cfg = compute_diff(desired, dev)
    after = simulate(dev, cfg)
    assert in_sync(desired, after)
    assert compute_diff(desired, after).is_empty()  # steady state writes nothing
    mentioned = {p.public_key for p in cfg.peers}
    for p in dev.peers:
        if p.public_key not in mentioned:
            assert after.peer(p.public_key) == p  # same handshake time and counters
    assert not cfg.replace_peers


@given(desired_specs, devices)
def test_agrees_with_wireguardspec_matches(desired: WireguardSpec, dev: WireguardDevice) -> None:
    """On canonical desired input (masked, unique allowed IPs) our equality is the resource's."""
    canon = desired.model_copy(
        update={
            "peers": [
                p.model_copy(update={"allowed_ips": canonical_allowed_ips(p.allowed_ips)})
                for p in desired.peers
            ]
        }
    )
    assert in_sync(canon, dev) == canon.matches(dev.to_spec(private=True))


# ---- configure() over a fake backend -----------------------------------------------------------


class FakeBackend(WireguardBackend):
    """In-memory device with the kernel's write semantics; records every write."""

    name = "fake"

    def __init__(self, dev: WireguardDevice) -> None:
        super().__init__()
        self.dev = dev
        self.sent: list[DeviceConfig] = []

    async def create(self, ifname: str) -> None:
        pass

    async def exists(self, ifname: str) -> bool:
        return True

    async def get(self, ifname: str) -> WireguardDevice:
        return copy.deepcopy(self.dev)

    async def apply(self, ifname: str, cfg: DeviceConfig) -> None:
        self.sent.append(cfg)
        self.dev = simulate(self.dev, cfg)

    async def delete(self, ifname: str) -> None:
        pass


async def test_configure_writes_once_then_nothing() -> None:
    be = FakeBackend(device(peers=[peer_info(1), peer_info(2)]))
    desired = spec([peer_spec(1), peer_spec(3, endpoint="localhost:51820")], listen_port=0)
    assert await be.configure("wg0", desired)
    (cfg,) = be.sent
    assert [p.public_key for p in cfg.peers] == [K[2], K[3]]  # 2 removed, 3 added; 1 untouched
    assert cfg.peers[1].endpoint == "127.0.0.1:51820"  # resolved
    assert not await be.configure("wg0", desired)  # a new "process" would do the same: no state
    assert not await FakeBackend(be.dev).configure("wg0", desired)
    assert be.writes == 1 and len(be.sent) == 1


async def test_unresolvable_endpoint_is_an_error() -> None:
    with pytest.raises(WireguardError):
        await resolve_endpoints(spec([peer_spec(1, endpoint="no-such-host.invalid:51820")]))


def test_is_userspace_device(tmp_path: Path) -> None:
    assert not is_userspace_device("wg9", "tun", sock_dir=tmp_path)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tmp_path / "wg9.sock"))
        assert is_userspace_device("wg9", "tun", sock_dir=tmp_path)
        assert not is_userspace_device("wg9", "wireguard", sock_dir=tmp_path)


def test_roamed_endpoint_is_kept_while_the_desired_one_is_unchanged() -> None:
    """WireGuard roamed the peer (it talked to us from its NAT address): a spec that still wants
    the endpoint we wrote last time does not force it back; a new desired endpoint is written."""
    dev = device(peers=[peer_info(1, endpoint="203.0.113.7:51820")])
    wrote = {K[1]: "192.0.2.1:51820"}
    assert compute_diff(spec([peer_spec(1)]), dev, now=1700000000.0 + 30, applied_endpoints=wrote).is_empty()
    moved = compute_diff(
        spec([peer_spec(1, endpoint="192.0.2.9:51820")]), dev, now=1700000000.0 + 30, applied_endpoints=wrote
    )
    assert [(p.public_key, p.endpoint) for p in moved.peers] == [(K[1], "192.0.2.9:51820")]
    # without the memory (a fresh process), the desired endpoint is written
    assert not compute_diff(spec([peer_spec(1)]), dev, now=1700000000.0 + 30).is_empty()
