"""The SSDP producer's I/O: multicast search and notification sockets, and the description fetch.

Per interface address one UDP socket sends M-SEARCH to 239.255.255.250:1900
(multicast TTL 1: it never leaves the segment) and receives the unicast
answers; one socket on port 1900 joined to the group on those interfaces
hears the devices' NOTIFY announcements. Datagrams are queued for the stage,
bounded. ``fetch`` reads a description over HTTP (httpx), size- and
time-capped, no redirects.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import httpx

GROUP = "239.255.255.250"
PORT = 1900


class _Queueing(asyncio.DatagramProtocol):
    def __init__(self, queue: asyncio.Queue[tuple[bytes, str]]) -> None:
        self.queue = queue

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait((data[:8192], str(addr[0])))


class Ssdp:
    """SSDP on some interface addresses: search, and a queue of what came back."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self._queue: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue(4096)
        self._senders: list[asyncio.DatagramTransport] = []
        self._listener: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            for address in self.addresses:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(address))
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
                sock.bind((address, 0))
                transport, _ = await loop.create_datagram_endpoint(lambda: _Queueing(self._queue), sock=sock)
                self._senders.append(transport)
            listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            with contextlib.suppress(AttributeError, OSError):
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            listener.bind(("", PORT))
            for address in self.addresses:
                listener.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                                    socket.inet_aton(GROUP) + socket.inet_aton(address))
            self._listener, _ = await loop.create_datagram_endpoint(lambda: _Queueing(self._queue),
                                                                    sock=listener)
        except BaseException:
            self.close()
            raise

    def search(self, message: bytes) -> None:
        for transport in self._senders:
            transport.sendto(message, (GROUP, PORT))

    async def next(self) -> tuple[bytes, str]:
        """The next datagram and its sender's address."""
        return await self._queue.get()

    def close(self) -> None:
        for transport in self._senders:
            transport.close()
        if self._listener is not None:
            self._listener.close()
        self._senders, self._listener = [], None


def open_ssdp(addresses: list[str]) -> Ssdp:
    return Ssdp(addresses)


async def fetch(url: str, *, timeout_s: float, max_bytes: int) -> bytes:
    """GET ``url``: the body, at most ``max_bytes`` (raises httpx.HTTPError, ValueError)."""
    async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False, verify=False,
                                 headers={"User-Agent": "lanscope"}) as client, \
            client.stream("GET", url) as response:
        response.raise_for_status()
        body = b""
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > max_bytes:
                raise ValueError(f"description larger than {max_bytes} bytes")
        return body
