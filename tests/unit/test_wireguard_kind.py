"""The wireguard link kind's pure parts (matches, in_sync against what was configured) and its
update hook over a fake backend; the WireGuard LinkStatus block."""

from __future__ import annotations

import base64
import copy
import datetime as dt
from pathlib import Path

import pytest

from netd.controllers.status import wireguard_status
from netd.kernel.links import KINDS, KernelLink, kind_for
from netd.kernel.links.wireguard import Configured, WireguardKind, is_wireguard_link, spec_in_sync
from netd.kernel.wireguard import (
    DeviceConfig,
    PeerInfo,
    WireguardBackend,
    WireguardDevice,
    WireguardError,
    key_from_b64,
    public_key,
)
from netd.netip import parse_prefix
from netd.resources.enums import LinkType
from netd.resources.link import LinkSpec, LinkStatus, WireguardSpec

PRIV = base64.b64encode(bytes(range(1, 33))).decode()
PEER = base64.b64encode(bytes([7] * 32)).decode()
PEER2 = base64.b64encode(bytes([9] * 32)).decode()


def wg_spec(**kw: object) -> WireguardSpec:
    data: dict[str, object] = {
        "privateKey": PRIV,
        "listenPort": 51820,
        "peers": [{"publicKey": PEER, "endpoint": "192.0.2.2:51820", "allowedIPs": ["10.9.0.2/32"]}],
    }
    data.update(kw)
    return WireguardSpec.model_validate(data)


def device(**kw: object) -> WireguardDevice:
    priv = key_from_b64(PRIV)
    dev = WireguardDevice(
        private_key=priv,
        public_key=public_key(priv),
        listen_port=51820,
        peers=[
            PeerInfo(
                public_key=key_from_b64(PEER),
                endpoint="192.0.2.2:51820",
                allowed_ips=[parse_prefix("10.9.0.2/32")],
            )
        ],
    )
    for k, v in kw.items():
        setattr(dev, k, v)
    return dev


def link_spec(wg: WireguardSpec | None = None) -> LinkSpec:
    return LinkSpec(
        name="wg0", logical=True, kind="wireguard", type=LinkType.NOHDR, wireguard=wg or wg_spec()
    )


def klink(kind: str, index: int = 5, type_: LinkType = LinkType.NOHDR) -> KernelLink:
    return KernelLink(name="wg0", index=index, kind=kind, type=type_, has_linkinfo=True)


def test_registered() -> None:
    assert isinstance(KINDS["wireguard"], WireguardKind)
    assert kind_for("wireguard").refresh == "wireguard"


def test_matches_kernel_and_userspace_devices(tmp_path: Path) -> None:
    kind = WireguardKind(sock_dir=tmp_path)
    spec = link_spec()
    assert kind.matches(spec, klink("wireguard"))
    # a plain tun is not WireGuard: its spec would recreate it (if ours)
    assert not kind.matches(spec, klink("tun"))
    assert not is_wireguard_link(klink("tun"), tmp_path)
    # wireguard-go's tun: it serves /var/run/wireguard/wg0.sock
    (tmp_path / "wg0.sock").touch()
    assert kind.matches(spec, klink("tun"))
    assert not kind.matches(spec, klink("bridge"))
    assert not kind.matches(spec, klink("wireguard", type_=LinkType.ETHER))
    # recorded_matches / plan_teardown ask with type NETROM (any type)
    assert kind.matches(spec.model_copy(update={"type": LinkType.NETROM}), klink("tun", type_=LinkType.ETHER))


def test_spec_in_sync_semantics() -> None:
    last = Configured(wg_spec(), device())
    assert not spec_in_sync(wg_spec(), None)  # never configured by this process: configure
    assert spec_in_sync(wg_spec(), last)
    assert spec_in_sync(wg_spec(listenPort=0), last)  # 0 = any port
    peers_no_endpoint = [{"publicKey": PEER, "allowedIPs": ["10.9.0.2/32"]}]
    assert spec_in_sync(wg_spec(peers=peers_no_endpoint), last)  # empty endpoint = roaming
    masked = [
        {"publicKey": PEER, "endpoint": "192.0.2.2:51820", "allowedIPs": ["10.9.0.2/32", "10.9.0.2/32"]}
    ]
    assert spec_in_sync(wg_spec(peers=masked), last)
    assert not spec_in_sync(wg_spec(listenPort=51821), last)
    assert not spec_in_sync(wg_spec(firewallMark=3), last)
    added = [
        *wg_spec().model_dump(by_alias=True)["peers"],
        {"publicKey": PEER2, "allowedIPs": ["10.9.0.3/32"]},
    ]
    assert not spec_in_sync(wg_spec(peers=added), last)
    assert not spec_in_sync(wg_spec(peers=[]), last)
    assert not spec_in_sync(wg_spec(privateKey=PEER2), last)


