"""Hostile servers on loopback: endless streams, garbage, 1 MB lines, slow drips, half-closed sockets.

Each test starts its own server on 127.0.0.1 and grabs/identifies against it
through the real banner code: the result must be capped, and the grab must
end near its deadline (bounds are loose: the machine is shared).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from enrichers.port_probe import _banner
from enrichers.port_probe.fingerprint import default_rules, escape_banner
from enrichers.port_probe.stage import Config, Prober
from lanscope.net.ports import PortSpec
from schemas import PortState

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[int]:
    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(guarded, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        srv.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(srv.wait_closed(), 2)


async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    chunk = b"A" * 65536
    while True:
        writer.write(chunk)
        await writer.drain()


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(os.urandom(200_000))
    await writer.drain()


async def megabyte_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"SSH-2.0-" + b"x" * 1_048_576 + b"\r\n")
    await writer.drain()


async def slow_drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    for _ in range(10_000):
        writer.write(b"2")
        await writer.drain()
        await asyncio.sleep(0.05)


async def half_closed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 (vsFTPd 3.0.3)\r\n")
    await writer.drain()
    writer.write_eof()
    await reader.read(100)            # keeps the other half open until the client goes


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(1_000_000)
    await asyncio.sleep(30)


async def resets(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    import socket
    import struct

    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.mark.parametrize("handler", [endless, garbage, megabyte_line, slow_drip, half_closed, silent, resets],
                         ids=lambda h: h.__name__)
async def test_hostile_server_is_capped(handler: Handler) -> None:
    async with server(handler) as port:
        started = time.monotonic()
        grab = await _banner.grab("127.0.0.1", port, timeout_s=1.5, greet_s=0.5)
        elapsed = time.monotonic() - started
    assert elapsed < 1.5 * 3 + 2                     # every step shares one deadline (loose bound)
    assert len(grab.data) <= _banner.CAP
    assert len(grab.shown) <= 1024
    found = default_rules().identify(grab.data, port)
    banner = escape_banner(grab.shown)
    assert len(banner) <= 4096 and banner.isprintable()
    if handler is half_closed:
        assert (found.product, found.version) == ("vsftpd", "3.0.3")


async def test_prober_survives_hostile_ports_and_reports_them_open() -> None:
    async with server(endless) as p1, server(garbage) as p2, server(slow_drip) as p3:
        prober = Prober(Config(banner_timeout_ms=1000, connect_timeout_ms=500, udp=""))
        started = time.monotonic()
        reports = await prober.probe(["127.0.0.1"], PortSpec(tcp=(p1, p2, p3)), scan_type="connect")
        assert time.monotonic() - started < 10
    ports = {p.port: p for p in reports["127.0.0.1"].ports}
    assert all(ports[p].state == PortState.OPEN for p in (p1, p2, p3))
    assert all(len(ports[p].banner or "") <= 4096 for p in (p1, p2, p3))


async def test_http_probe_reads_status_server_and_title() -> None:
    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        assert b"Host: 127.0.0.1" in request
        writer.write(b"HTTP/1.1 200 OK\r\nServer: GoAhead-Webs\r\nConnection: close\r\n\r\n"
                     b"<html><head><title>IP Camera &lt;x&gt;</title></head></html>")
        await writer.drain()

    async with server(http) as port:
        grab = await _banner.grab("127.0.0.1", port, timeout_s=2, greet_s=0.3)
    assert grab.http_status == 200
    assert grab.http_title == "IP Camera &lt;x&gt;"
    assert default_rules().identify(grab.data, port).product == "GoAhead WebServer"


async def test_tls_certificate_is_recorded(tmp_path: os.PathLike[str]) -> None:
    pytest.importorskip("cryptography")
    import datetime
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nas.lan")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("nas.lan")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_file = f"{tmp_path}/c.pem"
    key_file = f"{tmp_path}/k.pem"
    with open(cert_file, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_file, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_file, key_file)

    async def https(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\n\r\n<title>Secure</title>")
        await writer.drain()

    srv = await asyncio.start_server(https, "127.0.0.1", 0, ssl=ctx)
    port = srv.sockets[0].getsockname()[1]
    try:
        # An unknown port: read, then plain HTTP (answered by a TLS alert), then TLS.
        grab = await _banner.grab("127.0.0.1", port, timeout_s=4, greet_s=0.3)
    finally:
        srv.close()
    assert grab.tunnel == "ssl"
    assert grab.tls is not None
    assert grab.tls.subject == "CN=nas.lan" and grab.tls.self_signed is True
    assert grab.tls.sans == ["nas.lan"] and grab.tls.sha256 and len(grab.tls.sha256) == 64
    assert default_rules().identify(grab.data, port).product == "nginx"
