"""UDP probes with real protocol payloads, nmap's semantics.

open on any reply, closed on ICMP port-unreachable (read from the socket's
error queue with IP_RECVERR, so no raw socket is needed), filtered on the other
ICMP unreachables, open|filtered when nothing came back after the retries;
paced per host as nmap paces (see ``_HostScan``). Payloads: DNS (version.bind CHAOS TXT),
NTP (a v4 client request), SNMP (v1 GetRequest sysDescr.0 + sysObjectID.0,
community "public"), NetBIOS (NBSTAT), mDNS (unicast _services._dns-sd query)
and SSDP (M-SEARCH); other ports get an empty datagram. Replies are rendered
into a text line (``DNS version.bind=...``, ``SNMP sysDescr=...``) that the
fingerprint rules read, followed by the raw reply.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import ipaddress
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

from lanscope.net.netbios import NBSTAT_QUERY, parse_nbstat

CAP = 4096


@dataclass
class UdpOutcome:
    port: int
    state: str
    reason: str
    data: bytes = b""             # rendered line + raw reply, for the rules
    shown: bytes = b""            # raw reply, for the banner


# ----------------------------------------------------------------- payloads

DNS_QUERY = (b"\x13\x37\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"
             b"\x07version\x04bind\x00\x00\x10\x00\x03")
NTP_QUERY = b"\xe3\x00\x04\xfa" + b"\x00" * 44
MDNS_QUERY = (b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"
              b"\x09_services\x07_dns-sd\x04_udp\x05local\x00\x00\x0c\x80\x01")
SSDP_QUERY = (b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\n"
              b"MX: 1\r\nST: ssdp:all\r\n\r\n")
SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"


def _ber_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _ber_len(len(value)) + value


def _oid(text: str) -> bytes:
    parts = [int(p) for p in text.split(".")]
    out = bytearray([parts[0] * 40 + parts[1]])
    for part in parts[2:]:
        chunk = [part & 0x7F]
        part >>= 7
        while part:
            chunk.append(0x80 | (part & 0x7F))
            part >>= 7
        out += bytes(reversed(chunk))
    return _tlv(0x06, bytes(out))


def snmp_get(community: str = "public", oids: tuple[str, ...] = (SYS_DESCR, SYS_OBJECT_ID),
             request_id: int = 0x1337) -> bytes:
    """An SNMPv1 GetRequest PDU."""
    varbinds = b"".join(_tlv(0x30, _oid(o) + b"\x05\x00") for o in oids)
    pdu = _tlv(0xA0, _tlv(0x02, request_id.to_bytes(2, "big")) + b"\x02\x01\x00\x02\x01\x00"
               + _tlv(0x30, varbinds))
    return _tlv(0x30, b"\x02\x01\x00" + _tlv(0x04, community.encode()) + pdu)


PAYLOADS: dict[int, bytes] = {53: DNS_QUERY, 123: NTP_QUERY, 137: NBSTAT_QUERY, 161: snmp_get(),
                              1900: SSDP_QUERY, 5353: MDNS_QUERY}


# ----------------------------------------------------------------- rendering replies

def _ber_read(data: bytes, i: int) -> tuple[int, bytes, int]:
    """(tag, value, next index); raises IndexError/ValueError on truncation."""
    tag = data[i]
    length = data[i + 1]
    i += 2
    if length & 0x80:
        count = length & 0x7F
        if count > 4:
            raise ValueError("BER length too long")
        length = int.from_bytes(data[i:i + count], "big")
        i += count
    value = data[i:i + length]
    if len(value) != length:
        raise ValueError("truncated BER value")
    return tag, value, i + length


def _oid_text(raw: bytes) -> str:
    if not raw:
        return ""
    parts = [raw[0] // 40, raw[0] % 40]
    value = 0
    for b in raw[1:]:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(value)
            value = 0
    return ".".join(str(p) for p in parts)


def parse_snmp(reply: bytes) -> dict[str, str]:
    """OID -> value (strings and OIDs) from a GetResponse; {} if it is not one."""
    out: dict[str, str] = {}
    try:
        _, message, _ = _ber_read(reply, 0)
        i = 0
        for _ in range(2):                     # version, community
            _, _, i = _ber_read(message, i)
        tag, pdu, _ = _ber_read(message, i)
        if tag != 0xA2:
            return out
        j = 0
        for _ in range(3):                     # request id, error status, error index
            _, _, j = _ber_read(pdu, j)
        _, varbinds, _ = _ber_read(pdu, j)
        k = 0
        while k < len(varbinds):
            _, varbind, k = _ber_read(varbinds, k)
            _, oid, m = _ber_read(varbind, 0)
            vtag, value, _ = _ber_read(varbind, m)
            if vtag == 0x04:
                out[_oid_text(oid)] = value.decode("utf-8", "replace")
            elif vtag == 0x06:
                out[_oid_text(oid)] = _oid_text(value)
    except (IndexError, ValueError):
        pass
    return out


def _dns_name_skip(data: bytes, i: int) -> int:
    while i < len(data):
        length = data[i]
        if length == 0:
            return i + 1
        if length & 0xC0 == 0xC0:
            return i + 2
        i += 1 + length
    raise IndexError("name runs past the reply")


def parse_dns_txt(reply: bytes) -> tuple[int, list[str]]:
    """(rcode, TXT strings of the answers) of a DNS reply."""
    if len(reply) < 12:
        raise ValueError("short DNS reply")
    flags, qd, an = struct.unpack("!HHH", reply[2:8])
    i = 12
    for _ in range(qd):
        i = _dns_name_skip(reply, i) + 4
    texts: list[str] = []
    for _ in range(an):
        i = _dns_name_skip(reply, i)
        rtype, _rclass, _ttl, rdlen = struct.unpack("!HHIH", reply[i:i + 10])
        i += 10
        rdata = reply[i:i + rdlen]
        i += rdlen
        if rtype == 16:
            j = 0
            while j < len(rdata):
                n = rdata[j]
                texts.append(rdata[j + 1:j + 1 + n].decode("utf-8", "replace"))
                j += 1 + n
    return flags & 0x0F, texts


def render(port: int, reply: bytes) -> bytes:
    """A text line the rules can read, then the raw reply."""
    line = ""
    try:
        if port == 53:
            rcode, texts = parse_dns_txt(reply)
            line = f"DNS version.bind={texts[0]}" if texts else f"DNS rcode={rcode}"
        elif port == 161:
            values = parse_snmp(reply)
            if values:
                descr = values.get(SYS_DESCR, "").replace("\r", " ").replace("\n", " ")[:300]
                line = f"SNMP sysDescr={descr} sysObjectID={values.get(SYS_OBJECT_ID, '')}"
            else:
                line = "SNMP reply"
        elif port == 123 and len(reply) >= 48:
            line = f"NTP version={(reply[0] >> 3) & 7} stratum={reply[1]}"
        elif port == 137:
            status = parse_nbstat(reply)
            if status is not None:
                line = "NBSTAT names=" + ",".join(f"{n.name}<{n.suffix:02x}>" for n in status.names[:20])
        elif port == 5353:
            line = "MDNS reply"
    except (IndexError, ValueError, struct.error):
        line = ""
    if not line:
        return reply
    return line.encode("utf-8", "replace") + b"\n" + reply


# ----------------------------------------------------------------- the scan

# Linux (python 3.11's socket module lacks the first two).
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6 = 2, 3
_EXTENDED_ERR = struct.Struct("=IBBBBII")       # struct sock_extended_err

MAX_TRIES = 10                 # like nmap's max_retries: the ceiling when a host drops answers
MIN_DELAY_S = 0.05             # the first step of the per-host send delay once drops are seen
MAX_DELAY_S = 1.0              # nmap's --max-scan-delay for UDP; Linux answers 1 ICMP/s after a burst
WINDOW = 256                   # probes in flight per host


def _icmp_state(family: int, origin: int, icmp_type: int, code: int) -> tuple[str, str] | None:
    """nmap's reading of an ICMP error to a UDP probe: port unreachable is closed, the other
    unreachables (host, protocol, administratively prohibited ...) are filtered."""
    if family == socket.AF_INET and origin == SO_EE_ORIGIN_ICMP and icmp_type == 3:
        if code == 3:
            return "closed", "port-unreach"
        return "filtered", {1: "host-unreach", 2: "proto-unreach", 9: "net-prohibited",
                            10: "host-prohibited", 13: "admin-prohibited"}.get(code, "unreach")
    if family == socket.AF_INET6 and origin == SO_EE_ORIGIN_ICMP6 and icmp_type == 1:
        if code == 4:
            return "closed", "port-unreach"
        return "filtered", {1: "admin-prohibited", 3: "addr-unreach"}.get(code, "unreach")
    return None


class _HostScan:
    """One host's UDP ports through one unconnected socket with IP_RECVERR.

    Replies are matched by source port; ICMP errors arrive on the socket's error queue with
    the destination of the probe that caused them, so no raw socket is needed. Pacing
    follows nmap: everything is sent at once, then a port answered only on a retransmission
    means the host drops answers (Linux sends a burst of 6 port-unreachables, then one per
    ``net.ipv4.icmp_ratelimit``, 1 s): the send delay for this host doubles (50 ms up to
    1 s), only unanswered ports are sent again, and the number of tries a silent port gets
    grows to one more than the latest try that was answered (at most ``MAX_TRIES``) — so the
    rate limit is waited out instead of read as open|filtered. A host that answers nothing
    costs ``retries + 1`` timeouts, as before."""

    def __init__(self, ip: str, ports: list[int], timeout_s: float, retries: int) -> None:
        self.ip = ipaddress.ip_address(ip.partition("%")[0])   # what replies are matched against
        self.family = socket.AF_INET6 if self.ip.version == 6 else socket.AF_INET
        # The socket address with fe80::1%eth0's scope id (a plain (host, port) tuple loses it).
        try:
            self.sockaddr: tuple[Any, ...] = socket.getaddrinfo(ip, 0, self.family, socket.SOCK_DGRAM, 0,
                                                                socket.AI_NUMERICHOST)[0][4]
        except socket.gaierror:        # an unknown interface name: the probes go out unscoped
            self.sockaddr = (str(self.ip), 0)
        self.ports = ports
        self.timeout_s = timeout_s
        self.min_tries = retries + 1
        self.tries: dict[int, int] = dict.fromkeys(ports, 0)
        self.results: dict[int, UdpOutcome] = {}
        self.delay = 0.0
        self.answered_try = 0          # the highest try number that got an answer
        self.woken = asyncio.Event()

    def allowed_tries(self) -> int:
        return min(MAX_TRIES, max(self.min_tries, self.answered_try + 1))

    def _answer(self, port: int, outcome: UdpOutcome) -> None:
        if port not in self.tries or port in self.results:
            return
        self.results[port] = outcome
        tries = self.tries[port]
        if tries > 1:                  # answered only on a retransmission: the host drops answers
            self.delay = min(MAX_DELAY_S, max(MIN_DELAY_S, self.delay * 2))
        self.answered_try = max(self.answered_try, tries)
        self.woken.set()

    def _readable(self, sock: socket.socket) -> None:
        while True:                    # ICMP errors first: a pending error also fails recvfrom
            try:
                _data, ancillary, _flags, address = sock.recvmsg(64, 512, MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            for _level, _type, raw in ancillary:
                if len(raw) < _EXTENDED_ERR.size:
                    continue
                _errno, origin, icmp_type, code, _pad, _info, _data32 = _EXTENDED_ERR.unpack_from(raw)
                state = _icmp_state(self.family, origin, icmp_type, code)
                if state is not None and ipaddress.ip_address(address[0].partition("%")[0]) == self.ip:
                    self._answer(address[1], UdpOutcome(address[1], *state))
        while True:
            try:
                reply, address = sock.recvfrom(CAP)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:            # the error the queue above already explained
                continue
            if ipaddress.ip_address(address[0].partition("%")[0]) == self.ip:
                port = address[1]
                self._answer(port, UdpOutcome(port, "open", "udp-response", render(port, reply),
                                              reply[:1024]))

    async def run(self, deadline: float) -> dict[int, UdpOutcome]:
        loop = asyncio.get_running_loop()
        sock = socket.socket(self.family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            if self.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            loop.add_reader(sock.fileno(), self._readable, sock)
            try:
                await self._rounds(sock, deadline)
            finally:
                loop.remove_reader(sock.fileno())
        finally:
            sock.close()
        return self.results

    async def _rounds(self, sock: socket.socket, deadline: float) -> None:
        queue = collections.deque(self.ports)
        in_flight: dict[int, float] = {}
        last_send = -1e9
        while True:
            now = time.monotonic()
            for port, sent in list(in_flight.items()):
                if port in self.results:
                    del in_flight[port]
                elif now - sent >= self.timeout_s:
                    del in_flight[port]
                    if self.tries[port] < self.allowed_tries():
                        queue.append(port)
                    else:
                        self.results[port] = UdpOutcome(port, "open|filtered", "no-response")
            while queue and queue[0] in self.results:
                queue.popleft()
            if not queue and not in_flight:
                return
            if now >= deadline:        # out of time: what did not answer stays open|filtered
                for port in self.ports:
                    self.results.setdefault(port, UdpOutcome(port, "open|filtered", "no-response"))
                return
            while queue and len(in_flight) < WINDOW and now - last_send >= self.delay:
                port = queue.popleft()
                if port in self.results:
                    continue
                outcome = self._send(sock, port)
                if outcome is not None:
                    self.results[port] = outcome
                    continue
                self.tries[port] += 1
                in_flight[port] = last_send = now
                if self.delay:
                    break
            waits = [sent + self.timeout_s - now for sent in in_flight.values()]
            if queue:
                waits.append(last_send + self.delay - now)
            self.woken.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.001, min(waits, default=0.001))):
                    await self.woken.wait()

    def _send(self, sock: socket.socket, port: int) -> UdpOutcome | None:
        for _attempt in range(2):
            try:
                sock.sendto(PAYLOADS.get(port, b""), (self.sockaddr[0], port, *self.sockaddr[2:]))
                return None
            except ConnectionRefusedError:
                continue               # an earlier probe's error, reported here: send again
            except BlockingIOError:
                return None            # the send buffer is full: counts as a lost probe
            except OSError as exc:
                return UdpOutcome(port, "filtered", _reason(exc))
        return None


async def udp_scan(ip: str, ports: list[int], *, timeout_s: float = 1.0, retries: int = 1,
                   deadline: float | None = None) -> dict[int, UdpOutcome]:
    """Probe ``ports`` of one host; never raises for network errors (see ``_HostScan``)."""
    scan = _HostScan(ip, sorted(set(ports)), timeout_s, retries)
    return await scan.run(deadline if deadline is not None else time.monotonic() + 3600)


async def udp_probe(ip: str, port: int, *, timeout_s: float = 1.0, retries: int = 1) -> UdpOutcome:
    """One UDP port of one host (``udp_scan`` of a single port)."""
    return (await udp_scan(ip, [port], timeout_s=timeout_s, retries=retries))[port]


def _reason(exc: OSError) -> str:
    return {errno.EHOSTUNREACH: "host-unreach", errno.ENETUNREACH: "net-unreach",
            errno.EACCES: "admin-prohibited"}.get(exc.errno or 0, "error")
