"""NetBIOS node status (NBSTAT, RFC 1002 4.2.17/4.2.18): the query and its answer.

One packet: "what names do you hold?" sent to UDP 137. The answer lists the
node's names (computer name, workgroup, services by suffix) and a unit id that
Windows fills with the MAC (Samba with zeros). Shared by port_probe's UDP probe
(enrichers/port_probe/_udp.py) and the netbios enricher. Replies are attacker
input: every length is checked.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import dataclass

PORT = 137
# Transaction id 0x80f0, one question: the wildcard name "*" (CKAAAA...), type NBSTAT, class IN.
NBSTAT_QUERY = (b"\x80\xf0\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"
                b"\x20CKAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\x00\x00\x21\x00\x01")
_NAMES_AT = 56          # 12 header + 34 name + type, class, TTL, rdlength
_GROUP = 0x8000


@dataclass(frozen=True)
class NbName:
    name: str
    suffix: int           # 0x00 workstation / workgroup, 0x20 file server, 0x1d master browser ...
    group: bool


@dataclass(frozen=True)
class NodeStatus:
    names: tuple[NbName, ...]
    mac: str | None       # the unit id when it is a MAC (not all zeros)

    @property
    def computer(self) -> str | None:
        """The node's own name: its unique workstation (<00>) name, else its server (<20>) name."""
        for suffix in (0x00, 0x20):
            for n in self.names:
                if n.suffix == suffix and not n.group and n.name:
                    return n.name
        return None

    @property
    def workgroup(self) -> str | None:
        """The workgroup or domain: the group name with suffix <00>."""
        return next((n.name for n in self.names if n.group and n.suffix == 0x00 and n.name), None)


def parse_nbstat(reply: bytes) -> NodeStatus | None:
    """The node status in an NBSTAT answer, or None if it is not one."""
    if len(reply) < _NAMES_AT + 1 or struct.unpack_from("!H", reply, 6)[0] < 1:
        return None
    if reply[_NAMES_AT - 10:_NAMES_AT - 8] != b"\x00\x21":        # answer type NBSTAT
        return None
    count = reply[_NAMES_AT]
    names = []
    at = _NAMES_AT + 1
    for _ in range(count):
        entry = reply[at:at + 18]
        if len(entry) < 18:
            break
        flags = struct.unpack_from("!H", entry, 16)[0]
        text = entry[:15].decode("ascii", "replace").rstrip(" \x00")
        names.append(NbName(text, entry[15], bool(flags & _GROUP)))
        at += 18
    unit = reply[at:at + 6]
    mac = unit.hex(":") if len(unit) == 6 and any(unit) else None
    return NodeStatus(tuple(names), mac)


async def node_status(ip: str, *, timeout_s: float = 1.0, retries: int = 1) -> NodeStatus | None:
    """Ask ``ip`` for its node status (unicast UDP 137); None without an answer. The caller
    checks the scope first."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        try:
            sock.connect((ip, PORT))
            for _ in range(retries + 1):
                sock.send(NBSTAT_QUERY)
                try:
                    async with asyncio.timeout(timeout_s):
                        while True:
                            status = parse_nbstat(await loop.sock_recv(sock, 2048))
                            if status is not None:
                                return status
                except TimeoutError:
                    continue
        except OSError:            # refused (port unreachable), no route
            return None
    return None
