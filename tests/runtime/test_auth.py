"""Connecting with user/password, a token, and mutual TLS to a real nats-server."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lanscope.config import NatsConfig, Secret, TlsConfig
from lanscope.runtime.bus import Bus, BusError
from lanscope.runtime.embedded import EmbeddedNats
from schemas import STREAMS

pytestmark = pytest.mark.nats

PASSWORD = "s3cret-Pa55"


def _openssl(*argv: str, cwd: Path) -> None:
    subprocess.run(["openssl", *argv], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    d = Path(tmp_path_factory.mktemp("pki"))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
             "-subj", "/CN=lanscope test CA", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
                      ("client", "extendedKeyUsage=clientAuth\n")):
        (d / f"{name}.ext").write_text(ext)
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext", cwd=d)
    return d


def _server(tmp_path: Path, extra: str) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path / "store", extra_config=extra)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tls_server(tmp_path: Path, pki: Path) -> Iterator[EmbeddedNats]:
    yield from _server(tmp_path, f"""
authorization {{ user: lanscope, password: "{PASSWORD}" }}
tls {{ cert_file: "{pki}/server.pem", key_file: "{pki}/server.key", ca_file: "{pki}/ca.pem", verify: true }}
""")


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    yield from _server(tmp_path, 'authorization { token: "t0ken-value" }')


async def test_user_password_over_mutual_tls(tls_server: EmbeddedNats, pki: Path) -> None:
    config = NatsConfig(url=f"tls://127.0.0.1:{tls_server.port}", user="lanscope", password=Secret(PASSWORD),
                        tls=TlsConfig(ca_file=str(pki / "ca.pem"), cert_file=str(pki / "client.pem"),
                                      key_file=str(pki / "client.key")))
    async with await Bus.connect(config) as bus:
        await bus.provision([])
        assert (await bus.js.account_info()).streams == len(STREAMS)


async def test_a_wrong_password_fails_without_showing_it(tls_server: EmbeddedNats, pki: Path) -> None:
    config = NatsConfig(url=f"tls://127.0.0.1:{tls_server.port}", user="lanscope",
                        password=Secret("not-" + PASSWORD), connect_timeout_secs=2,
                        tls=TlsConfig(ca_file=str(pki / "ca.pem"), cert_file=str(pki / "client.pem"),
                                      key_file=str(pki / "client.key")))
    with pytest.raises(BusError) as error:
        await Bus.connect(config)
    assert "user lanscope" in str(error.value) and PASSWORD not in str(error.value)


async def test_tls_without_the_ca_is_refused(tls_server: EmbeddedNats, pki: Path) -> None:
    config = NatsConfig(url=f"tls://127.0.0.1:{tls_server.port}", user="lanscope", password=Secret(PASSWORD),
                        connect_timeout_secs=2, tls=TlsConfig(cert_file=str(pki / "client.pem"),
                                                              key_file=str(pki / "client.key")))
    with pytest.raises(BusError, match=r"CERTIFICATE_VERIFY_FAILED|SSL"):
        await Bus.connect(config)


async def test_token(token_server: EmbeddedNats) -> None:
    config = NatsConfig(url=token_server.url, token=Secret("t0ken-value"))
    async with await Bus.connect(config) as bus:
        assert bus.nc.is_connected
