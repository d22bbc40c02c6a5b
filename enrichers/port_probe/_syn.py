"""TCP SYN (half-open) scan with raw sockets (root / CAP_NET_RAW, IPv4).

Built for packet rate, because a 65,535-port scan is 65,535 SYNs and as many
replies and Python costs about a microsecond per line of work per packet:

- **Send:** one raw TCP socket (the kernel adds the IP header). SYNs are
  written into a preallocated buffer of 24-byte slots (TCP header + MSS) with
  one ``struct.pack_into`` each, the checksum updated incrementally from a
  per-host precomputed sum, and sent 512 at a time with ``sendmmsg(2)``
  through ctypes: one system call per batch instead of one per port.
- **Receive:** the same socket, with a classic BPF filter attached so the
  kernel queues only TCP segments to our source port, read with
  ``recvmmsg(2)`` into fixed 64-byte slots and parsed with one
  ``struct.iter_unpack`` pass. A raw ICMP socket catches unreachables.
- **Identity in the packet (SYN cookies, like masscan):** the sequence number
  is a keyed per-host secret plus the batch number, so a reply is accepted
  only if its ACK matches, its RTT is known without a per-port timestamp, and
  the bookkeeping is one byte per (host, port) in a ``bytearray``.
- **Stop early:** when every port has answered the scan returns at once.
  Otherwise each batch waits a quiet period of four smoothed round trips of
  the slowest replies (at least ``min_wait_s``, 50 ms like nmap -T5's
  min-rtt-timeout: a LAN answers in microseconds to a few milliseconds; the
  full ``timeout_s`` while nothing answered), then its silent ports are sent
  again, ``retries`` times, then called filtered/no-response. A late reply to
  an earlier attempt still counts, and a slow host raises the quiet period
  for everyone as soon as its replies arrive.

The reply TTL and the SYN-ACK window are kept for OS hints. The kernel answers
our SYN-ACKs with RST because no socket owns the connection, as with nmap.
"""

from __future__ import annotations

import bisect
import ctypes
import errno
import hashlib
import os
import select
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable

from lanscope.net.bpf import Instruction, attach_filter
from lanscope.net.rawsweep import word_sum

from ._connect import Outcome
from ._mmsg import Sender, Vector, libc, raw_send_socket

_ICMP_REASONS = {0: "net-unreach", 1: "host-unreach", 2: "proto-unreach", 3: "port-unreach",
                 9: "net-prohibited", 10: "host-prohibited", 13: "admin-prohibited"}
_BATCH = 512                    # SYNs per sendmmsg
_RECV_SLOTS = 1024              # replies per recvmmsg
_REPLY_SLOT = 64                # bytes kept of each reply: IPv4 (20) + TCP (20) + room for options
_TCP_LEN = 24                   # TCP header (20) + MSS option (4)
_SYN_SLOT = 20 + _TCP_LEN       # we write the IPv4 header too (IPPROTO_RAW sockets)
_SYN = struct.Struct("!HHIIBBHHHI")     # sport dport seq ack off flags window csum urg MSS-option
# IPv4 header; the kernel fills in the checksum and, as they are zero, the ID (IP_HDRINCL).
_IP = struct.Struct("!BBHHHBBH4s4s")
_MSS_OPTION = 0x020405B4                # MSS 1460: a SYN without options looks odd to some stacks
# A reply slot: TTL, source address, TCP source port, ACK, flags, window (the BPF filter has
# already checked IPv4 without options, length >= 40 and our destination port).
_REPLY = struct.Struct("!8xB3x4s4xH6xIxBH28x")
_POINTER = struct.Struct("P")
_SO_RCVBUFFORCE = 33
_MSG_DONTWAIT = 0x40
_UNREACHABLE = {errno.EHOSTUNREACH: "host-unreach", errno.ENETUNREACH: "net-unreach",
                errno.EACCES: "host-unreach", errno.EPERM: "host-unreach"}
_RETRY_LATER = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS, errno.EINTR)
_UNANSWERED, _ANSWERED = 1, 2       # per (host, port) state; 0: not asked


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


