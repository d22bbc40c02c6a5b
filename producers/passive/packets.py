"""What one Ethernet frame says about its sender: ARP, DHCP client messages, IPv6 NDP. No I/O.

``parse_frame(frame)`` returns a ``Sighting`` (who sent it, which address it
uses, what kind of packet) or None for anything else. Frames are attacker
input: every length is checked, text is decoded with replacement and capped,
and a sender MAC that is zero, multicast or broadcast is no sighting.

The kinds (``HostSeen.evidence``):

- ARP: ``arp-request`` (the sender asks for someone: it has ``spa``),
  ``arp-probe`` (sender address 0.0.0.0: duplicate detection before it takes
  an address; no address yet), ``garp`` (gratuitous: announces ``spa``);
  ordinary replies are the ARP sweep's business and are not sightings.
- DHCP (client to server, UDP 67): ``dhcp-discover``, ``dhcp-request``,
  ``dhcp-inform``, ``dhcp-decline``, ``dhcp-release``, with the client's
  options (hostname 12, vendor class 60, parameter request list 55, client id
  61, requested address 50). A server's reply (UDP 67 -> 68) is
  ``dhcp-server``: its sender runs a DHCP server.
- NDP (ICMPv6, hop limit 255): ``ndp-dad`` (a neighbour solicitation from ::,
  duplicate address detection for the target), ``ndp-ns``, ``ndp-rs``,
  ``ndp-na`` (unsolicited, to a multicast group: IPv6's gratuitous ARP) and
  ``ndp-ra``: its sender is a router. A link-local address is not reported
  (it is no address without its interface): such a sighting has the MAC only.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from schemas import DhcpRequest

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
DHCP_SERVER_PORT = 67
DHCP_CLIENT_PORT = 68
_DHCP_MAGIC = b"\x63\x82\x53\x63"
_BOOTP_FIXED = 236
_MAX_TEXT = 255

# DHCP message types (option 53) a client sends.
_CLIENT_MESSAGES = {1: "discover", 3: "request", 4: "decline", 7: "release", 8: "inform"}

# What a host announces about itself by sending a packet of this kind.
ROLES = {"ndp-ra": "ndp-router", "dhcp-server": "dhcp-server"}


@dataclass(frozen=True, slots=True)
class Sighting:
    """One sender seen in one frame."""

    kind: str                          # HostSeen.evidence
    mac: str
    ip: str | None = None
    dhcp: DhcpRequest | None = None

    @property
    def alive(self) -> bool:
        """A client releasing its lease says it is leaving: no evidence of presence."""
        return self.kind != "dhcp-release"

    @property
    def role(self) -> str | None:
        """What the sender announces itself to be (``ndp-router``, ``dhcp-server``)."""
        return ROLES.get(self.kind)


def _mac(raw: bytes) -> str | None:
    """A unicast MAC as text; None for zero, multicast and broadcast addresses."""
    if len(raw) != 6 or raw[0] & 1 or not any(raw):
        return None
    return raw.hex(":")


def _text(raw: bytes) -> str | None:
    text = raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip()
    return text[:_MAX_TEXT] or None


def parse_frame(frame: bytes) -> Sighting | None:
    """The sighting an Ethernet frame holds, or None."""
    if len(frame) < 14:
        return None
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    try:
        if ethertype == ETH_P_ARP:
            return parse_arp(frame)
        if ethertype == ETH_P_IP:
            return parse_dhcp(frame)
        if ethertype == ETH_P_IPV6:
            return parse_ndp(frame)
    except (struct.error, IndexError, ValueError):
        return None
    return None


# ---------------------------------------------------------------------- ARP


def parse_arp(frame: bytes) -> Sighting | None:
    if len(frame) < 42:
        return None
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", frame, 14)
    if (htype, ptype, hlen, plen) != (1, ETH_P_IP, 6, 4):
        return None
    mac = _mac(frame[22:28])
    if mac is None:
        return None
    spa, tpa = frame[28:32], frame[38:42]
    broadcast = frame[0:6] == b"\xff" * 6
    if op == 1:
        if not any(spa):
            return Sighting("arp-probe", mac)
        kind = "garp" if spa == tpa else "arp-request"
    elif op == 2 and (spa == tpa or broadcast):
        kind = "garp"
    else:
        return None
    return Sighting(kind, mac, str(ipaddress.IPv4Address(spa)))


# ---------------------------------------------------------------------- DHCP


def _dhcp_options(data: bytes) -> dict[int, bytes]:
    """Option code -> value of a DHCP options field (the first of repeated codes)."""
    options: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        code = data[i]
        if code == 0:
            i += 1
            continue
        if code == 255 or i + 1 >= len(data):
            break
        length = data[i + 1]
        value = data[i + 2:i + 2 + length]
        if len(value) != length:
            break
        options.setdefault(code, value)
        i += 2 + length
    return options


def parse_dhcp(frame: bytes) -> Sighting | None:
    """A DHCP client's message to the server port, or a server's reply (its sender)."""
    if len(frame) < 34 or frame[14] >> 4 != 4 or frame[23] != 17:
        return None
    if struct.unpack_from("!H", frame, 20)[0] & 0x1FFF:       # a fragment
        return None
    ihl = (frame[14] & 0x0F) * 4
    udp = 14 + ihl
    sport, dport = struct.unpack_from("!HH", frame, udp)
    bootp = frame[udp + 8:]
    if len(bootp) < _BOOTP_FIXED + 4 or bootp[_BOOTP_FIXED:_BOOTP_FIXED + 4] != _DHCP_MAGIC:
        return None
    options = _dhcp_options(bootp[_BOOTP_FIXED + 4:])
    if dport == DHCP_SERVER_PORT and bootp[0] == 1:
        return _dhcp_client(bootp, options)
    if sport == DHCP_SERVER_PORT and dport == DHCP_CLIENT_PORT and bootp[0] == 2:
        mac = _mac(frame[6:12])
        server = options.get(54, frame[26:30])
        if mac is None or len(server) != 4 or not any(server):
            return None
        return Sighting("dhcp-server", mac, str(ipaddress.IPv4Address(server)))
    return None


def _dhcp_client(bootp: bytes, options: dict[int, bytes]) -> Sighting | None:
    htype, hlen = bootp[1], bootp[2]
    if htype != 1 or hlen != 6:
        return None
    mac = _mac(bootp[28:34])
    kind = options.get(53, b"")
    message = _CLIENT_MESSAGES.get(kind[0]) if len(kind) == 1 else None
    if mac is None or message is None:
        return None
    ciaddr = bootp[12:16]
    requested = options.get(50, b"")
    requested_ip = str(ipaddress.IPv4Address(requested)) if len(requested) == 4 and any(requested) else None
    client_id = options.get(61)
    request = DhcpRequest(
        message=message,
        hostname=_text(options.get(12, b"")),
        vendor_class=_text(options.get(60, b"")),
        parameters=list(options.get(55, b"")),
        client_id=client_id.hex(":")[:_MAX_TEXT] if client_id else None,
        requested_ip=requested_ip)
    # The address it uses: one it has (ciaddr), or the offer it accepts (REQUEST, option 50).
    ip: str | None = None
    if any(ciaddr):
        ip = str(ipaddress.IPv4Address(ciaddr))
    elif message == "request":
        ip = requested_ip
    return Sighting(f"dhcp-{message}", mac, ip, request)


# ---------------------------------------------------------------------- NDP

_NDP = {133: "ndp-rs", 134: "ndp-ra", 135: "ndp-ns", 136: "ndp-na"}


def _usable(address: ipaddress.IPv6Address) -> str | None:
    """An address others can reach the host at; a link-local one means nothing without its
    interface (and stages cannot send to it): the sighting then carries the MAC only."""
    if address.is_link_local or address.is_unspecified or address.is_multicast:
        return None
    return str(address)


def parse_ndp(frame: bytes) -> Sighting | None:
    if len(frame) < 62 or frame[14] >> 4 != 6 or frame[20] != 58 or frame[21] != 255:
        return None
    kind = _NDP.get(frame[54])
    mac = _mac(frame[6:12])
    if kind is None or mac is None or frame[55] != 0:
        return None
    source = ipaddress.IPv6Address(frame[22:38])
    destination = ipaddress.IPv6Address(frame[38:54])
    if kind in ("ndp-ns", "ndp-na"):
        if len(frame) < 78:
            return None
        target = ipaddress.IPv6Address(frame[62:78])
        if kind == "ndp-ns" and source.is_unspecified:
            return Sighting("ndp-dad", mac, _usable(target))
        if kind == "ndp-na":
            # Only unsolicited advertisements (to a group) say anything without a question.
            return Sighting(kind, mac, _usable(target)) if destination.is_multicast else None
    return Sighting(kind, mac, _usable(source))
