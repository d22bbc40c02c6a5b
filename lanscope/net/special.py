"""IANA's special-purpose address registries (IPv4 and IPv6), for `lanscope ip`.

``ipaddress`` knows whether an address is private, global, loopback ... but
not *why*: 198.18.0.10 is "private" to it because 198.18.0.0/15 is not
globally reachable, though it is the benchmarking range (RFC 2544), and
2001:db8::/32 is documentation (RFC 3849). The table below is the registries
(iana-ipv4-special-registry, iana-ipv6-special-registry, plus multicast),
most specific first wins.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Special:
    network: Network
    kind: str          # short type word: private, benchmarking, documentation ...
    name: str          # the registry's name
    rfc: str


def _table(rows: list[tuple[str, str, str, str]]) -> tuple[Special, ...]:
    entries = [Special(ipaddress.ip_network(net), kind, name, rfc) for net, kind, name, rfc in rows]
    return tuple(sorted(entries, key=lambda e: -e.network.prefixlen))   # most specific first


REGISTRY = _table([
    # IPv4 (https://www.iana.org/assignments/iana-ipv4-special-registry)
    ("0.0.0.0/8", "this network", "\"This network\"", "RFC 791"),
    ("0.0.0.0/32", "unspecified", "\"This host on this network\"", "RFC 1122"),
    ("10.0.0.0/8", "private", "Private-Use", "RFC 1918"),
    ("100.64.0.0/10", "shared (CGNAT)", "Shared Address Space", "RFC 6598"),
    ("127.0.0.0/8", "loopback", "Loopback", "RFC 1122"),
    ("169.254.0.0/16", "link-local", "Link Local", "RFC 3927"),
    ("172.16.0.0/12", "private", "Private-Use", "RFC 1918"),
    ("192.0.0.0/24", "protocol assignments", "IETF Protocol Assignments", "RFC 6890"),
    ("192.0.0.0/29", "protocol assignments", "IPv4 Service Continuity Prefix (DS-Lite)", "RFC 7335"),
    ("192.0.0.8/32", "protocol assignments", "IPv4 dummy address", "RFC 7600"),
    ("192.0.0.9/32", "anycast", "Port Control Protocol Anycast", "RFC 7723"),
    ("192.0.0.10/32", "anycast", "Traversal Using Relays around NAT Anycast", "RFC 8155"),
    ("192.0.0.170/31", "protocol assignments", "NAT64/DNS64 Discovery", "RFC 8880"),
    ("192.0.2.0/24", "documentation", "Documentation (TEST-NET-1)", "RFC 5737"),
    ("192.31.196.0/24", "anycast", "AS112-v4", "RFC 7535"),
    ("192.52.193.0/24", "anycast", "AMT", "RFC 7450"),
    ("192.88.99.0/24", "deprecated", "Deprecated (6to4 Relay Anycast)", "RFC 7526"),
    ("192.168.0.0/16", "private", "Private-Use", "RFC 1918"),
    ("192.175.48.0/24", "anycast", "Direct Delegation AS112 Service", "RFC 7534"),
    ("198.18.0.0/15", "benchmarking", "Benchmarking", "RFC 2544"),
    ("198.51.100.0/24", "documentation", "Documentation (TEST-NET-2)", "RFC 5737"),
    ("203.0.113.0/24", "documentation", "Documentation (TEST-NET-3)", "RFC 5737"),
    ("224.0.0.0/4", "multicast", "Multicast", "RFC 5771"),
    ("240.0.0.0/4", "reserved", "Reserved", "RFC 1112"),
    ("255.255.255.255/32", "broadcast", "Limited Broadcast", "RFC 919"),
    # IPv6 (https://www.iana.org/assignments/iana-ipv6-special-registry)
    ("::/128", "unspecified", "Unspecified Address", "RFC 4291"),
    ("::1/128", "loopback", "Loopback Address", "RFC 4291"),
    ("::ffff:0:0/96", "ipv4-mapped", "IPv4-mapped Address", "RFC 4291"),
    ("64:ff9b::/96", "translation", "IPv4-IPv6 Translation", "RFC 6052"),
    ("64:ff9b:1::/48", "translation", "IPv4-IPv6 Translation (local use)", "RFC 8215"),
    ("100::/64", "discard", "Discard-Only Address Block", "RFC 6666"),
    ("2001::/23", "protocol assignments", "IETF Protocol Assignments", "RFC 2928"),
    ("2001::/32", "teredo", "TEREDO", "RFC 4380"),
    ("2001:1::1/128", "anycast", "Port Control Protocol Anycast", "RFC 7723"),
    ("2001:1::2/128", "anycast", "Traversal Using Relays around NAT Anycast", "RFC 8155"),
    ("2001:2::/48", "benchmarking", "Benchmarking", "RFC 5180"),
    ("2001:3::/32", "anycast", "AMT", "RFC 7450"),
    ("2001:4:112::/48", "anycast", "AS112-v6", "RFC 7535"),
    ("2001:10::/28", "deprecated", "Deprecated (previously ORCHID)", "RFC 4843"),
    ("2001:20::/28", "protocol assignments", "ORCHIDv2", "RFC 7343"),
    ("2001:db8::/32", "documentation", "Documentation", "RFC 3849"),
    ("2002::/16", "6to4", "6to4", "RFC 3056"),
    ("2620:4f:8000::/48", "anycast", "Direct Delegation AS112 Service", "RFC 7534"),
    ("3fff::/20", "documentation", "Documentation", "RFC 9637"),
    ("5f00::/16", "segment routing", "Segment Routing (SRv6) SIDs", "RFC 9602"),
    ("fc00::/7", "private", "Unique-Local", "RFC 4193"),
    ("fe80::/10", "link-local", "Link-Local Unicast", "RFC 4291"),
    ("ff00::/8", "multicast", "Multicast", "RFC 4291"),
])


def special(net: Network) -> Special | None:
    """The most specific registry entry holding all of ``net``, or None."""
    for entry in REGISTRY:
        if entry.network.version == net.version and net.subnet_of(entry.network):  # type: ignore[arg-type]
            return entry
    return None


def overlaps_special(net: Network) -> bool:
    """Whether any part of ``net`` is in the registry."""
    return any(entry.network.version == net.version and net.overlaps(entry.network)
               for entry in REGISTRY)
