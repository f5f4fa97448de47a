"""The cross-platform WireGuard UAPI text protocol (wireguard-go's control socket).

A request is ``get=1`` or ``set=1`` followed by ``key=value`` lines and an
empty line; the answer is ``key=value`` lines (for ``get``) then ``errno=N``
and an empty line. Keys are lowercase hex. The codec is pure
(:func:`encode_set`/:func:`decode_set`, :func:`encode_get`/:func:`decode_get`,
both directions so they round-trip in tests); :class:`UapiClient` is the
async client over ``/var/run/wireguard/<ifname>.sock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from netd.kernel.wireguard.model import (
    KEY_LEN,
    DeviceConfig,
    PeerConfig,
    PeerInfo,
    WireguardDevice,
    WireguardError,
    normalize_endpoint,
    public_key,
)
from netd.netip import format_prefix, parse_prefix

SOCKET_DIR = Path("/var/run/wireguard")
TIMEOUT = 5.0


def socket_path(ifname: str, sock_dir: Path = SOCKET_DIR) -> Path:
    return sock_dir / f"{ifname}.sock"


def _hex_key(value: str) -> bytes:
    if len(value) != 2 * KEY_LEN:
        raise WireguardError(f"UAPI: bad key length {len(value)}")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise WireguardError(f"UAPI: key is not hex: {value!r}") from None


def _bool(value: str) -> bool:
    if value not in ("true", "false"):
        raise WireguardError(f"UAPI: bad boolean {value!r}")
    return value == "true"


def _pairs(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.split("\n"):
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise WireguardError(f"UAPI: malformed line {line!r}")
        out.append((key, value))
    return out


# ---- set -------------------------------------------------------------------------------------


def encode_set(cfg: DeviceConfig) -> str:
    """The ``set=1`` request for ``cfg``, terminated by the empty line."""
    lines = ["set=1"]
    if cfg.private_key is not None:
        lines.append(f"private_key={cfg.private_key.hex()}")
    if cfg.listen_port is not None:
        lines.append(f"listen_port={cfg.listen_port}")
    if cfg.fwmark is not None:
        lines.append(f"fwmark={cfg.fwmark}")
    if cfg.replace_peers:
        lines.append("replace_peers=true")
    for p in cfg.peers:
        lines.append(f"public_key={p.public_key.hex()}")
        if p.remove:
            lines.append("remove=true")
            continue
        if p.update_only:
            lines.append("update_only=true")
        if p.preshared_key is not None:
            lines.append(f"preshared_key={p.preshared_key.hex()}")
        if p.endpoint is not None:
            lines.append(f"endpoint={p.endpoint}")
        if p.persistent_keepalive is not None:
            lines.append(f"persistent_keepalive_interval={p.persistent_keepalive}")
        if p.replace_allowed_ips:
            lines.append("replace_allowed_ips=true")
        lines.extend(f"allowed_ip={format_prefix(a)}" for a in p.allowed_ips)
    return "\n".join(lines) + "\n\n"


def decode_set(text: str) -> DeviceConfig:
    """Parse a ``set=1`` request (the inverse of :func:`encode_set`; used by tests/fakes)."""
    pairs = _pairs(text)
    if not pairs or pairs[0] != ("set", "1"):
        raise WireguardError("UAPI: not a set request")
    cfg = DeviceConfig()
    peer: PeerConfig | None = None
    for key, value in pairs[1:]:
        if key == "public_key":
            peer = PeerConfig(public_key=_hex_key(value))
            cfg.peers.append(peer)
        elif peer is None:
            if key == "private_key":
                cfg.private_key = _hex_key(value)
            elif key == "listen_port":
                cfg.listen_port = int(value)
            elif key == "fwmark":
                cfg.fwmark = int(value)
            elif key == "replace_peers":
                cfg.replace_peers = _bool(value)
            else:
                raise WireguardError(f"UAPI: unknown device key {key!r}")
        elif key == "remove":
            peer.remove = _bool(value)
        elif key == "update_only":
            peer.update_only = _bool(value)
        elif key == "preshared_key":
            peer.preshared_key = _hex_key(value)
        elif key == "endpoint":
            peer.endpoint = value
        elif key == "persistent_keepalive_interval":
            peer.persistent_keepalive = int(value)
        elif key == "replace_allowed_ips":
            peer.replace_allowed_ips = _bool(value)
        elif key == "allowed_ip":
            peer.allowed_ips.append(parse_prefix(value))
        elif key == "protocol_version":
            pass
        else:
            raise WireguardError(f"UAPI: unknown peer key {key!r}")
    return cfg


# ---- get -------------------------------------------------------------------------------------


def encode_get(dev: WireguardDevice) -> str:
    """The body of a ``get=1`` answer as wireguard-go writes it (without ``errno``)."""
    lines = []
    if any(dev.private_key):
        lines.append(f"private_key={dev.private_key.hex()}")
    if dev.listen_port:
        lines.append(f"listen_port={dev.listen_port}")
    if dev.fwmark:
        lines.append(f"fwmark={dev.fwmark}")
    for p in dev.peers:
        lines.append(f"public_key={p.public_key.hex()}")
        lines.append(f"preshared_key={p.preshared_key.hex()}")
        lines.append(f"protocol_version={p.protocol_version or 1}")
        if p.endpoint:
            lines.append(f"endpoint={p.endpoint}")
        sec = int(p.last_handshake)
        nsec = round((p.last_handshake - sec) * 1e9)
        lines.append(f"last_handshake_time_sec={sec}")
        lines.append(f"last_handshake_time_nsec={nsec}")
        lines.append(f"tx_bytes={p.tx_bytes}")
        lines.append(f"rx_bytes={p.rx_bytes}")
        lines.append(f"persistent_keepalive_interval={p.persistent_keepalive}")
        lines.extend(f"allowed_ip={format_prefix(a)}" for a in p.allowed_ips)
    return "".join(line + "\n" for line in lines)


def decode_get(text: str) -> WireguardDevice:
    """Parse a ``get=1`` answer body (an ``errno`` line, if present, is checked and dropped).
    Unknown keys are ignored (newer wireguard-go versions may add some)."""
    dev = WireguardDevice()
    peer: PeerInfo | None = None
    sec = nsec = 0
    for key, value in _pairs(text):
        if key == "errno":
            check_errno(value)
        elif key == "public_key":
            if peer is not None:
                peer.last_handshake = sec + nsec / 1e9
            sec = nsec = 0
            peer = PeerInfo(public_key=_hex_key(value))
            dev.peers.append(peer)
        elif peer is None:
            if key == "private_key":
                dev.private_key = _hex_key(value)
            elif key == "listen_port":
                dev.listen_port = int(value)
            elif key == "fwmark":
                dev.fwmark = int(value)
        elif key == "preshared_key":
            peer.preshared_key = _hex_key(value)
        elif key == "endpoint":
            peer.endpoint = normalize_endpoint(value)
        elif key == "persistent_keepalive_interval":
            peer.persistent_keepalive = int(value)
        elif key == "allowed_ip":
            peer.allowed_ips.append(parse_prefix(value))
        elif key == "last_handshake_time_sec":
            sec = int(value)
        elif key == "last_handshake_time_nsec":
            nsec = int(value)
        elif key == "rx_bytes":
            peer.rx_bytes = int(value)
        elif key == "tx_bytes":
            peer.tx_bytes = int(value)
        elif key == "protocol_version":
            peer.protocol_version = int(value)
    if peer is not None:
        peer.last_handshake = sec + nsec / 1e9
    dev.public_key = public_key(dev.private_key)
    return dev


def check_errno(value: str) -> None:
    """Raise for an ``errno=N`` answer with N ≠ 0."""
    try:
        code = int(value)
    except ValueError:
        raise WireguardError(f"UAPI: bad errno {value!r}") from None
    if code:
        raise WireguardError(f"UAPI: {os.strerror(code) if code > 0 else code} (errno={code})", code)


# ---- client ----------------------------------------------------------------------------------


class UapiClient:
    """Async client of one wireguard-go UAPI socket; a connection per request (cheap, and no
    state to lose when wireguard-go restarts)."""

    def __init__(self, path: Path, timeout: float = TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout

    async def _request(self, request: str) -> str:
        async def go() -> str:
            reader, writer = await asyncio.open_unix_connection(str(self.path))
            try:
                writer.write(request.encode())
                await writer.drain()
                lines: list[str] = []
                while True:
                    raw = await reader.readline()
                    if not raw:
                        raise WireguardError(f"UAPI {self.path}: connection closed mid-answer")
                    line = raw.decode().rstrip("\n")
                    if not line:
                        break
                    lines.append(line)
                return "\n".join(lines) + "\n"
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

        try:
            return await asyncio.wait_for(go(), self.timeout)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise WireguardError(f"UAPI {self.path}: {e.strerror}", e.errno or 0) from e
        except TimeoutError:
            raise WireguardError(f"UAPI {self.path}: no answer in {self.timeout}s") from None

    async def get(self) -> WireguardDevice:
        return decode_get(await self._request("get=1\n\n"))

    async def set(self, cfg: DeviceConfig) -> None:
        answer = _pairs(await self._request(encode_set(cfg)))
        errnos = [v for k, v in answer if k == "errno"]
        if not errnos:
            raise WireguardError(f"UAPI {self.path}: no errno in answer")
        check_errno(errnos[-1])

    async def ping(self) -> bool:
        """Whether a wireguard-go answers on the socket."""
        try:
            await self.get()
        except (WireguardError, OSError):
            return False
        return True
