"""TCP SYN (half-open) scan with raw sockets (root / CAP_NET_RAW, IPv4).

SYNs go out in a tight loop through one raw TCP socket (the kernel adds the
IP header); the same socket receives every inbound TCP segment and keeps the
SYN-ACKs and RSTs addressed to our source port whose ACK number matches the
sequence cookie we sent. A raw ICMP socket catches unreachables. The reply
TTL and the SYN-ACK window are kept for OS hints. The kernel answers our
SYN-ACKs with RST because no socket owns the connection, as with nmap.

Waiting is adaptive: after the last SYN the scan waits a few round trips of
the slowest reply seen (at least ``min_wait_s``; the full ``timeout_s`` when no
host answered at all), retransmits to silent ports ``retries`` times, then
calls them filtered/no-response.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable

from ._connect import Outcome

_ICMP_REASONS = {0: "net-unreach", 1: "host-unreach", 2: "proto-unreach", 3: "port-unreach",
                 9: "net-prohibited", 10: "host-prohibited", 13: "admin-prohibited"}
_BATCH = 512
_TCP_HEAD = struct.Struct("!HHIIBBH")     # ports, seq, ack, offset, flags, window


def available() -> bool:
    """True when raw sockets can be opened (root or CAP_NET_RAW)."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP).close()
        return True
    except OSError:
        return False


def _source_ip(dst: str) -> str:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect((dst, 9))
        return str(probe.getsockname()[0])
    finally:
        probe.close()


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _sum16(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


class _Packets:
    """Pre-computes the constant part of the checksum; only dport and seq vary per SYN."""

    MSS = b"\x02\x04\x05\xb4"          # MSS 1460: a SYN without options looks odd to some stacks

    def __init__(self, src: str, dst: str, sport: int, secret: bytes) -> None:
        self.sport = sport
        self.secret = secret
        self.dst = dst
        pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, 24)
        # Header with dport=0, seq=0, checksum=0.
        fixed = struct.pack("!HHIIBBHHH", sport, 0, 0, 0, 6 << 4, 0x02, 1024, 0, 0) + self.MSS
        self.base = _sum16(pseudo) + _sum16(fixed)
        # A keyed per-host base plus a multiplicative step per port: unguessable to a third
        # party, and cheap enough to recompute for every reply of a 65k-port scan.
        digest = hashlib.blake2s(dst.encode(), key=secret, digest_size=4).digest()
        self.cookie_base = int.from_bytes(digest, "big")

    def cookie(self, dport: int) -> int:
        return (self.cookie_base + dport * 0x9E3779B1) & 0xFFFFFFFF

    def syn(self, dport: int) -> bytes:
        seq = self.cookie(dport)
        checksum = (~_fold(self.base + dport + (seq >> 16) + (seq & 0xFFFF))) & 0xFFFF
        header = struct.pack("!HHIIBBHHH", self.sport, dport, seq, 0, 6 << 4, 0x02, 1024, checksum, 0)
        return header + self.MSS


def syn_scan(targets: dict[str, list[int]], *, timeout_s: float = 1.0, retries: int = 1,
             min_wait_s: float = 0.1, packets_per_sec: int = 0, stop: threading.Event | None = None,
             progress: Callable[[int, int], None] | None = None) -> dict[tuple[str, int], Outcome]:
    """SYN-scan ``{ip: ports}`` (IPv4); blocking (call it in a thread)."""
    secret = os.urandom(16)
    send = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    # Reserve the source port so no local connection uses it while the scan runs.
    reserve = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        for s in (send, icmp):
            s.setblocking(False)
            try:
                s.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)     # SO_RCVBUFFORCE (root)
            except OSError:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
        try:
            send.setsockopt(socket.SOL_SOCKET, 32, 8 << 20)        # SO_SNDBUFFORCE (root)
        except OSError:
            pass
        reserve.bind(("0.0.0.0", 0))
        sport = reserve.getsockname()[1]
        return _run(targets, send, icmp, sport, secret, timeout_s=timeout_s, retries=retries,
                    min_wait_s=min_wait_s, pps=packets_per_sec, stop=stop, progress=progress)
    finally:
        send.close()
        icmp.close()
        reserve.close()


