"""The ping sweep's I/O: raw ICMP/ICMPv6 echo (no ``ping`` binary) and TCP connect pings.

Echo requests carry one identifier per sweep and the target's index as the
sequence number; a receiver thread matches replies by identifier and source
address and reads the TTL (IPv4 header) or hop limit (IPV6_HOPLIMIT ancillary
data). Raw sockets need CAP_NET_RAW; without it the kernel's unprivileged
ICMP "ping sockets" are used where net.ipv4.ping_group_range allows them.
Blocking: the stage runs ``icmp_sweep`` in a thread. ``tcp_ping`` is native
asyncio.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from lanscope.net.rawsweep import (
    SO_TIMESTAMPNS,
    Reply,
    ReplyBook,
    inet_checksum,
    kernel_timestamp,
    run_rounds,
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_PAYLOAD = b"lanscope-ping\0\0\0"   # 16 bytes, like a small ping
IPV6_HOPLIMIT = 52                   # ancillary data types the socket module does not export
IP_RECVTTL, IP_TTL = 12, 2
_SO_SNDBUFFORCE = 32


def _echo_reply(rtt_ms: float, *, ttl: int | None) -> Reply:
    return Reply(rtt_ms=rtt_ms, ttl=ttl)


def _echo(version: int, ident: int, seq: int) -> bytes:
    kind = 8 if version == 4 else 128
    header = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
    if version == 6:
        return header + _PAYLOAD            # the kernel fills the ICMPv6 checksum
    checksum = inet_checksum(header + _PAYLOAD)
    return struct.pack("!BBHHH", kind, 0, checksum, ident, seq) + _PAYLOAD


def _open(version: int) -> tuple[socket.socket, bool]:
    """(socket, raw?) for ICMP echo: raw when permitted, else a datagram ping socket."""
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    proto = socket.IPPROTO_ICMP if version == 4 else socket.IPPROTO_ICMPV6
    try:
        return socket.socket(family, socket.SOCK_RAW, proto), True
    except PermissionError:
        return socket.socket(family, socket.SOCK_DGRAM, proto), False


def icmp_sweep(targets: Sequence[IPAddress], *, retries: int = 1, timeout_ms: int = 1000,
               quiet_ms: int = 100, packets_per_sec: int = 0,
               progress: Callable[[int, int], None] | None = None) -> dict[IPAddress, Reply]:
    """Echo-request every target; {address: Reply(rtt_ms, ttl)} for those that answered."""
    replies: dict[IPAddress, Reply] = {}
    for version in (4, 6):
        group = [t for t in targets if t.version == version]
        if group:
            replies.update(_sweep_family(version, group, retries=retries, timeout_ms=timeout_ms,
                                         quiet_ms=quiet_ms, packets_per_sec=packets_per_sec,
                                         progress=progress))
    return replies


def _sweep_family(version: int, targets: Sequence[IPAddress], *, retries: int, timeout_ms: int,
                  quiet_ms: int, packets_per_sec: int,
                  progress: Callable[[int, int], None] | None) -> dict[IPAddress, Reply]:
    sock, raw = _open(version)
    ident = (os.getpid() ^ threading.get_ident() ^ time.monotonic_ns()) & 0xFFFF
    packets = {t: _echo(version, ident, i & 0xFFFF) for i, t in enumerate(targets)}
    book: ReplyBook[IPAddress] = ReplyBook(list(packets))
    stop = threading.Event()
    if not raw:
        # Ping sockets rewrite the identifier to their port: learn it.
        sock.bind(("", 0) if version == 4 else ("::", 0))
        ident = sock.getsockname()[1]
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        # Echo requests to on-link addresses wait in the kernel until ARP resolves them and
        # count against the send buffer meanwhile: a small buffer blocks the send loop for
        # the 3 s an unanswered ARP takes to fail. Root may exceed wmem_max (SO_SNDBUFFORCE).
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_SNDBUFFORCE, 1 << 24)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        if version == 6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        sock.settimeout(0.01)

        def receive() -> None:
            while not stop.is_set():
                try:
                    data, ancillary, _flags, source = sock.recvmsg(2048, 512)
                except TimeoutError:
                    continue
                except OSError:
                    return
                ttl = None
                for level, kind, value in ancillary:
                    if (level, kind) in ((socket.IPPROTO_IPV6, IPV6_HOPLIMIT),
                                         (socket.IPPROTO_IP, IP_TTL)) and len(value) >= 4:
                        ttl = struct.unpack("i", value[:4])[0]
                if version == 4 and raw:
                    if len(data) < 20:
                        continue
                    header = (data[0] & 0x0F) * 4
                    ttl = data[8]
                    data = data[header:]
                if len(data) < 8:
                    continue
                kind, _code, _sum, got_ident, _seq = struct.unpack("!BBHHH", data[:8])
                if kind != (0 if version == 4 else 129) or (raw and got_ident != ident):
                    continue
                try:
                    address = ipaddress.ip_address(source[0].split("%", 1)[0])
                except ValueError:
                    continue
                book.answer(address, functools.partial(_echo_reply, ttl=ttl),
                            kernel_timestamp(ancillary))

        thread = threading.Thread(target=receive, name=f"icmp{version}-recv", daemon=True)
        thread.start()

        def send(target: IPAddress) -> None:
            for _ in range(50):
                try:
                    sock.sendto(packets[target], (str(target), 0))
                    return
                except TimeoutError:
                    continue                    # the send buffer is full: the socket timeout waited
                except OSError as exc:
                    if exc.errno in (errno.ENOBUFS, errno.EAGAIN):
                        time.sleep(0.0005)      # a full queue: wait, do not drop the probe
                        continue
                    # EHOSTUNREACH/ENETUNREACH/EACCES (broadcast): this target cannot be pinged.
                    return

        run_rounds(list(packets), send, book, retries=retries, timeout_s=timeout_ms / 1000,
                   quiet_s=quiet_ms / 1000, packets_per_sec=packets_per_sec, progress=progress)
        stop.set()
        thread.join()
    finally:
        stop.set()
        sock.close()
    return dict(book.replies)


async def icmp_sweep_async(targets: Sequence[IPAddress], **options: Any) -> dict[IPAddress, Reply]:
    """icmp_sweep off the event loop."""
    return await asyncio.to_thread(icmp_sweep, list(targets), **options)


async def tcp_connect(address: IPAddress, port: int, timeout_ms: int) -> tuple[str, float] | None:
    """One TCP ping: ("syn-ack"|"rst", rtt_ms) when the host answered, None when silent.

    A refused connection is an answer too: the host sent a RST, so it is up (nmap -PS).
    """
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    # No TIME_WAIT and no data: an RST closes the probe connection at once.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    loop = asyncio.get_running_loop()
    start = time.monotonic()
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (str(address), port)), timeout_ms / 1000)
        return "syn-ack", (time.monotonic() - start) * 1000
    except ConnectionRefusedError:
        return "rst", (time.monotonic() - start) * 1000
    except (TimeoutError, OSError):
        return None
    finally:
        sock.close()
