"""The API over TCP requires a client certificate from --tls-ca (mutual TLS).

``make_pki`` is also used by the netns test (imported by path).
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from netctl.cli import main as netctl


def _key() -> object:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, key: object, cert: object) -> None:
    from cryptography.hazmat.primitives import serialization

    path.with_suffix(".key").write_bytes(
        key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))  # type: ignore[attr-defined]


def make_pki(directory: Path, ca_name: str = "ca", leaves: tuple[str, ...] = ("server", "client")) -> None:
    """``<ca>.crt/.key`` and a certificate per leaf signed by it (the server one for 127.0.0.1/localhost)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = _key()
    ca_name_x = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"test {ca_name}")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name_x)
        .issuer_name(ca_name_x)
        .public_key(ca_key.public_key())  # type: ignore[attr-defined]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    _write(directory / ca_name, ca_key, ca)
    for leaf in leaves:
        key = _key()
        usage = (
            ExtendedKeyUsageOID.SERVER_AUTH if leaf.startswith("server") else ExtendedKeyUsageOID.CLIENT_AUTH
        )
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, leaf)]))
            .issuer_name(ca_name_x)
            .public_key(key.public_key())  # type: ignore[attr-defined]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if leaf.startswith("server"):
            b = b.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        _write(directory / leaf, key, b.sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[object, Path, str]]:
    from test_api import ServerThread  # same directory (pytest's rootdir import)

    make_pki(tmp_path)
    make_pki(tmp_path, "other", ("intruder",))
    addr = f"127.0.0.1:{free_port()}"
    tls = (str(tmp_path / "server.crt"), str(tmp_path / "server.key"), str(tmp_path / "ca.crt"))
    srv = ServerThread(tmp_path, listen_tcp=addr, tls=tls).start()
    yield srv, tmp_path, addr
    srv.stop()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = netctl(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_client_certificate_from_the_ca_is_accepted(
    tls_server: tuple[object, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, d, addr = tls_server
    rc, out, err = run(
        capsys,
        "get",
        "namespaces",
        "--endpoint",
        f"tcp://{addr}",
        "--tls-ca",
        str(d / "ca.crt"),
        "--tls-cert",
        str(d / "client.crt"),
        "--tls-key",
        str(d / "client.key"),
    )
    assert rc == 0, err
    assert "network-config" in out


def test_client_without_a_valid_certificate_is_refused(
    tls_server: tuple[object, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, d, addr = tls_server
    ep = ["--endpoint", f"tcp://{addr}", "--tls-ca", str(d / "ca.crt")]
    rc, out, err = run(capsys, "get", "namespaces", *ep)  # no client certificate at all
    assert rc == 1 and out == ""
    assert err.startswith(f"netctl: cannot connect to {addr}") and err.count("\n") == 1
    other = ["--tls-cert", str(d / "intruder.crt"), "--tls-key", str(d / "intruder.key")]
    rc, out, err = run(capsys, "get", "namespaces", *ep, *other)  # a certificate from another CA
    assert rc == 1 and out == "" and err.startswith("netctl: cannot connect to")
    # A client that does not trust the server's CA refuses the server too.
    rc, _, err = run(
        capsys,
        "get",
        "namespaces",
        "--endpoint",
        f"tcp://{addr}",
        "--tls-ca",
        str(d / "other.crt"),
        "--tls-cert",
        str(d / "client.crt"),
        "--tls-key",
        str(d / "client.key"),
    )
    assert rc == 1 and err.startswith("netctl: cannot connect to")


def test_tcp_endpoint_needs_tls_flags(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "get", "links", "--endpoint", "tcp://127.0.0.1:1")
    assert rc == 1 and "needs --tls-ca" in err
    rc, _, err = run(capsys, "get", "links", "--endpoint", "tcp://nope")
    assert rc == 1 and "want tcp://HOST:PORT" in err
