"""Hosts that join the lab by DHCP: a fresh namespace, a new MAC, BusyBox udhcpc.

For the passive listener's tests and its join -> `new` benchmark: each join is
a device the LAN has never seen (its own namespace and veth, a MAC no declared
host has), plugged into the scanner's bridge, asking the lab's dnsmasq for an
address. ``leave`` deletes it again (the veth goes with the namespace).
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass

from . import netns
from .lab import Lab
from .netns import LabError
from .topology import JOIN_OUI


@dataclass(frozen=True)
class Joined:
    name: str
    ns: str
    mac: str
    ip: str | None            # the leased address (None: asked with lease=False)
    plugged_at: float         # time.time() when its link came up
    asked_at: float           # time.time() just before udhcpc started


def join_mac(number: int) -> str:
    """The MAC of join number ``number`` (0..65535)."""
    return f"{JOIN_OUI}:00:{number >> 8:02x}:{number & 0xFF:02x}"


def _plug(lab: Lab, number: int, *, ipv6: bool) -> tuple[str, str, str, float]:
    """A fresh namespace with eth0 (a new MAC) in the scanner's bridge: (name, ns, mac, when)."""
    name = f"j{number}"
    ns = f"{lab.prefix}-{name}"
    mac = join_mac(number)
    netns.ip_batch([f"netns add {ns}",
                    f"link add eth0 netns {ns} address {mac} type veth peer name h-{name} "
                    f"netns {lab.scanner_ns}"])
    if not ipv6:     # no link-local address, so no DAD or router solicitation at link up
        netns.write_sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")
        netns.write_sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "1")
    netns.ip_batch(["link set lo up", "link set eth0 up"], ns=ns)
    netns.ip("link", "set", f"h-{name}", "master", "br0", "up", ns=lab.scanner_ns)
    return name, ns, mac, time.time()


def join(lab: Lab, number: int, *, hostname: str | None = None, configure: bool = False,
         ipv6: bool = True, timeout: float = 10.0) -> Joined:
    """Plug in host ``j<number>`` and get it a lease; ``configure`` puts the address on its
    interface (then it answers ARP and can talk). ``ipv6=False``: its first packet is the
    DHCP DISCOVER (no IPv6 duplicate address detection at link up)."""
    name, ns, mac, plugged = _plug(lab, number, ipv6=ipv6)
    argv = ["ip", "netns", "exec", ns, "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-s", "/bin/true",
            "-t", "5", "-T", "1"]
    if hostname:
        argv += ["-x", f"hostname:{hostname}"]
    asked = time.time()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    found = re.search(r"lease of (\S+) obtained", proc.stdout + proc.stderr)
    if proc.returncode != 0 or not found:
        leave(lab, number)
        raise LabError(f"udhcpc in {ns} got no lease: {(proc.stderr or proc.stdout)[-400:]}")
    ip = found.group(1)
    if configure:
        netns.ip("addr", "add", f"{ip}/16", "dev", "eth0", ns=ns)
    return Joined(name, ns, mac, ip, plugged, asked)


def speak(lab: Lab, number: int, ip: str) -> Joined:
    """Plug in host ``j<number>`` with the static address ``ip`` (no IPv6) and have it send
    one datagram to the scanner: its first packet is the ARP request for the scanner."""
    name, ns, mac, plugged = _plug(lab, number, ipv6=False)
    netns.ip("addr", "add", f"{ip}/16", "dev", "eth0", ns=ns)
    asked = time.time()
    subprocess.run(["ip", "netns", "exec", ns, "python3", "-c",
                    "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
                    f".sendto(b'x', ('{lab.SCANNER_IP}', 9))"], check=True, timeout=10)
    return Joined(name, ns, mac, ip, plugged, asked)


def leave(lab: Lab, number: int) -> None:
    """Unplug and delete join ``number`` (nothing if it is not there)."""
    ns = f"{lab.prefix}-j{number}"
    if ns in netns.list_netns():
        netns.ip_batch([f"netns del {ns}"], force=True)


def joined_namespaces(prefix: str) -> set[str]:
    """The join namespaces of a lab prefix that exist now (for cleanup)."""
    return {n for n in netns.list_netns() if re.fullmatch(rf"{re.escape(prefix)}-j\d+", n)}