def _valid_ports(ports: list[int]) -> list[int]:
    """Sorted, unique, 1-65535 (sorted() and bisect run in C: a 65k list costs ~2 ms)."""
    unique = sorted(set(ports))
    return unique[bisect.bisect_left(unique, 1):bisect.bisect_right(unique, 65535)]


def _reply_filter(sport: int) -> list[Instruction]:
    """Classic BPF, run by the kernel on the raw socket (packet starts at the IP header):
    accept IPv4 without options, at least 40 bytes, to TCP port ``sport``; keep 64 bytes."""
    return [
        (0x30, 0, 0, 0),              # ldb [0]            version/IHL
        (0x15, 0, 5, 0x45),           # jeq #0x45          else drop
        (0x80, 0, 0, 0),              # ld #len
        (0x35, 0, 3, 40),             # jge #40            else drop
        (0x28, 0, 0, 22),             # ldh [22]           TCP destination port
        (0x15, 0, 1, sport),          # jeq #sport         else drop
        (0x06, 0, 0, _REPLY_SLOT),    # ret #64            accept (truncated)
        (0x06, 0, 0, 0),              # ret #0             drop
    ]


class _Scan:
    """One SYN scan: the sockets, the buffers, the per-port state and the batches in flight."""

    def __init__(self, targets: dict[str, list[int]], sock: socket.socket, icmp: socket.socket,
                 sport: int, secret: bytes, *, timeout_s: float, retries: int, min_wait_s: float,
                 pps: int, stop: threading.Event | None) -> None:
        self.sock = sock
        self.icmp = icmp
        self.fd = sock.fileno()
        self.sport = sport
        self.timeout_s = timeout_s
        self.retries = retries
        self.min_wait_s = min_wait_s
        self.pps = pps
        self.stop = stop
        self.libc = libc()
        self.ips = list(targets)
        self.host_of: dict[bytes, int] = {}
        self.seq_base: list[int] = []
        self.sum_base: list[int] = []
        self.ip_headers: list[bytes] = []
        names = bytearray(16 * max(1, len(self.ips)))
        fixed = _SYN.pack(sport, 0, 0, 0, 6 << 4, 0x02, 1024, 0, 0, _MSS_OPTION)
        for h, ip in enumerate(self.ips):
            if ":" in ip:
                raise ValueError(f"SYN scan is IPv4 only: {ip}")
            packed = socket.inet_aton(ip)
            self.host_of[packed] = h
            source = socket.inet_aton(_source_ip(ip))
            pseudo = source + packed + struct.pack("!BBH", 0, 6, _TCP_LEN)
            self.sum_base.append(word_sum(pseudo) + word_sum(fixed))
            # Keyed per host and below 2**31, so base + batch number never wraps.
            digest = hashlib.blake2s(packed, key=secret, digest_size=4).digest()
            self.seq_base.append(int.from_bytes(digest, "big") >> 1)
            struct.pack_into("=H2x4s8x", names, 16 * h, socket.AF_INET, packed)
            self.ip_headers.append(_IP.pack(0x45, 0, _SYN_SLOT, 0, 0, 64, socket.IPPROTO_TCP, 0, source,
                                            packed))
        self._names = names
        self._names_c = (ctypes.c_char * len(names)).from_buffer(names)
        self.name_addr = [ctypes.addressof(self._names_c) + 16 * h for h in range(len(self.ips))]
        self.ports = [_valid_ports(ports) for ports in targets.values()]
        # (host index << 16 | port) -> 0 not asked, 1 waiting, 2 answered.
        self.state = bytearray(len(self.ips) << 16)
        for h, ports in enumerate(self.ports):
            for port in ports:
                self.state[h << 16 | port] = _UNANSWERED
        self.wanted = sum(len(p) for p in self.ports)
        self.answered = 0
        self.results: dict[tuple[str, int], Outcome] = {}
        self.closed_cache: dict[tuple[int, int], Outcome] = {}
        self.batch_times: list[float] = []
        # Batches sent and not yet timed out, oldest first: (sent at, attempt, keys).
        self.inflight: deque[tuple[float, int, list[int]]] = deque()
        self.srtt = 0.0
        self.unreachable: list[tuple[int, str]] = []      # filled by sender threads, folded by drain
        self._lock = threading.Lock()
        self.main = Sender(raw_send_socket(), Vector(_BATCH, _SYN_SLOT))
        self.extra: list[Sender] = []
        self.recv_vec = Vector(_RECV_SLOTS, _REPLY_SLOT)

    def close(self) -> None:
        for sender in [self.main, *self.extra]:
            if sender.sock is not None:
                sender.sock.close()

    def quiet(self) -> float:
        """How long a SYN may stay unanswered: a few round trips of the slowest replies
        (at least ``min_wait_s``), or the full timeout while no host has answered at all."""
        if not self.answered:
            return self.timeout_s
        return min(self.timeout_s, max(self.min_wait_s, 4 * self.srtt))

    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    # -- receiving ---------------------------------------------------------------------------

    def drain(self) -> int:
        """Read every queued reply; returns how many ports got their answer."""
        got = 0
        recvmmsg = self.libc.recvmmsg
        vec = self.recv_vec
        view = memoryview(vec.data)
        host_of, seq_base, state = self.host_of, self.seq_base, self.state
        results, ips = self.results, self.ips
        batch_times = self.batch_times
        batches = len(batch_times)
        closed_cache = self.closed_cache
        worst = 0.0
        while True:
            n = recvmmsg(self.fd, vec.address, vec.size, _MSG_DONTWAIT, None)
            if n <= 0:
                break
            now = time.monotonic()
            for ttl, src, port, ack, flags, window in _REPLY.iter_unpack(view[:n * _REPLY_SLOT]):
                h = host_of.get(src)
                if h is None:
                    continue
                batch = (ack - 1 - seq_base[h]) & 0xFFFFFFFF
                if batch >= batches:
                    continue                    # not our cookie: a stray or forged segment
                key = h << 16 | port
                if state[key] != _UNANSWERED:
                    continue
                if flags & 0x12 == 0x12:
                    results[(ips[h], port)] = Outcome("open", "syn-ack", ttl, window)
                elif flags & 0x04:
                    # Closed ports are most of a scan and their replies alike: one shared tuple
                    # per (TTL, window) instead of a NamedTuple per port.
                    closed = closed_cache.get((ttl, window))
                    if closed is None:
                        closed = closed_cache[(ttl, window)] = Outcome("closed", "reset", ttl, window)
                    results[(ips[h], port)] = closed
                else:
                    continue
                state[key] = _ANSWERED
                got += 1
                rtt = now - batch_times[batch]
                if rtt > worst:
                    worst = rtt
            if n < vec.size:
                break
        got += self._drain_icmp()
        while self.unreachable:
            key, reason = self.unreachable.pop()
            if state[key] == _UNANSWERED:
                state[key] = _ANSWERED
                results[(ips[key >> 16], key & 0xFFFF)] = Outcome("filtered", reason)
                got += 1
        if got:
            self.answered += got
            if worst:
                # Smoothed towards the slowest reply of each drain: the quiet period must cover it.
                self.srtt = worst if self.srtt == 0.0 else self.srtt + (worst - self.srtt) / 4
        return got

    def _drain_icmp(self) -> int:
        got = 0
        while True:
            try:
                packet = self.icmp.recv(256)
            except (BlockingIOError, InterruptedError):
                return got
            ihl = (packet[0] & 0x0F) * 4 if packet else 0
            if len(packet) < ihl + 8 + 28 or packet[ihl] != 3:
                continue
            inner = packet[ihl + 8:]
            inner_ihl = (inner[0] & 0x0F) * 4
            if inner[9] != 6 or len(inner) < inner_ihl + 8:
                continue
            h = self.host_of.get(inner[16:20])
            src_port, dst_port, seq = struct.unpack_from("!HHI", inner, inner_ihl)
            if h is None or src_port != self.sport:
                continue
            if (seq - self.seq_base[h]) & 0xFFFFFFFF >= len(self.batch_times):
                continue
            key = h << 16 | dst_port
            if self.state[key] == _UNANSWERED:
                self.state[key] = _ANSWERED
                self.results[(self.ips[h], dst_port)] = Outcome(
                    "filtered", _ICMP_REASONS.get(packet[ihl + 1], "unreach"), packet[8])
                got += 1

    # -- timeouts ----------------------------------------------------------------------------

    def expire(self) -> None:
        """Retransmit the silent ports of every batch whose quiet period is over (nmap's
        per-probe timeout): a dropped port sent early is retried while later batches are
        still going out, not after a wait at the end."""
        inflight = self.inflight
        if not inflight:
            return
        deadline = time.monotonic() - self.quiet()
        state = self.state
        while inflight and inflight[0][0] <= deadline:
            _sent, attempt, keys = inflight.popleft()
            if attempt >= self.retries:
                continue                            # still silent: filtered/no-response
            silent = [key for key in keys if state[key] == _UNANSWERED]
            if silent:
                self._send_part(self.main, silent, attempt + 1, None)

    def finish(self, progress: Callable[[], None]) -> None:
        """Until every port answered or every batch timed out (after its retries)."""
        while self.inflight and self.answered < self.wanted and not self.stopped():
            self.expire()
            if not self.inflight:
                return
            wait = self.inflight[0][0] + self.quiet() - time.monotonic()
            select.select([self.sock, self.icmp], [], [], min(0.01, max(0.0, wait)))
            self.drain()
            progress()

    # -- sending -----------------------------------------------------------------------------

    def send(self, pending: list[int], progress: Callable[[], None], senders: int) -> None:
        """SYN to every ``host << 16 | port`` in ``pending`` (the first attempt).

        With ``senders`` threads, each with its own raw socket, the kernel's per-packet work
        (which includes delivering the SYN to an on-link host and its reply back to us) runs
        on several cores while this thread parses replies: ctypes drops the GIL in sendmmsg.
        """
        if senders <= 1 or self.pps > 0 or len(pending) < 4 * _BATCH:
            self._send_part(self.main, pending, 0, progress)
            return
        parts = [pending[i::senders] for i in range(senders)]
        errors: list[BaseException] = []

        def work(sender: Sender, part: list[int]) -> None:
            try:
                self._send_part(sender, part, 0, None)
            except BaseException as exc:        # re-raised in the scanning thread
                errors.append(exc)

        while len(self.extra) < senders:
            self.extra.append(Sender(raw_send_socket(), Vector(_BATCH, _SYN_SLOT)))
        threads = [threading.Thread(target=work, args=(self.extra[i], parts[i]), daemon=True)
                   for i in range(senders)]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            select.select([self.sock, self.icmp], [], [], 0.002)
            self.drain()
            self.expire()
            progress()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    def _send_part(self, sender: Sender, pending: list[int], attempt: int,
                   progress: Callable[[], None] | None) -> None:
        """Send ``pending`` in batches on ``sender``. With ``progress`` (the scanning thread,
        first attempt) replies are read and timeouts handled between batches."""
        vec = sender.vec
        data, headers, stride = vec.data, vec.headers, vec.stride
        pack_syn, pack_pointer = _SYN.pack_into, _POINTER.pack_into
        seq_base, sum_base, name_addr = self.seq_base, self.sum_base, self.name_addr
        ip_headers = self.ip_headers
        sport = self.sport
        pps = self.pps
        batch_size = min(vec.size, max(1, pps // 100)) if pps > 0 else vec.size
        slot_host = sender.slot_host
        next_at = time.monotonic()
        for start in range(0, len(pending), batch_size):
            chunk = pending[start:start + batch_size]
            with self._lock:
                batch = len(self.batch_times)
                now = time.monotonic()
                self.batch_times.append(now)
                self.inflight.append((now, attempt, chunk))
            for slot, key in enumerate(chunk):
                h = key >> 16
                port = key & 0xFFFF
                seq = seq_base[h] + batch
                total = sum_base[h] + port + (seq >> 16) + (seq & 0xFFFF)
                total = (total & 0xFFFF) + (total >> 16)
                total = (total & 0xFFFF) + (total >> 16)
                offset = slot * _SYN_SLOT
                pack_syn(data, offset + 20, sport, port, seq, 0, 6 << 4, 0x02, 1024,
                         ~total & 0xFFFF, 0, _MSS_OPTION)
                if slot_host[slot] != h:
                    slot_host[slot] = h
                    data[offset:offset + 20] = ip_headers[h]
                    pack_pointer(headers, slot * stride, name_addr[h])
            self._send_vector(sender, chunk, drain=progress is not None)
            if progress is not None:
                self.drain()
                self.expire()
                progress()
            if self.stopped():
                return
            if pps > 0:
                next_at += len(chunk) / pps
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)

    def _send_vector(self, sender: Sender, chunk: list[int], *, drain: bool) -> None:
        sendmmsg = self.libc.sendmmsg
        vec = sender.vec
        done = 0
        while done < len(chunk):
            sent = sendmmsg(sender.fd, vec.address + done * vec.stride, len(chunk) - done, 0)
            if sent > 0:
                done += sent
                continue
            err = ctypes.get_errno()
            if err in _RETRY_LATER:         # socket or qdisc queue full: let it drain
                if drain:
                    self.drain()
                select.select([], [sender.fd], [], 0.005)
                continue
            reason = _UNREACHABLE.get(err)
            if reason is None:
                raise OSError(err, os.strerror(err))
            self.unreachable.append((chunk[done], reason))   # no route / ARP failure (atomic append)
            done += 1


def syn_scan(targets: dict[str, list[int]], *, timeout_s: float = 1.0, retries: int = 1,
             min_wait_s: float = 0.05, packets_per_sec: int = 0, stop: threading.Event | None = None,
             progress: Callable[[int, int], None] | None = None, senders: int | None = None,
             ) -> dict[tuple[str, int], Outcome]:
    """SYN-scan ``{ip: ports}`` (IPv4); blocking (call it in a thread).

    ``senders``: threads sending SYNs (default: two on a multi-core machine; measured on the
    lab, 65,535 ports took 0.60 s with one and 0.49 s with two). Small scans use one."""
    if senders is None:
        senders = min(2, os.cpu_count() or 1)
    secret = os.urandom(16)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    # Reserve the source port so no local connection uses it while the scan runs.
    reserve = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        reserve.bind(("0.0.0.0", 0))
        sport = reserve.getsockname()[1]
        attach_filter(sock, _reply_filter(sport))
        for s in (sock, icmp):
            s.setblocking(False)
            try:
                s.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, 32 << 20)
            except OSError:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
        scan = _Scan(targets, sock, icmp, sport, secret, timeout_s=timeout_s, retries=retries,
                     min_wait_s=min_wait_s, pps=packets_per_sec, stop=stop)
        try:
            return _run(scan, progress, senders)
        finally:
            scan.close()
    finally:
        sock.close()
        icmp.close()
        reserve.close()


