"""Tiny wire-level probes used to check the lab: TCP, ICMP, DNS and SNMP.

They open sockets in the caller's current network namespace, so call them
from a thread that is inside the scanner namespace (see `Lab.enter_scanner`
or `netns.in_netns`). Standard library only.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import random
import select
import socket
import struct
import time

from lanscope.net.rawsweep import inet_checksum

OPEN, CLOSED, FILTERED = "open", "closed", "filtered"


def tcp_state(ip: str, port: int, timeout: float = 1.0) -> str:
    """'open' (connected), 'closed' (refused/unreachable) or 'filtered' (no answer)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((ip, port))
        except TimeoutError:
            return FILTERED
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                return CLOSED
            return FILTERED
        return OPEN


def tcp_banner(ip: str, port: int, send: bytes = b"", timeout: float = 3.0, limit: int = 4096) -> bytes:
    """Connect, optionally send `send`, return what the server says first."""
    with socket.create_connection((ip, port), timeout=timeout) as sock:
        if send:
            sock.sendall(send)
        data = b""
        deadline = time.monotonic() + timeout
        while len(data) < limit and time.monotonic() < deadline:
            try:
                chunk = sock.recv(limit - len(data))
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
            if not send or b"\r\n\r\n" in data or data.endswith(b"\n"):
                break
        return data


def http_get(ip: str, port: int = 80, path: str = "/", timeout: float = 3.0) -> tuple[int, bytes]:
    """Minimal HTTP/1.0 GET: (status, raw response headers+body)."""
    request = f"GET {path} HTTP/1.0\r\nHost: {ip}\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection((ip, port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    status = int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/") else 0
    return status, raw


def icmp_echo(ip: str, timeout: float = 1.0) -> bool:
    """Send one ICMP echo request on a raw socket; True if a reply comes back."""
    ident, seq = os.getpid() & 0xFFFF, random.randrange(0x10000)
    payload = b"lanscope-lab"
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    packet = struct.pack("!BBHHH", 8, 0, inet_checksum(header + payload), ident, seq) + payload
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.sendto(packet, (ip, 0))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([sock], [], [], left)
            if not ready:
                break
            data, (src, _) = sock.recvfrom(2048)
            ihl = (data[0] & 0x0F) * 4
            kind, _, _, r_ident, r_seq = struct.unpack("!BBHHH", data[ihl : ihl + 8])
            if src == ip and kind == 0 and (r_ident, r_seq) == (ident, seq):
                return True
    return False


# --- DNS -------------------------------------------------------------------

QTYPE_A, QTYPE_PTR, QTYPE_AAAA = 1, 12, 28


def _encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def _decode_name(msg: bytes, offset: int) -> tuple[str, int]:
    """Decode a possibly compressed name; return (name, offset after it)."""
    labels: list[str] = []
    end = None
    for _ in range(128):
        length = msg[offset]
        if length & 0xC0 == 0xC0:
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | msg[offset + 1]
            continue
        if length == 0:
            return ".".join(labels), (end if end is not None else offset + 1)
        labels.append(msg[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
        offset += 1 + length
    raise ValueError("DNS name compression loop")


def reverse_name(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer


def dns_query(server: str, name: str, qtype: int = QTYPE_A, timeout: float = 2.0) -> tuple[int, list[str]]:
    """One UDP DNS query: (rcode, answers as text). A/AAAA/PTR are decoded."""
    qid = random.randrange(0x10000)
    query = (
        struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + _encode_name(name) + struct.pack("!HH", qtype, 1)
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(query, (server, 53))
        while True:
            msg, _ = sock.recvfrom(4096)
            if struct.unpack("!H", msg[:2])[0] == qid:
                break
    _, flags, qdcount, ancount, _, _ = struct.unpack("!HHHHHH", msg[:12])
    offset = 12
    for _ in range(qdcount):
        _, offset = _decode_name(msg, offset)
        offset += 4
    answers = []
    for _ in range(ancount):
        _, offset = _decode_name(msg, offset)
        rtype, _, _, rdlen = struct.unpack("!HHIH", msg[offset : offset + 10])
        offset += 10
        rdata = msg[offset : offset + rdlen]
        if rtype == QTYPE_A:
            answers.append(str(ipaddress.IPv4Address(rdata)))
        elif rtype == QTYPE_AAAA:
            answers.append(str(ipaddress.IPv6Address(rdata)))
        elif rtype == QTYPE_PTR:
            answers.append(_decode_name(msg, offset)[0])
        offset += rdlen
    return flags & 0x000F, answers


# --- SNMP ------------------------------------------------------------------

SYS_DESCR_OID = "1.3.6.1.2.1.1.1.0"


def _tlv(tag: int, value: bytes) -> bytes:
    length = len(value)
    if length < 0x80:
        return bytes([tag, length]) + value
    size = (length.bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + length.to_bytes(size, "big") + value


def _encode_oid(oid: str) -> bytes:
    parts = [int(p) for p in oid.split(".")]
    body = bytes([40 * parts[0] + parts[1]])
    for part in parts[2:]:
        chunk = [part & 0x7F]
        part >>= 7
        while part:
            chunk.insert(0, 0x80 | (part & 0x7F))
            part >>= 7
        body += bytes(chunk)
    return _tlv(0x06, body)


def _read_tlv(data: bytes, offset: int) -> tuple[int, bytes, int]:
    tag, length = data[offset], data[offset + 1]
    offset += 2
    if length & 0x80:
        size = length & 0x7F
        length = int.from_bytes(data[offset : offset + size], "big")
        offset += size
    return tag, data[offset : offset + length], offset + length


def snmp_get(
    ip: str, oid: str = SYS_DESCR_OID, community: str = "public", timeout: float = 2.0
) -> bytes | None:
    """SNMPv1 GET of one OID; the value's raw bytes, or None without an answer."""
    request_id = random.randrange(1, 0x7FFFFFFF)
    varbind = _tlv(0x30, _encode_oid(oid) + b"\x05\x00")
    pdu = _tlv(
        0xA0, _tlv(0x02, request_id.to_bytes(4, "big")) + b"\x02\x01\x00\x02\x01\x00" + _tlv(0x30, varbind)
    )
    message = _tlv(0x30, b"\x02\x01\x00" + _tlv(0x04, community.encode()) + pdu)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(message, (ip, 161))
        try:
            reply, _ = sock.recvfrom(65535)
        except (TimeoutError, ConnectionRefusedError):
            return None
    oid_bytes = _encode_oid(oid)
    at = reply.find(oid_bytes)
    if at < 0:
        return None
    _, value, _ = _read_tlv(reply, at + len(oid_bytes))
    return value


# --- UDP discovery protocols ----------------------------------------------------

# A legacy-unicast mDNS question (PTR _services._dns-sd._udp.local) and a NetBIOS node status
# request (NBSTAT for "*"): enough to tell that avahi-daemon / nmbd answer.
MDNS_SERVICES_QUERY = (b"\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"
                       b"\x09_services\x07_dns-sd\x04_udp\x05local\x00\x00\x0c\x00\x01")
NBSTAT_QUERY = (b"\x13\x37\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"
                b"\x20CKAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\x00\x00\x21\x00\x01")
UDP_QUERIES = {5353: MDNS_SERVICES_QUERY, 137: NBSTAT_QUERY}


def udp_answers(ip: str, port: int, timeout: float = 1.0) -> bytes | None:
    """Send the port's query (UDP_QUERIES) and return the first reply, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(UDP_QUERIES[port], (ip, port))
        try:
            reply, _ = sock.recvfrom(65535)
        except (TimeoutError, ConnectionRefusedError):
            return None
    return reply
