"""Minimal rtnetlink dumps (addresses, neighbours) over the standard library's AF_NETLINK socket.

The stdlib has no getifaddrs() and /proc only tells IPv6 prefixes, so the
kernel is asked directly: one RTM_GETADDR or RTM_GETNEIGH dump, parsed with
``struct``. Forty lines instead of a dependency (pyroute2) or a subprocess
(``ip -j``, which the machine may not have). Linux only; blocking, so async
callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWNEIGH, RTM_GETNEIGH = 28, 30
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL = 1, 2, 3
NDA_DST, NDA_LLADDR, NDA_CACHEINFO = 1, 2, 3
_USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100   # nda_cacheinfo's unit
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_OPERSTATE, IFLA_LINKINFO = 1, 3, 4, 16, 18
IFLA_INFO_KIND = 1
OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")

_NLMSGHDR = struct.Struct("=IHHII")
_IFADDRMSG = struct.Struct("=BBBBI")
_IFINFOMSG = struct.Struct("=BxHiII")
_NDMSG = struct.Struct("=BBHiHBB")
_RTATTR = struct.Struct("=HH")

# Neighbour states (include/uapi/linux/neighbour.h).
NUD_STATES = {
    0x01: "INCOMPLETE", 0x02: "REACHABLE", 0x04: "STALE", 0x08: "DELAY",
    0x10: "PROBE", 0x20: "FAILED", 0x40: "NOARP", 0x80: "PERMANENT",
}


@dataclass(frozen=True)
class LinkRecord:
    index: int
    name: str
    link_type: int                          # ARPHRD_*: 1 Ethernet, 772 loopback ...
    mac: bytes | None
    mtu: int | None
    state: str
    kind: str | None                        # rtnl link kind: bridge, veth, vlan ... (None: hardware)


@dataclass(frozen=True)
class AddressRecord:
    index: int
    family: int
    address: bytes
    prefixlen: int
    scope: int
    label: str | None


@dataclass(frozen=True)
class NeighbourRecord:
    index: int
    family: int
    address: bytes
    lladdr: bytes | None
    state: str
    confirmed_secs: float | None = None     # since the kernel last confirmed it reachable

def _attrs(data: bytes, offset: int, end: int) -> dict[int, bytes]:
    attrs: dict[int, bytes] = {}
    while offset + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size:
            break
        attrs[kind & 0x3FFF] = data[offset + _RTATTR.size: offset + length]
        offset += (length + 3) & ~3
    return attrs


def _dump(msg_type: int, body: bytes) -> list[tuple[int, bytes, int]]:
    """Send one dump request; return (type, message bytes, body offset) of every answer."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        seq = 1
        request = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type, NLM_F_REQUEST | NLM_F_DUMP,
                                 seq, 0) + body
        sock.sendto(request, (0, 0))
        messages: list[tuple[int, bytes, int]] = []
        while True:
            data = sock.recv(1 << 16)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    return messages
                if kind == NLMSG_DONE:
                    return messages
                if kind == NLMSG_ERROR:
                    (error,) = struct.unpack_from("=i", data, offset + _NLMSGHDR.size)
                    if error:
                        raise OSError(-error, os.strerror(-error))
                    return messages
                messages.append((kind, data[offset: offset + length], _NLMSGHDR.size))
                offset += (length + 3) & ~3


def _records(request: int, header: struct.Struct,
             reply: int) -> Iterator[tuple[tuple[Any, ...], dict[int, bytes]]]:
    """Dump every object of a kind (the request's header all zero: every family and
    interface); yield each ``reply`` message's header fields and attributes."""
    for kind, message, offset in _dump(request, bytes(header.size)):
        if kind == reply:
            yield header.unpack_from(message, offset), _attrs(message, offset + header.size, len(message))


def links() -> list[LinkRecord]:
    """Every interface of this network namespace (RTM_GETLINK dump).

    /sys/class/net cannot be used for this: it shows the namespace /sys was
    mounted in, not the one the calling thread is in (setns without a remount)."""
    out = []
    for fields, attrs in _records(RTM_GETLINK, _IFINFOMSG, RTM_NEWLINK):
        _family, link_type, index, _flags, _change = fields
        name = attrs.get(IFLA_IFNAME, b"").rstrip(b"\0").decode(errors="replace")
        mtu = struct.unpack("=I", attrs[IFLA_MTU][:4])[0] if len(attrs.get(IFLA_MTU, b"")) >= 4 else None
        operstate = attrs.get(IFLA_OPERSTATE, b"\0")[0]
        info = _attrs(attrs[IFLA_LINKINFO], 0, len(attrs[IFLA_LINKINFO])) if IFLA_LINKINFO in attrs else {}
        link_kind = info.get(IFLA_INFO_KIND)
        out.append(LinkRecord(index, name, link_type, attrs.get(IFLA_ADDRESS), mtu,
                              OPERSTATES[operstate] if operstate < len(OPERSTATES) else "unknown",
                              link_kind.rstrip(b"\0").decode(errors="replace") if link_kind else None))
    return out


def addresses() -> list[AddressRecord]:
    """Every IPv4/IPv6 address of every interface (RTM_GETADDR dump)."""
    out = []
    for fields, attrs in _records(RTM_GETADDR, _IFADDRMSG, RTM_NEWADDR):
        family, prefixlen, _flags, scope, index = fields
        # IFA_LOCAL is the interface's own address on point-to-point links; IFA_ADDRESS elsewhere.
        address = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
        if address is None:
            continue
        label = attrs.get(IFA_LABEL)
        out.append(AddressRecord(index, family, address, prefixlen, scope,
                                 label.rstrip(b"\0").decode(errors="replace") if label else None))
    return out


def neighbours() -> list[NeighbourRecord]:
    """The kernel's IPv4 and IPv6 neighbour tables (RTM_GETNEIGH dump)."""
    out = []
    for fields, attrs in _records(RTM_GETNEIGH, _NDMSG, RTM_NEWNEIGH):
        family, _p1, _p2, index, state, _flags, _type = fields
        if family not in (socket.AF_INET, socket.AF_INET6) or NDA_DST not in attrs:
            continue
        names = [name for bit, name in NUD_STATES.items() if state & bit]
        cache = attrs.get(NDA_CACHEINFO)
        confirmed = struct.unpack_from("I", cache)[0] / _USER_HZ if cache and len(cache) >= 4 else None
        out.append(NeighbourRecord(index, family, attrs[NDA_DST], attrs.get(NDA_LLADDR),
                                   "|".join(names) or "NONE", confirmed))
    return out