def _run(targets: dict[str, list[int]], send: socket.socket, icmp: socket.socket, sport: int,
         secret: bytes, *, timeout_s: float, retries: int, min_wait_s: float, pps: int,
         stop: threading.Event | None, progress: Callable[[int, int], None] | None,
         ) -> dict[tuple[str, int], Outcome]:
    builders: dict[str, _Packets] = {}
    packed: dict[bytes, str] = {}
    for ip in targets:
        if ipaddress.ip_address(ip).version != 4:
            raise ValueError(f"SYN scan is IPv4 only: {ip}")
        builders[ip] = _Packets(_source_ip(ip), ip, sport, secret)
        packed[socket.inet_aton(ip)] = ip
    total = sum(len(p) for p in targets.values())
    results: dict[tuple[str, int], Outcome] = {}
    sent_at: dict[tuple[str, int], float] = {}
    srtt = 0.0

    def drain() -> None:
        nonlocal srtt
        now = time.monotonic()
        while True:
            try:
                packet = send.recv(128)
            except (BlockingIOError, InterruptedError):
                break
            if len(packet) < 40:
                continue
            ihl = (packet[0] & 0x0F) * 4
            ip = packed.get(packet[12:16])
            if ip is None or len(packet) < ihl + 20:
                continue
            src_port, dst_port, _seq, ack, _off, flags, window = _TCP_HEAD.unpack_from(packet, ihl)
            if dst_port != sport:
                continue
            key = (ip, src_port)
            if key in results or key not in sent_at:
                continue
            if ack != (builders[ip].cookie(src_port) + 1) & 0xFFFFFFFF:
                continue
            if flags & 0x12 == 0x12:
                results[key] = Outcome("open", "syn-ack", packet[8], window)
            elif flags & 0x04:
                results[key] = Outcome("closed", "reset", packet[8], window)
            else:
                continue
            rtt = now - sent_at[key]
            srtt = rtt if srtt == 0.0 else srtt + (rtt - srtt) / 8
        while True:
            try:
                packet = icmp.recv(256)
            except (BlockingIOError, InterruptedError):
                break
            ihl = (packet[0] & 0x0F) * 4 if packet else 0
            if len(packet) < ihl + 8 + 28 or packet[ihl] != 3:
                continue
            inner = packet[ihl + 8:]
            inner_ihl = (inner[0] & 0x0F) * 4
            if inner[9] != 6 or len(inner) < inner_ihl + 4:
                continue
            ip = packed.get(inner[16:20])
            src_port, dst_port = struct.unpack("!HH", inner[inner_ihl:inner_ihl + 4])
            if ip is None or src_port != sport:
                continue
            key = (ip, dst_port)
            if key not in results and key in sent_at:
                results[key] = Outcome("filtered", _ICMP_REASONS.get(packet[ihl + 1], "unreach"), packet[8])

    def send_all(pending: list[tuple[str, int]]) -> None:
        interval = 1.0 / pps if pps > 0 else 0.0
        next_at = batch_time = time.monotonic()
        for i, (ip, port) in enumerate(pending):
            frame = builders[ip].syn(port)
            while True:
                try:
                    send.sendto(frame, (ip, 0))
                    break
                except (BlockingIOError, InterruptedError):
                    drain()
                    select.select([], [send], [], 0.01)
                except OSError as exc:       # no route, ARP failure: unreachable
                    if exc.errno == errno.ENOBUFS:    # qdisc/socket queue full: let it drain
                        drain()
                        time.sleep(0.001)
                        continue
                    if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES, errno.EPERM):
                        results[(ip, port)] = Outcome("filtered", {errno.ENETUNREACH: "net-unreach"}.get(
                            exc.errno, "host-unreach"))
                        break
                    raise
            if (ip, port) not in sent_at:
                sent_at[(ip, port)] = batch_time       # per batch: RTTs only need ms precision
            if i % _BATCH == _BATCH - 1:
                batch_time = time.monotonic()
                drain()
                if stop is not None and stop.is_set():
                    return
                if progress is not None:
                    progress(len(results), total)
            if interval:
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)

    def wait(pending_count: int) -> None:
        # Quiet period: a few smoothed round trips, or the full timeout when nothing answered.
        start = time.monotonic()
        last = start
        seen = len(results)
        while True:
            quiet = timeout_s if not results else min(timeout_s, max(min_wait_s, 6 * srtt))
            now = time.monotonic()
            if now - last >= quiet or now - start >= timeout_s * 2 or len(results) >= pending_count:
                return
            select.select([send, icmp], [], [], min(0.02, quiet))
            drain()
            if len(results) != seen:
                seen = len(results)
                last = time.monotonic()

    # Interleave hosts so one host does not receive a burst of thousands of SYNs at once.
    pending = [(ip, port) for port_index in range(max((len(p) for p in targets.values()), default=0))
               for ip, ports in targets.items() if port_index < len(ports)
               for port in (ports[port_index],)]
    # One thread both sends and receives: a receiver thread was measured slower (GIL hand-offs
    # on every recv/sendto outweigh the overlap).
    for _attempt in range(retries + 1):
        if not pending or (stop is not None and stop.is_set()):
            break
        send_all(pending)
        wait(total)
        pending = [key for key in pending if key not in results]
        for key in pending:
            sent_at[key] = time.monotonic()
    silent = Outcome("filtered", "no-response")
    for ip, ports in targets.items():
        for port in ports:
            if (ip, port) not in results:
                results[(ip, port)] = silent
    if progress is not None:
        progress(total, total)
    return results