def _run(scan: _Scan, progress: Callable[[int, int], None] | None, senders: int,
         ) -> dict[tuple[str, int], Outcome]:
    last_progress = 0.0

    def report() -> None:
        nonlocal last_progress
        if progress is None:
            return
        now = time.monotonic()
        if now - last_progress >= 0.1:           # a progress bar redraw costs more than a batch
            last_progress = now
            progress(scan.answered, scan.wanted)

    # Interleave hosts (port-major) so no host gets thousands of SYNs in one burst.
    per_host = scan.ports
    longest = max((len(p) for p in per_host), default=0)
    pending = [h << 16 | ports[i] for i in range(longest) for h, ports in enumerate(per_host)
               if i < len(ports)]
    if pending and not scan.stopped():
        scan.send(pending, report, senders)
        scan.finish(report)
    results = scan.results
    silent = Outcome("filtered", "no-response")
    state = scan.state
    for h, ports in enumerate(per_host):
        if state.find(_UNANSWERED, h << 16, (h + 1) << 16) < 0:
            continue                             # every port of this host answered
        ip = scan.ips[h]
        for port in ports:
            if state[h << 16 | port] == _UNANSWERED:
                results[(ip, port)] = silent
    if progress is not None:
        progress(scan.wanted, scan.wanted)
    return results
