"""The ARP sweep's one I/O primitive: raw AF_PACKET requests and a filtered reply socket.

Frames are built once; the send loop only calls ``send``. Replies are read on
a second socket whose classic-BPF filter passes only ARP replies addressed to
our IP, so a /16 sweep does not drown the receiver in its own requests.
Needs CAP_NET_RAW. Blocking: the stage calls ``arp_sweep`` through
``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lanscope.net.bpf import Instruction, attach_filter
from lanscope.net.rawsweep import SO_TIMESTAMPNS, Reply, ReplyBook, kernel_timestamp, run_rounds

ETH_P_ARP = 0x0806
SOL_PACKET = 263
PACKET_STATISTICS = 6
_BROADCAST = b"\xff" * 6


def _arp_reply(rtt_ms: float, *, mac: str, interface: str) -> Reply:
    return Reply(rtt_ms=rtt_ms, mac=mac, interface=interface)


def _bpf_arp_replies_to(ip: int) -> list[Instruction]:
    """Classic BPF for: ethertype ARP, opcode 2 (reply), target protocol address == ip."""
    return [
        (0x28, 0, 0, 12),          # ldh [12]         ethertype
        (0x15, 0, 5, ETH_P_ARP),   # jne ARP -> drop
        (0x28, 0, 0, 20),          # ldh [20]         ARP opcode
        (0x15, 0, 3, 2),           # jne reply -> drop
        (0x20, 0, 0, 38),          # ld [38]          target protocol address
        (0x15, 0, 1, ip),          # jne our ip -> drop
        (0x06, 0, 0, 0xFFFF),      # accept
        (0x06, 0, 0, 0),           # drop
    ]


_send_trouble = [0]     # sends that hit a full queue in this sweep (a loss signal)


def _send_frame(sock: socket.socket, frame: bytes) -> None:
    for _ in range(50):
        try:
            sock.send(frame)
            return
        except OSError as exc:
            # A full device queue: back off briefly instead of losing the probe.
            if exc.errno not in (errno.ENOBUFS, errno.EAGAIN):
                raise
            _send_trouble[0] += 1
            time.sleep(0.0005)


def arp_sweep(interface: str, src_mac: str, src_ip: int, targets: Sequence[int], *, retries: int = 1,
              timeout_ms: int = 800, quiet_ms: int = 50, packets_per_sec: int = 0,
              retry_max_silent: int = 4096, unicast: Mapping[int, str] | None = None,
              progress: Callable[[int, int], None] | None = None) -> dict[int, Reply]:
    """ARP-request every target on ``interface``; return {ip: Reply(mac, rtt)} of the repliers.

    Silent targets are re-sent to ``retries`` times when there are at most
    ``retry_max_silent`` of them, or when the first round shows loss (the reply
    socket dropped frames, or a send had to be retried). ``unicast`` maps targets
    to the MAC their request goes to instead of the broadcast address (a
    presence check of a known host: the way the kernel re-checks a STALE entry)."""
    mac = bytes.fromhex(src_mac.replace(":", ""))
    spa = src_ip.to_bytes(4, "big")
    # Source MAC + ARP header up to the target protocol address (request, tha zero).
    body = (mac + struct.pack("!H", ETH_P_ARP)
            + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + spa + b"\0" * 6)
    dst = {ip: bytes.fromhex(m.replace(":", "")) for ip, m in (unicast or {}).items()}
    frames = {ip: dst.get(ip, _BROADCAST) + body + ip.to_bytes(4, "big") for ip in targets}
    book: ReplyBook[int] = ReplyBook(list(frames))
    receiver = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    sender = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    stop = threading.Event()
    try:
        attach_filter(receiver, _bpf_arp_replies_to(src_ip))
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        receiver.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        receiver.bind((interface, ETH_P_ARP))
        receiver.settimeout(0.01)   # how fast the receiver notices the end
        sender.bind((interface, 0))

        def receive() -> None:
            recvmsg = receiver.recvmsg
            while not stop.is_set():
                try:
                    frame, ancillary, _flags, _address = recvmsg(128, 64)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if len(frame) < 42:
                    continue
                sender_ip = int.from_bytes(frame[28:32], "big")
                sha = frame[22:28].hex(":")
                book.answer(sender_ip, functools.partial(_arp_reply, mac=sha, interface=interface),
                            kernel_timestamp(ancillary))

        thread = threading.Thread(target=receive, name=f"arp-recv-{interface}", daemon=True)
        thread.start()
        def should_retry(silent: int) -> bool:
            _packets, drops = struct.unpack("II", receiver.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
            return silent <= retry_max_silent or drops > 0 or _send_trouble[0] > 0

        _send_trouble[0] = 0
        run_rounds(list(frames), lambda ip: _send_frame(sender, frames[ip]), book, retries=retries,
                   timeout_s=timeout_ms / 1000, quiet_s=quiet_ms / 1000,
                   packets_per_sec=packets_per_sec, progress=progress, should_retry=should_retry)
        stop.set()
        thread.join()
    finally:
        stop.set()
        receiver.close()
        sender.close()
    return dict(book.replies)


async def arp_sweep_async(interface: str, src_mac: str, src_ip: int, targets: Sequence[int],
                          **options: Any) -> dict[int, Reply]:
    """arp_sweep off the event loop (it blocks for the whole sweep)."""
    return await asyncio.to_thread(arp_sweep, interface, src_mac, src_ip, targets, **options)
