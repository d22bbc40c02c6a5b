"""The passive listener's one I/O primitive: an AF_PACKET tap on some interfaces.

One raw socket per interface, non-blocking, read from the event loop
(``add_reader``: no thread). A classic-BPF filter in the kernel passes only
what the parser reads (ARP; IPv4 UDP to or from port 67; ICMPv6 router and
neighbour solicitations and advertisements), so ordinary traffic never
reaches Python. Frames this machine sends (``PACKET_OUTGOING``) are skipped:
the ARP sweep's own requests are no sighting. Broadcasts and multicasts need
no promiscuous mode; ``promiscuous`` adds frames addressed to other hosts.
The queue is bounded: when the stage falls behind, frames are dropped and
counted instead of growing memory. Needs CAP_NET_RAW.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

from lanscope.net.bpf import Instruction, attach_filter

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_OUTGOING = 4
_SNAPLEN = 1600


def bpf_program() -> list[Instruction]:
    """Classic BPF: ARP | IPv4 UDP from or to port 67, unfragmented | ICMPv6 types 133-136."""
    accept, drop = 18, 19

    def to(target: int, pc: int) -> int:     # a jump offset: relative to the next instruction
        return target - pc - 1

    return [
        (0x28, 0, 0, 12),                        # 0  ldh [12]             ethertype
        (0x15, to(accept, 1), 0, 0x0806),        # 1  ARP
        (0x15, 0, to(12, 2), 0x0800),            # 2  IPv4, else IPv6 at 12
        (0x30, 0, 0, 23),                        # 3  ldb [23]             IP protocol
        (0x15, 0, to(drop, 4), 17),              # 4  UDP
        (0x28, 0, 0, 20),                        # 5  ldh [20]             flags + fragment offset
        (0x45, to(drop, 6), 0, 0x1FFF),          # 6  a fragment
        (0xB1, 0, 0, 14),                        # 7  ldxb 4*([14]&0xf)    IP header length
        (0x48, 0, 0, 14),                        # 8  ldh [x+14]           UDP source port
        (0x15, to(accept, 9), 0, 67),            # 9  from a DHCP server
        (0x48, 0, 0, 16),                        # 10 ldh [x+16]           UDP destination port
        (0x15, to(accept, 11), to(drop, 11), 67),  # 11 to a DHCP server
        (0x15, 0, to(drop, 12), 0x86DD),         # 12 IPv6
        (0x30, 0, 0, 20),                        # 13 ldb [20]             next header
        (0x15, 0, to(drop, 14), 58),             # 14 ICMPv6
        (0x30, 0, 0, 54),                        # 15 ldb [54]             ICMPv6 type
        (0x35, 0, to(drop, 16), 133),            # 16 >= 133 (router solicitation)
        (0x25, to(drop, 17), 0, 136),            # 17 <= 136 (neighbour advertisement)
        (0x06, 0, 0, _SNAPLEN),                  # 18 accept
        (0x06, 0, 0, 0),                         # 19 drop
    ]


class Tap:
    """Frames from AF_PACKET sockets, queued by the event loop as they arrive."""

    def __init__(self, interfaces: list[str], *, promiscuous: bool = False, max_queued: int = 4096) -> None:
        self.dropped = 0
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(max_queued)
        self._loop = asyncio.get_running_loop()
        self._sockets: list[socket.socket] = []
        try:
            for name in interfaces:
                self._sockets.append(self._open(name, promiscuous))
        except BaseException:
            self.close()
            raise

    def _open(self, name: str, promiscuous: bool) -> socket.socket:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            attach_filter(sock, bpf_program())
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
            sock.bind((name, ETH_P_ALL))
            if promiscuous:
                index = socket.if_nametoindex(name)
                mreq = struct.pack("iHH8s", index, PACKET_MR_PROMISC, 0, b"")
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            sock.setblocking(False)
            self._loop.add_reader(sock.fileno(), self._drain, sock, name)
        except BaseException:
            sock.close()
            raise
        return sock

    def _drain(self, sock: socket.socket, name: str) -> None:
        for _ in range(256):       # then let the loop run other work
            try:
                frame, address = sock.recvfrom(_SNAPLEN)
            except OSError:        # BlockingIOError (nothing left) included
                return
            if address[2] == PACKET_OUTGOING:
                continue
            try:
                self._queue.put_nowait((name, frame))
            except asyncio.QueueFull:
                self.dropped += 1

    async def next(self) -> tuple[str, bytes]:
        """The next frame (interface, bytes), waiting for it."""
        return await self._queue.get()

    def pending(self) -> list[tuple[str, bytes]]:
        """Every frame already queued."""
        out = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                return out

    def close(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets = []


def open_tap(interfaces: list[str], promiscuous: bool) -> Tap:
    """A Tap on ``interfaces`` (call it in the event loop that will read it)."""
    return Tap(interfaces, promiscuous=promiscuous)
