"""The send/collect loop shared by the raw-socket sweeps (ARP, ICMP echo).

One round sends a pre-built probe to every target in a tight loop while a
receiver thread records the first reply per target. The round ends early:
once every target answered, or when no reply arrived for ``quiet`` seconds
after the last one (and at least ``quiet`` after the last send), and never
later than ``timeout`` after the last send. Further rounds re-send only to the
targets that stayed silent. Blocking: run it in a thread.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


SO_TIMESTAMPNS = 35                        # also the SCM_ type of the ancillary data


def kernel_timestamp(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    """The receive time (seconds since the epoch) from SO_TIMESTAMPNS ancillary data."""
    for level, kind, value in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
            seconds, nanoseconds = struct.unpack("qq", value[:16])
            return seconds + nanoseconds / 1e9
    return None


@dataclass(frozen=True)
class Reply:
    """The first answer of one target."""

    rtt_ms: float
    mac: str | None = None                 # ARP: the sender's hardware address
    ttl: int | None = None                 # ICMP: the reply's TTL / hop limit
    interface: str | None = None


class ReplyBook(Generic[K]):
    """First reply per wanted target, written by a receiver thread, read after the rounds."""

    def __init__(self, wanted: Sequence[K]) -> None:
        self.wanted = set(wanted)
        self.replies: dict[K, Reply] = {}
        self.sent_at: dict[K, float] = {}
        self.last_reply = 0.0
        self._lock = threading.Lock()
        self._changed = threading.Event()

    def sent(self, key: K) -> None:
        # Wall-clock seconds, to compare with the kernel's receive timestamps (SO_TIMESTAMPNS).
        self.sent_at[key] = time.time()

    def answer(self, key: K, make: Callable[[float], Reply], received_at: float | None = None) -> None:
        """Record a reply for ``key`` (ignored when unwanted or already answered).

        ``received_at`` is the kernel's receive timestamp when the socket gives one: the
        receiver thread may run late behind the sender (the GIL), the kernel does not."""
        now = time.time() if received_at is None else received_at
        if key not in self.wanted or key in self.replies:
            return
        sent = self.sent_at.get(key)
        if sent is None:                   # a reply to an earlier sweep, or unsolicited
            return
        with self._lock:
            self.replies[key] = make(max(now - sent, 0.0) * 1000.0)
            self.last_reply = time.monotonic()
        self._changed.set()

    def wait_change(self, timeout: float) -> None:
        self._changed.wait(max(timeout, 0.0))
        self._changed.clear()


def run_rounds(keys: Sequence[K], send: Callable[[K], None], book: ReplyBook[K], *, retries: int,
               timeout_s: float, quiet_s: float, packets_per_sec: int = 0,
               progress: Callable[[int, int], None] | None = None,
               should_retry: Callable[[int], bool] | None = None) -> None:
    """Send to every key, then re-send ``retries`` times to the silent ones; adaptive waits.

    ``should_retry(silent_count)`` may veto a retry round (a sparse /16 whose first round
    showed no sign of loss: re-sending 65,000 probes would double the sweep)."""
    pending = list(keys)
    total = len(pending) * (retries + 1)
    done = 0
    for _round in range(retries + 1):
        if not pending:
            break
        done = _send_all(pending, send, book, packets_per_sec, progress, done, total)
        _wait_round(book, timeout_s, quiet_s)
        pending = [k for k in pending if k not in book.replies]
        if pending and should_retry is not None and not should_retry(len(pending)):
            break
    if progress:
        progress(total, total)


def _send_all(keys: Sequence[K], send: Callable[[K], None], book: ReplyBook[K], packets_per_sec: int,
              progress: Callable[[int, int], None] | None, done: int, total: int) -> int:
    sent = book.sent
    gap = 1.0 / packets_per_sec if packets_per_sec > 0 else 0.0
    start = time.monotonic()
    step = max(256, len(keys) // 100)
    for i, key in enumerate(keys):
        if gap and i % 16 == 0:
            # Pace in bursts of 16: sleeping per packet costs more than the packet.
            ahead = start + i * gap - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        sent(key)
        send(key)
        if progress and i % step == 0:
            progress(done + i, total)
    return done + len(keys)


def _wait_round(book: ReplyBook[K], timeout_s: float, quiet_s: float) -> None:
    sent_end = time.monotonic()
    hard = sent_end + timeout_s
    while True:
        now = time.monotonic()
        if len(book.replies) >= len(book.wanted) or now >= hard:
            return
        quiet_until = max(sent_end, book.last_reply) + quiet_s
        if now >= quiet_until:
            return
        book.wait_change(min(quiet_until, hard) - now)


def word_sum(data: bytes) -> int:
    """The sum of ``data`` as big-endian 16-bit words (odd length: zero-padded), unfolded:
    the part of the Internet checksum that partial sums can share (the SYN engine's)."""
    if len(data) % 2:
        data += b"\0"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def inet_checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ICMP and ICMPv6 echo requests."""
    total = word_sum(data)
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF
