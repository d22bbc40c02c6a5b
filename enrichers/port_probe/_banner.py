"""Banner grabbing: read what a TCP service says, or ask it in its own protocol.

One ``grab()`` per open port, the way modern fingerprinters work: a short
passive read first (servers that speak first - SSH, FTP, SMTP, POP3, IMAP,
MySQL - are identified by what they say), then the fewest probes. The plan is
chosen by port number: client-first services get their protocol's probe
(HTTP, Redis, MQTT, AMQP, PostgreSQL, MongoDB, MSSQL, InfluxDB, memcached);
HTTPS-ish ports get a TLS handshake (certificate recorded) then HTTP over it;
TLS greeting ports (IMAPS, POP3S, SMTPS ...) one handshake whose session is
then read, like an unknown port's TLS step. An unknown port gets one plain
connection (read, then HTTP) and, if that says nothing useful, one TLS
handshake reused for the protocol inside (read, then HTTP). The first bytes
of each reply are classified: TLS records or a "plain HTTP sent to an HTTPS
port" page go to TLS; another protocol's error to our HTTP request (Redis,
AMQP, MongoDB, memcached) gets that protocol's probe, once. Raw
printer ports (9100-9107) are only read, never written to.

Every read has a size cap and the whole grab a deadline: a server that
streams forever, drips a byte at a time, sends a megabyte line or never
answers costs at most ``timeout_s`` and ``cap`` bytes. Replies are bytes;
the fingerprint rules read them as latin-1 and the banner is shown escaped.
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from schemas import TlsCert

from ._tls import TLS, parse_certificate

CAP = 16384                      # bytes read from one reply
IDLE_S = 0.25                    # a reply that pauses this long is complete (unless a probe says more)


@dataclass
class Grab:
    """What one port said."""

    data: bytes = b""            # the document the fingerprint rules read
    shown: bytes = b""           # what PortResult.banner shows (escaped)
    tunnel: str | None = None    # "ssl" when it was read over TLS
    tls: TlsCert | None = None
    http_status: int | None = None
    http_title: str | None = None
    probe: str | None = None     # "greeting", "http", "redis" ...
    errors: list[str] = field(default_factory=list)


Done = Callable[[bytes], bool]


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, deadline: float) -> None:
        self.reader = reader
        self.writer = writer
        self.deadline = deadline

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        async with asyncio.timeout(max(0.01, self.remaining())):
            await self.writer.drain()

    async def read(self, *, first_wait: float, done: Done | None = None, cap: int = CAP,
                   idle: float = IDLE_S) -> bytes:
        """Read up to ``cap`` bytes: wait ``first_wait`` for the first, then until ``done``,
        EOF, an idle gap, the cap or the deadline."""
        buf = bytearray()
        wait = first_wait
        while len(buf) < cap:
            budget = min(wait, self.remaining())
            if budget <= 0:
                break
            try:
                async with asyncio.timeout(budget):
                    chunk = await self.reader.read(cap - len(buf))
            except TimeoutError:
                break
            except (ConnectionError, OSError, ssl.SSLError):
                break
            if not chunk:
                break
            buf += chunk
            if done is not None and done(bytes(buf)):
                break
            wait = idle
        return bytes(buf[:cap])

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:
            pass


async def _open(ip: str, port: int, deadline: float, *, tls: bool) -> tuple[_Conn, TlsCert | None]:
    budget = max(0.05, deadline - time.monotonic())
    async with asyncio.timeout(budget):
        reader, writer = await asyncio.open_connection(
            ip, port, ssl=TLS if tls else None, server_hostname="" if tls else None,
            ssl_handshake_timeout=budget if tls else None, limit=CAP * 2)
    cert = None
    if tls:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        cert = parse_certificate(der) if der else TlsCert()
    return _Conn(reader, writer, deadline), cert


# --------------------------------------------------------------------------
# Probes: each takes an open connection and returns the reply bytes.


def _http_request(ip: str, path: str = "/") -> bytes:
    host = f"[{ip}]" if ":" in ip else ip
    return (f"GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: lanscope\r\n"
            f"Accept: */*\r\nConnection: close\r\n\r\n").encode()


def _http_done(buf: bytes) -> bool:
    _head, sep, body = buf.partition(b"\r\n\r\n")
    if not sep:
        return False
    return b"</title>" in body.lower() or len(body) > 4096


async def _probe_http(conn: _Conn, ip: str, path: str = "/") -> bytes:
    await conn.send(_http_request(ip, path))
    return await conn.read(first_wait=conn.remaining(), done=_http_done, idle=0.5)


async def _probe_redis(conn: _Conn, ip: str) -> bytes:
    await conn.send(b"INFO server\r\n")
    return await conn.read(first_wait=conn.remaining(),
                           done=lambda b: (b.startswith(b"-") and b.endswith(b"\r\n"))
                           or (b"redis_version" in b and b.endswith(b"\r\n\r\n")))


def _mqtt_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def _mqtt_packet(kind: int, body: bytes) -> bytes:
    length = len(body)
    encoded = bytearray()
    while True:
        byte = length % 128
        length //= 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            break
    return bytes([kind]) + bytes(encoded) + body


async def _probe_mqtt(conn: _Conn, ip: str) -> bytes:
    client_id = f"lanscope-{os.getpid() % 100000}"
    connect = _mqtt_string("MQTT") + b"\x04\x02\x00\x0a" + _mqtt_string(client_id)
    await conn.send(_mqtt_packet(0x10, connect))
    reply = await conn.read(first_wait=conn.remaining(), done=lambda b: len(b) >= 4)
    if reply[:1] == b"\x20" and len(reply) >= 4 and reply[3] == 0:
        # Accepted: ask for the broker's version ($SYS topics are retained by Mosquitto).
        await conn.send(_mqtt_packet(0x82, b"\x00\x01" + _mqtt_string("$SYS/broker/version") + b"\x00"))
        reply += await conn.read(first_wait=min(1.0, conn.remaining()),
                                 done=lambda b: b"version" in b and len(b) > 12, idle=0.5)
        try:
            await conn.send(b"\xe0\x00")  # DISCONNECT
        except (OSError, TimeoutError):
            pass
    return reply


def _amqp_done(buf: bytes) -> bool:
    if buf.startswith(b"AMQP"):
        return len(buf) >= 8
    if len(buf) >= 7:
        size = struct.unpack("!I", buf[3:7])[0]
        return len(buf) >= 8 + size
    return False


async def _probe_amqp(conn: _Conn, ip: str) -> bytes:
    await conn.send(b"AMQP\x00\x00\x09\x01")
    return await conn.read(first_wait=conn.remaining(), done=_amqp_done)


def _pg_done(buf: bytes) -> bool:
    if not buf:
        return False
    if buf[:1] == b"E":
        return buf.endswith(b"\x00\x00")
    if buf[:1] == b"R" and len(buf) >= 9 and buf[5:9] != b"\x00\x00\x00\x00":
        return len(buf) >= 1 + struct.unpack("!I", buf[1:5])[0]
    return b"Z\x00\x00\x00\x05" in buf


def _pg_startup() -> bytes:
    params = b"user\x00postgres\x00database\x00postgres\x00application_name\x00lanscope\x00\x00"
    body = struct.pack("!I", 196608) + params
    return struct.pack("!I", len(body) + 4) + body


async def _probe_postgres(conn: _Conn, ip: str) -> bytes:
    await conn.send(struct.pack("!II", 8, 80877103))           # SSLRequest
    answer = await conn.read(first_wait=conn.remaining(), done=lambda b: len(b) >= 1)
    if answer[:1] != b"N":
        return b""          # "S" (TLS wanted) or nothing: the next step starts up without SSLRequest
    await conn.send(_pg_startup())
    reply = await conn.read(first_wait=conn.remaining(), done=_pg_done)
    try:
        await conn.send(b"X\x00\x00\x00\x04")                  # Terminate
    except (OSError, TimeoutError):
        pass
    return b"PG-SSL:N\n" + reply


async def _probe_postgres_plain(conn: _Conn, ip: str) -> bytes:
    await conn.send(_pg_startup())
    return await conn.read(first_wait=conn.remaining(), done=_pg_done)


def _bson_doc(items: list[tuple[int, str, bytes]]) -> bytes:
    body = b"".join(bytes([kind]) + name.encode() + b"\x00" + value for kind, name, value in items)
    return struct.pack("<i", len(body) + 5) + body + b"\x00"


def _bson_str(text: str) -> bytes:
    raw = text.encode() + b"\x00"
    return struct.pack("<i", len(raw)) + raw


def _mongo_done(buf: bytes) -> bool:
    return len(buf) >= 4 and len(buf) >= struct.unpack("<i", buf[:4])[0]


async def _probe_mongodb(conn: _Conn, ip: str) -> bytes:
    doc = _bson_doc([(0x10, "buildInfo", struct.pack("<i", 1)), (0x02, "$db", _bson_str("admin"))])
    body = struct.pack("<I", 0) + b"\x00" + doc                # OP_MSG flags, section kind 0
    header = struct.pack("<iiii", 16 + len(body), 1, 0, 2013)
    await conn.send(header + body)
    return await conn.read(first_wait=conn.remaining(), done=_mongo_done)


def _mssql_prelogin() -> bytes:
    options = [(0x00, b"\x00\x00\x00\x00\x00\x00"), (0x01, b"\x02"), (0x02, b"\x00"), (0x03, b"\x00" * 4)]
    offset = 5 * len(options) + 1
    header = b""
    data = b""
    for token, value in options:
        header += struct.pack("!BHH", token, offset + len(data), len(value))
        data += value
    payload = header + b"\xff" + data
    return struct.pack("!BBHHBB", 0x12, 0x01, 8 + len(payload), 0, 0, 0) + payload


def _mssql_render(reply: bytes) -> bytes:
    """Turn the VERSION option of a TDS prelogin reply into a line the rules read."""
    if len(reply) < 8 or reply[0] != 0x04:
        return reply
    payload = reply[8:]
    i = 0
    while i + 5 <= len(payload) and payload[i] != 0xFF:
        token, offset, length = struct.unpack("!BHH", payload[i:i + 5])
        if token == 0x00 and length >= 6 and offset + 6 <= len(payload):
            major, minor, build, sub = struct.unpack("!BBHH", payload[offset:offset + 6])
            return f"MSSQL-PRELOGIN version={major}.{minor}.{build}.{sub}\n".encode() + reply
        i += 5
    return reply


async def _probe_mssql(conn: _Conn, ip: str) -> bytes:
    await conn.send(_mssql_prelogin())
    reply = await conn.read(first_wait=conn.remaining(),
                            done=lambda b: len(b) >= 4 and len(b) >= struct.unpack("!H", b[2:4])[0])
    return _mssql_render(reply)


async def _probe_memcached(conn: _Conn, ip: str) -> bytes:
    await conn.send(b"version\r\n")
    return await conn.read(first_wait=conn.remaining(), done=lambda b: b.endswith(b"\r\n"))


async def _probe_dns(conn: _Conn, ip: str) -> bytes:
    from ._udp import DNS_QUERY, render

    await conn.send(struct.pack("!H", len(DNS_QUERY)) + DNS_QUERY)
    reply = await conn.read(first_wait=conn.remaining(),
                            done=lambda b: len(b) >= 2 and len(b) >= 2 + struct.unpack("!H", b[:2])[0])
    return render(53, reply[2:]) if len(reply) > 2 else b""


async def _probe_influx(conn: _Conn, ip: str) -> bytes:
    return await _probe_http(conn, ip, "/ping")


Probe = Callable[[_Conn, str], Any]
PROBES: dict[str, Probe] = {
    "http": _probe_http, "redis": _probe_redis, "mqtt": _probe_mqtt, "amqp": _probe_amqp,
    "postgres": _probe_postgres, "mongodb": _probe_mongodb, "mssql": _probe_mssql,
    "memcached": _probe_memcached, "influx": _probe_influx, "postgres_plain": _probe_postgres_plain,
    "dns": _probe_dns,
}

SERVER_FIRST = {21, 22, 23, 25, 110, 143, 220, 587, 2222, 3306, 5900, 5901, 9100, 9101, 9102}
HTTP_PORTS = {80, 81, 591, 631, 3000, 5000, 5357, 7080, 8000, 8008, 8080, 8081, 8088, 8888, 9000,
              9090, 9200, 10000, 16992}
HTTPS_PORTS = {443, 4443, 5001, 5986, 8006, 8007, 8443, 9443, 10443}
TLS_GREETING_PORTS = {465, 636, 990, 992, 993, 995}
PORT_PROBES = {6379: "redis", 1883: "mqtt", 5672: "amqp", 5432: "postgres", 27017: "mongodb",
               1433: "mssql", 11211: "memcached", 8086: "influx", 53: "dns"}
TLS_PORT_PROBES = {8883: "mqtt", 5671: "amqp", 6380: "redis"}
NEVER_WRITE = set(range(9100, 9108))     # raw printing: anything sent gets printed
TLS_GREET_S = 0.5                        # inside TLS a server-first protocol greets right after the handshake


def plan(port: int) -> list[tuple[bool, str]]:
    """The (tls, probe) steps for a port; "greeting" = read only, "greet+http" = a short passive
    read, then HTTP on the same connection when the server said nothing."""
    if port in NEVER_WRITE:
        return [(False, "greeting")]
    if port == 5432:
        return [(False, "postgres"), (False, "postgres_plain")]
    if port in PORT_PROBES:
        return [(False, PORT_PROBES[port])]
    if port in TLS_PORT_PROBES:
        return [(True, TLS_PORT_PROBES[port]), (False, TLS_PORT_PROBES[port])]
    if port in TLS_GREETING_PORTS:
        return [(True, "greet+http")]
    if port in HTTPS_PORTS:
        return [(True, "http"), (False, "http")]
    if port in HTTP_PORTS:
        return [(False, "http"), (True, "http")]
    if port in SERVER_FIRST:
        return [(False, "greet+http")]
    # Unknown: one plain connection (read, then HTTP), then one TLS handshake whose session is
    # reused for the protocol inside (read, then HTTP).
    return [(False, "greet+http"), (True, "greet+http")]


# What a reply's first bytes say about the port, when it is not the answer yet:
# the port wants TLS (a TLS record, or a web server's "you spoke HTTP to my HTTPS port" page) ...
_WANTS_TLS = re.compile(
    rb"^HTTP/1\.[01] 400 [^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\n.{0,600}?"
    rb"(?:plain HTTP request was sent to HTTPS port|speaking plain HTTP to an SSL-enabled server"
    rb"|Client sent an HTTP request to an HTTPS server|host and port requires TLS)",
    re.S | re.I)
# ... or the reply to our HTTP request is another protocol's error, whose own probe asks for more.
_FOLLOW_UP: list[tuple[re.Pattern[bytes], str]] = [
    (re.compile(rb"^-ERR (?:unknown command|wrong number of arguments)"), "redis"),
    (re.compile(rb"^AMQP\x00"), "amqp"),
    (re.compile(rb"trying to access MongoDB over HTTP"), "mongodb"),
    (re.compile(rb"^ERROR\r\n"), "memcached"),
]


def classify(data: bytes) -> str | None:
    """"tls" when the reply says the port speaks TLS, a probe name when another protocol answered
    our HTTP request and its own probe will say more, else None (the reply is the answer)."""
    if _looks_like_tls(data) or _WANTS_TLS.match(data[:2048]):
        return "tls"
    for pattern, probe in _FOLLOW_UP:
        if pattern.search(data[:2048]):
            return probe
    return None


_TITLE = re.compile(rb"(?is)<title[^>]*>(.{0,300}?)</title>")


def _http_facts(grab: Grab, data: bytes) -> None:
    m = re.match(rb"HTTP/\d(?:\.\d)? (\d{3})", data)
    if not m:
        return
    grab.http_status = int(m.group(1))
    title = _TITLE.search(data)
    if title:
        text = title.group(1).decode("utf-8", "replace")
        text = re.sub(r"\s+", " ", "".join(c if c.isprintable() else " " for c in text)).strip()
        grab.http_title = text[:200] or None
    head, _, _ = data.partition(b"\r\n\r\n")
    grab.shown = head[:1024]


def _looks_like_tls(data: bytes) -> bool:
    return len(data) >= 3 and data[0] in (0x15, 0x16) and data[1] == 0x03


async def grab(ip: str, port: int, *, timeout_s: float = 3.0, greet_s: float = 1.0) -> Grab:
    """Grab one port's banner; never raises (errors are recorded in ``Grab.errors``).

    The first bytes of every reply are classified (``classify``): a port that
    answers in TLS, or says it wants TLS, gets the plan's TLS step; another
    protocol answering our HTTP request gets that protocol's own probe, once.
    A reply that only says "TLS wanted" is kept as the answer if TLS fails.
    """
    result = Grab()
    deadline = time.monotonic() + timeout_s
    steps = list(plan(port))
    fallback: tuple[bool, str, bytes] | None = None
    followed = False
    i = 0
    while i < len(steps):
        tls, probe = steps[i]
        i += 1
        if time.monotonic() >= deadline:
            result.errors.append("deadline")
            break
        try:
            data = await _step(ip, port, tls, probe, deadline, greet_s, result)
        except (OSError, TimeoutError, ssl.SSLError, EOFError, asyncio.IncompleteReadError) as exc:
            result.errors.append(f"{'tls ' if tls else ''}{probe}: {type(exc).__name__}")
            continue
        if not data:
            continue
        kind = classify(data)
        if kind == "tls" and not tls and any(t for t, _ in steps[i:]):
            result.errors.append("plain probe answered with TLS")
            if not _looks_like_tls(data):
                fallback = (tls, probe, data)
            continue
        if kind not in (None, "tls") and not followed and port not in PORT_PROBES:
            followed = True                  # one follow-up at most: the fewest probes
            steps.insert(i, (tls, kind))
            fallback = (tls, probe, data)
            continue
        _keep(result, tls, probe, data)
        break
    if not result.data and fallback is not None:
        _keep(result, *fallback)
    if not result.data and result.tls is not None:
        result.tunnel = "ssl"
    return result


def _keep(result: Grab, tls: bool, probe: str, data: bytes) -> None:
    result.data = data
    result.probe = probe
    if not result.shown:
        result.shown = data[:1024]
    if tls:
        result.tunnel = "ssl"
    _http_facts(result, data)


async def _step(ip: str, port: int, tls: bool, probe: str, deadline: float, greet_s: float,
                result: Grab) -> bytes:
    conn, cert = await _open(ip, port, deadline, tls=tls)
    if cert is not None:
        result.tls = cert
    try:
        if probe in ("greeting", "greet+http"):
            wait = min(greet_s, TLS_GREET_S) if tls else greet_s
            data = await conn.read(first_wait=min(wait, conn.remaining()))
            if data or probe == "greeting":
                if data:
                    result.shown = data[:1024]
                return data
            return await _probe_http(conn, ip)
        return bytes(await PROBES[probe](conn, ip))
    finally:
        conn.close()
