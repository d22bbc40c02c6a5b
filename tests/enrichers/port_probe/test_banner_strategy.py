"""The probe strategy on loopback: the first bytes classified, the fewest probes, one TLS session reused."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from enrichers.port_probe import _banner
from enrichers.port_probe.fingerprint import default_rules
from tests.fakes.tls import self_signed

from .test_hostile import server

NGINX_400 = (b"HTTP/1.1 400 Bad Request\r\nServer: nginx/1.24.0\r\nContent-Type: text/html\r\n\r\n"
             b"<html><head><title>400 The plain HTTP request was sent to HTTPS port</title></head>"
             b"<body><center><h1>400 Bad Request</h1></center><center>The plain HTTP request was sent to "
             b"HTTPS port</center></body></html>")


@pytest.mark.parametrize(("reply", "kind"), [
    (b"\x15\x03\x01\x00\x02\x02\x46", "tls"),
    (NGINX_400, "tls"),
    (b"HTTP/1.1 400 Bad Request\r\nServer: Apache\r\n\r\n<p>You're speaking plain HTTP to an SSL-enabled "
     b"server port.</p>", "tls"),
    (b"-ERR unknown command 'GET', with args beginning with: '/' 'HTTP/1.0' \r\n", "redis"),
    (b"AMQP\x00\x00\x09\x01", "amqp"),
    (b"HTTP/1.0 200 OK\r\n\r\nIt looks like you are trying to access MongoDB over HTTP on the native "
     b"driver port.", "mongodb"),
    (b"ERROR\r\n", "memcached"),
    (b"HTTP/1.1 200 OK\r\nServer: nginx\r\n\r\n", None),
    (b"SSH-2.0-OpenSSH_9.2p1\r\n", None),
])
def test_first_bytes_are_classified(reply: bytes, kind: str | None) -> None:
    assert _banner.classify(reply) == kind


@pytest.mark.parametrize(("port", "steps"), [
    (22, [(False, "greet+http")]),
    (993, [(True, "greet+http")]),
    (443, [(True, "http"), (False, "http")]),
    (80, [(False, "http"), (True, "http")]),
    (9100, [(False, "greeting")]),
    (40000, [(False, "greet+http"), (True, "greet+http")]),
])
def test_plans_are_the_fewest_steps(port: int, steps: list[tuple[bool, str]]) -> None:
    assert _banner.plan(port) == steps


async def test_another_protocols_error_gets_its_own_probe_once() -> None:
    async def redis(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        if line.startswith(b"INFO"):
            writer.write(b"$60\r\n# Server\r\nredis_version:7.2.4\r\nredis_mode:standalone\r\n\r\n")
        else:
            writer.write(b"-ERR unknown command 'GET', with args beginning with: '/' 'HTTP/1.0' \r\n")
        await writer.drain()
        await reader.read(1)

    async with server(redis) as port:
        grab = await _banner.grab("127.0.0.1", port, timeout_s=3, greet_s=0.2)
    assert grab.probe == "redis"
    found = default_rules().identify(grab.data, port)
    assert (found.product, found.version) == ("Redis key-value store", "7.2.4")


async def test_a_wants_tls_page_is_kept_when_tls_fails() -> None:
    async def plain_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(4096)
        if data.startswith(b"GET "):
            writer.write(NGINX_400)
            await writer.drain()

    async with server(plain_only) as port:
        grab = await _banner.grab("127.0.0.1", port, timeout_s=2, greet_s=0.2)
    assert "plain probe answered with TLS" in grab.errors
    assert grab.http_status == 400 and grab.tunnel is None
    assert default_rules().identify(grab.data, port).product == "nginx"


def _tls_server_context(directory: Path) -> ssl.SSLContext:
    cert = self_signed(directory, "mail.lan", hosts=("mail.lan",))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert.cert_file, cert.key_file)
    return ctx


async def test_one_tls_session_reads_the_greeting_inside(tmp_path: Path) -> None:
    handshakes = 0

    async def imaps(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal handshakes
        handshakes += 1
        writer.write(b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] Dovecot (Debian) ready.\r\n")
        await writer.drain()
        await reader.read(1)
        writer.close()

    srv = await asyncio.start_server(imaps, "127.0.0.1", 0, ssl=_tls_server_context(tmp_path))
    port = srv.sockets[0].getsockname()[1]
    try:
        # An unknown port: the plain step hears silence, then a TLS alert; one handshake reads the greeting.
        grab = await _banner.grab("127.0.0.1", port, timeout_s=4, greet_s=0.3)
    finally:
        srv.close()
    assert grab.tunnel == "ssl" and grab.probe == "greet+http"
    assert grab.tls is not None and grab.tls.subject == "CN=mail.lan"
    assert handshakes == 1
    found = default_rules().identify(grab.data, port)
    assert (found.service, found.product) == ("imap", "Dovecot imapd")
