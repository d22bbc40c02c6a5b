"""Ethernet frames as devices send them, for the passive listener's parser and stage tests."""

from __future__ import annotations

import ipaddress
import struct

BROADCAST = "ff:ff:ff:ff:ff:ff"


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def ether(dst: str, src: str, ethertype: int, payload: bytes) -> bytes:
    return _mac(dst) + _mac(src) + struct.pack("!H", ethertype) + payload


def arp(op: int, sha: str, spa: str, tpa: str, *, dst: str = BROADCAST,
        tha: str = "00:00:00:00:00:00") -> bytes:
    body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + _mac(sha) + ipaddress.IPv4Address(spa).packed \
        + _mac(tha) + ipaddress.IPv4Address(tpa).packed
    return ether(dst, sha, 0x0806, body)


def ipv4_udp(src: str, dst: str, sport: int, dport: int, payload: bytes, *, fragment: int = 0) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, fragment, 64, 17, 0,
                         ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    return header + udp


def dhcp_options(**options: bytes) -> bytes:
    out = b""
    for key, value in options.items():
        out += bytes([int(key[1:]), len(value)]) + value
    return out + b"\xff"


def bootp(op: int, chaddr: str, options: bytes, *, ciaddr: str = "0.0.0.0") -> bytes:
    fixed = struct.pack("!BBBBIHH4s4s4s4s", op, 1, 6, 0, 0x1234, 0, 0x8000,
                        ipaddress.IPv4Address(ciaddr).packed, b"\0" * 4, b"\0" * 4, b"\0" * 4)
    return fixed + _mac(chaddr) + b"\0" * 10 + b"\0" * 192 + b"\x63\x82\x53\x63" + options


def dhcp_client(mac: str, message: int, *, ciaddr: str = "0.0.0.0", **options: bytes) -> bytes:
    body = bootp(1, mac, dhcp_options(o53=bytes([message]), **options), ciaddr=ciaddr)
    return ether(BROADCAST, mac, 0x0800, ipv4_udp(ciaddr, "255.255.255.255", 68, 67, body))


def dhcp_server(server_mac: str, server_ip: str, client: str, message: int = 2) -> bytes:
    body = bootp(2, client, dhcp_options(o53=bytes([message]), o54=ipaddress.IPv4Address(server_ip).packed))
    return ether(BROADCAST, server_mac, 0x0800, ipv4_udp(server_ip, "255.255.255.255", 67, 68, body))


def icmpv6(src_mac: str, src: str, dst: str, kind: int, body: bytes, *, hop_limit: int = 255,
           dst_mac: str = "33:33:00:00:00:01") -> bytes:
    icmp = bytes([kind, 0]) + b"\0\0" + body
    header = struct.pack("!IHBB", 0x60000000, len(icmp), 58, hop_limit) \
        + ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed
    return ether(dst_mac, src_mac, 0x86DD, header + icmp)


def neighbour_solicitation(src_mac: str, src: str, target: str) -> bytes:
    return icmpv6(src_mac, src, "ff02::1:ff00:1", 135, b"\0" * 4 + ipaddress.IPv6Address(target).packed)


def neighbour_advertisement(src_mac: str, target: str, dst: str = "ff02::1") -> bytes:
    return icmpv6(src_mac, target, dst, 136, b"\x20\0\0\0" + ipaddress.IPv6Address(target).packed)


def router_advertisement(src_mac: str, src: str) -> bytes:
    return icmpv6(src_mac, src, "ff02::1", 134, b"\x40\x00\x07\x08" + b"\0" * 8)


def router_solicitation(src_mac: str, src: str = "::") -> bytes:
    return icmpv6(src_mac, src, "ff02::2", 133, b"\0" * 4)
