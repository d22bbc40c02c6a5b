"""UDP probes with real protocol payloads, nmap's semantics.

open on any reply, closed on ICMP port-unreachable (a connected UDP socket
reports it as ECONNREFUSED, so no raw socket is needed), open|filtered when
nothing came back after the retries. Payloads: DNS (version.bind CHAOS TXT),
NTP (a v4 client request), SNMP (v1 GetRequest sysDescr.0 + sysObjectID.0,
community "public"), NetBIOS (NBSTAT), mDNS (unicast _services._dns-sd query)
and SSDP (M-SEARCH); other ports get an empty datagram. Replies are rendered
into a text line (``DNS version.bind=...``, ``SNMP sysDescr=...``) that the
fingerprint rules read, followed by the raw reply.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import struct
import time
from dataclasses import dataclass

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


# ----------------------------------------------------------------- the probe

async def udp_probe(ip: str, port: int, *, timeout_s: float = 1.0, retries: int = 1) -> UdpOutcome:
    """Probe one UDP port; never raises for network errors."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ipaddress.ip_address(ip).version == 6 else socket.AF_INET
    payload = PAYLOADS.get(port, b"")
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        sock.connect((ip, port))
        for _attempt in range(retries + 1):
            try:
                sock.send(payload)
            except ConnectionRefusedError:
                return UdpOutcome(port, "closed", "port-unreach")
            except OSError as exc:
                return UdpOutcome(port, "filtered", _reason(exc))
            deadline = time.monotonic() + timeout_s
            try:
                async with asyncio.timeout(timeout_s):
                    while True:
                        reply = await loop.sock_recv(sock, CAP)
                        if reply or time.monotonic() >= deadline:
                            break
                return UdpOutcome(port, "open", "udp-response", render(port, reply), reply[:1024])
            except TimeoutError:
                continue
            except ConnectionRefusedError:
                return UdpOutcome(port, "closed", "port-unreach")
            except OSError as exc:
                return UdpOutcome(port, "filtered", _reason(exc))
        return UdpOutcome(port, "open|filtered", "no-response")
    finally:
        sock.close()


def _reason(exc: OSError) -> str:
    return {errno.EHOSTUNREACH: "host-unreach", errno.ENETUNREACH: "net-unreach",
            errno.EACCES: "admin-prohibited"}.get(exc.errno or 0, "error")
