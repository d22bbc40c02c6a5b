"""The machine's network interfaces, without ifconfig or ``ip``.

Names, MACs, MTU and state come from an rtnetlink link dump, addresses with
their prefixes from an address dump (lanscope.net.netlink), the driver from
the ETHTOOL_GDRVINFO ioctl. Not /sys/class/net: it shows the namespace /sys
was mounted in, which is wrong for a thread that entered another network
namespace. The default targets and the scope's "attached" networks come
from here.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import ipaddress
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from lanscope.net import netlink

_SIOCETHTOOL, _ETHTOOL_GDRVINFO = 0x8946, 0x00000003
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# ARPHRD_* values from /sys/class/net/<if>/type that matter here.
_LINK_TYPES = {1: "ether", 772: "loopback", 65534: "none", 776: "sit", 778: "gre", 823: "ip6gre"}


@dataclass
class Interface:
    name: str
    index: int
    mac: str | None
    mtu: int | None
    state: str                              # up | down | unknown | dormant | ...
    link_type: str
    driver: str | None                      # from the device's driver symlink, or "bridge", "veth" ...
    addresses: list[IPInterface] = field(default_factory=list)

    @property
    def ipv4(self) -> list[ipaddress.IPv4Interface]:
        return [a for a in self.addresses if isinstance(a, ipaddress.IPv4Interface)]

    @property
    def ipv6(self) -> list[ipaddress.IPv6Interface]:
        return [a for a in self.addresses if isinstance(a, ipaddress.IPv6Interface)]

    @property
    def is_up(self) -> bool:
        # Loopback and many virtual links report "unknown" while working.
        return self.state in ("up", "unknown")


# What a stage reads the interfaces with: interfaces_async, or a test's own list.
InterfaceList = Callable[[], Awaitable[list[Interface]]]


def arp_capable(interface: Interface) -> bool:
    """Up, Ethernet-like and with a MAC: an interface ARP requests can go out of."""
    return interface.is_up and interface.link_type in ("ether", "") and bool(interface.mac)


def _ethtool_driver(name: str) -> str | None:
    """The driver name from the ETHTOOL_GDRVINFO ioctl (per network namespace, unlike /sys)."""
    request = bytearray(struct.pack("I", _ETHTOOL_GDRVINFO) + b"\0" * 192)
    buffer = ctypes.create_string_buffer(bytes(request), len(request))
    ifreq = struct.pack("16sP", name.encode()[:15], ctypes.addressof(buffer))
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            fcntl.ioctl(sock.fileno(), _SIOCETHTOOL, ifreq)
    except OSError:
        return None
    driver = buffer.raw[4:36].split(b"\0", 1)[0].decode(errors="replace")
    return driver or None


def interfaces(*, drivers: bool = True) -> list[Interface]:
    """Every interface of the current network namespace, ordered by index, with its addresses.

    ``drivers=False`` skips the ethtool ioctl (a socket per interface): ``driver`` is then only
    the netlink link kind ("bridge", "veth" ...), for callers that look at addresses alone."""
    found: dict[int, Interface] = {}
    for link in netlink.links():
        mac = link.mac.hex(":") if link.mac and len(link.mac) == 6 and any(link.mac) else None
        link_type = _LINK_TYPES.get(link.link_type, str(link.link_type))
        found[link.index] = Interface(
            name=link.name, index=link.index, mac=mac, mtu=link.mtu, state=link.state,
            link_type=link_type,
            driver=None if link_type == "loopback"
            else ((_ethtool_driver(link.name) if drivers else None) or link.kind),
        )
    for record in netlink.addresses():
        interface = found.get(record.index)
        if interface is None:
            continue
        text = socket.inet_ntop(record.family, record.address)
        interface.addresses.append(ipaddress.ip_interface(f"{text}/{record.prefixlen}"))
    return [found[i] for i in sorted(found)]


def _attached_private(network: IPNetwork) -> bool:
    # Python's is_private includes 198.18.0.0/15 and the documentation ranges, which
    # is what "attached private" means here: not a globally routed network.
    return not network.is_global


def attached_private_networks(found: list[Interface] | None = None) -> list[IPNetwork]:
    """Non-global networks directly attached to an up interface (loopback included)."""
    networks: list[IPNetwork] = []
    for interface in interfaces() if found is None else found:
        if not interface.is_up:
            continue
        for address in interface.addresses:
            if _attached_private(address.network) and address.network not in networks:
                networks.append(address.network)
    return networks


def segment_interfaces(found: list[Interface], names: list[str] | None = None, *,
                       key: str = "interfaces") -> list[Interface]:
    """Where the passive sources listen and ask (ARP/DHCP/NDP, mDNS, SSDP): the interfaces
    ``names`` (an unknown one is an error), else every up Ethernet-like interface with a
    private (non-global, not only link-local) address: the attached segments. None: an
    error that names the config ``key`` to set."""
    if names:
        by_name = {i.name: i for i in found}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise OSError(f"{key}: no interface {', '.join(missing)}")
        return [by_name[n] for n in names]
    chosen = [i for i in found
              if i.is_up and i.link_type == "ether" and i.mac
              and any(_attached_private(a.network) and not a.is_link_local for a in i.addresses)]
    if not chosen:
        raise OSError(f"no interface on an attached segment: none is up with a private address (set {key})")
    return chosen


def segment_addresses(found: list[Interface], names: list[str] | None = None, *,
                      key: str = "interfaces") -> list[str]:
    """The IPv4 addresses of segment_interfaces() (multicast sockets bind to them)."""
    addresses = [str(a.ip) for i in segment_interfaces(found, names, key=key)
                 for a in i.ipv4 if not a.is_link_local]
    if not addresses:
        raise OSError(f"no IPv4 address on the interfaces to use (set {key})")
    return addresses


def default_target_networks(found: list[Interface] | None = None) -> list[ipaddress.IPv4Network]:
    """What to sweep when no targets are given: attached private IPv4 subnets, not loopback or
    link-local, no larger than a /16 (a /8 on an interface is a mistake to sweep blindly)."""
    out: list[ipaddress.IPv4Network] = []
    for network in attached_private_networks(found):
        if (isinstance(network, ipaddress.IPv4Network) and not network.is_loopback
                and not network.is_link_local and network.prefixlen >= 16 and network not in out):
            out.append(network)
    return out


def interface_for(address: ipaddress.IPv4Address | ipaddress.IPv6Address,
                  found: list[Interface] | None = None) -> tuple[Interface, IPInterface] | None:
    """The up interface (and its address) whose attached network holds ``address``: on-link."""
    best: tuple[Interface, IPInterface] | None = None
    for interface in interfaces() if found is None else found:
        if not interface.is_up:
            continue
        for own in interface.addresses:
            if own.version == address.version and address in own.network \
                    and (best is None or own.network.prefixlen > best[1].network.prefixlen):
                best = (interface, own)
    return best


def local_ip(toward: str = "192.0.2.1") -> str:
    """The source address the kernel would use toward ``toward`` (default: the default route).

    connect() on a UDP socket only picks a route and a source address; it sends
    nothing. Without a route (no default gateway), the first address of an up
    non-loopback interface, else 127.0.0.1.
    """
    family = socket.AF_INET6 if ":" in toward else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((toward, 9))
            address = str(sock.getsockname()[0])
            if address not in ("0.0.0.0", "::"):
                return address
    except OSError as exc:
        if exc.errno not in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.EINVAL):
            raise
    for interface in interfaces():
        if interface.is_up and interface.link_type != "loopback":
            for own in interface.ipv4 if family == socket.AF_INET else interface.ipv6:
                if not own.is_link_local:
                    return str(own.ip)
    return "127.0.0.1" if family == socket.AF_INET else "::1"


async def interfaces_async() -> list[Interface]:
    """interfaces() for async callers (it reads /sys and a netlink socket)."""
    import asyncio

    return await asyncio.to_thread(interfaces)