def test_spec_in_sync_with_host_names() -> None:
    """A host-name endpoint is resolved only when writing: in sync iff the spec is the one
    configured (else every pass would re-resolve and "update")."""
    named = wg_spec(
        peers=[{"publicKey": PEER, "endpoint": "peer.example:51820", "allowedIPs": ["10.9.0.2/32"]}]
    )
    last = Configured(named, device())
    assert spec_in_sync(named, last)
    other = named.model_copy(update={"listen_port": 1})
    assert not spec_in_sync(other, last)


def test_bad_key_is_not_in_sync() -> None:
    assert not spec_in_sync(wg_spec(privateKey="not a key"), Configured(wg_spec(), device()))


class FakeBackend(WireguardBackend):
    """An in-memory device; ``apply`` replaces it with the desired one, records writes."""

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
        if cfg.listen_port is not None:
            self.dev.listen_port = cfg.listen_port

    async def delete(self, ifname: str) -> None:
        pass


async def test_update_configures_then_is_in_sync(tmp_path: Path) -> None:
    kind = WireguardKind(sock_dir=tmp_path)
    be = FakeBackend(device(listen_port=1))
    kind.backend_for = lambda link: be  # type: ignore[method-assign]
    spec, link = link_spec(), klink("wireguard", index=5)
    assert not kind.in_sync(spec, link)
    await kind.update(None, spec, link, {})  # type: ignore[arg-type]
    assert len(be.sent) == 1 and be.sent[0].listen_port == 51820 and not be.sent[0].peers
    assert kind.in_sync(spec, link)
    assert not kind.in_sync(spec, klink("wireguard", index=6))  # another (recreated) link
    # a restarted process: nothing cached, the update reads and writes nothing
    fresh = WireguardKind(sock_dir=tmp_path)
    fresh.backend_for = lambda link: be  # type: ignore[method-assign]
    await fresh.update(None, spec, link, {})  # type: ignore[arg-type]
    assert len(be.sent) == 1 and fresh.in_sync(spec, link)
    kind.forget(5)
    assert not kind.in_sync(spec, link)
    await kind.update(None, spec, link, {"wg0": link})  # type: ignore[arg-type]
    kind.prune({"wg0": link})
    assert kind.in_sync(spec, link)
    kind.prune({})  # deleted behind our back
    assert not kind.in_sync(spec, link)


async def test_backend_errors_become_oserror(tmp_path: Path) -> None:
    class Broken(FakeBackend):
        async def get(self, ifname: str) -> WireguardDevice:
            raise WireguardError("no such device", 19)

    kind = WireguardKind(sock_dir=tmp_path)
    kind.backend_for = lambda link: Broken(device())  # type: ignore[method-assign]
    with pytest.raises(OSError) as e:
        await kind.update(None, link_spec(), klink("wireguard"), {})  # type: ignore[arg-type]
    assert e.value.errno == 19


def test_wireguard_status_block() -> None:
    when = 1_700_000_000.25
    dev = device()
    dev.peers[0].last_handshake, dev.peers[0].rx_bytes, dev.peers[0].tx_bytes = when, 1234, 5678
    st = wireguard_status(LinkStatus(kind="tun", type=LinkType.NOHDR), dev)
    assert st.kind == "wireguard"
    out = st.model_dump(mode="json", by_alias=True)["wireguard"]
    assert out["publicKey"] == base64.b64encode(public_key(key_from_b64(PRIV))).decode()
    assert "privateKey" not in out and out["listenPort"] == 51820
    (peer,) = out["peers"]
    assert peer["publicKey"] == PEER
    assert peer["lastHandshakeTime"] == "2023-11-14T22:13:20Z"
    assert (peer["rxBytes"], peer["txBytes"]) == (1234, 5678)
    assert st.wireguard.peers[0].last_handshake_time == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)
    # no session yet: the status-only fields are omitted, as in a LinkSpec
    quiet = wireguard_status(LinkStatus(kind="wireguard"), device()).model_dump(mode="json", by_alias=True)
    assert set(quiet["wireguard"]["peers"][0]) == {
        "publicKey", "presharedKey", "endpoint", "persistentKeepaliveInterval", "allowedIPs",
    }  # fmt: skip
    # unreadable device: still kind wireguard, no block
    assert wireguard_status(LinkStatus(kind="tun"), None).wireguard.is_zero()


def test_linkspec_output_unchanged_by_status_fields() -> None:
    dumped = link_spec().model_dump(mode="json", by_alias=True)["wireguard"]["peers"][0]
    assert "lastHandshakeTime" not in dumped and "rxBytes" not in dumped and "txBytes" not in dumped
