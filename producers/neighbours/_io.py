"""The neighbour producer's I/O: one rtnetlink RTM_GETNEIGH dump, in a thread."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

from lanscope.net import netlink
from lanscope.net.interfaces import interfaces


@dataclass(frozen=True)
class Neighbour:
    ip: str
    mac: str | None
    state: str                  # REACHABLE, STALE, DELAY, PROBE, FAILED, INCOMPLETE, PERMANENT, NOARP
    interface: str | None
    confirmed_secs: float | None = None   # since the kernel last confirmed the entry reachable


def read_neighbours() -> list[Neighbour]:
    """The kernel's IPv4 and IPv6 neighbour entries (blocking)."""
    names = {i.index: i.name for i in interfaces()}
    out = []
    for record in netlink.neighbours():
        ip = ipaddress.ip_address(socket.inet_ntop(record.family, record.address))
        mac = record.lladdr.hex(":") if record.lladdr and len(record.lladdr) == 6 else None
        out.append(Neighbour(str(ip), mac, record.state, names.get(record.index), record.confirmed_secs))
    return out


async def read_neighbours_async() -> list[Neighbour]:
    return await asyncio.to_thread(read_neighbours)
