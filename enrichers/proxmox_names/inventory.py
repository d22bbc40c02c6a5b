"""Proxmox guests as data: parsing configs and agent answers, and the MAC/IP index.

Pure functions over the API's JSON (see integrations.md §3). A guest's MACs
come from its config (``netN``: QEMU ``virtio=MAC,...``, LXC ``hwaddr=MAC``),
its addresses from the QEMU guest agent, the LXC ``/interfaces`` call and
static LXC ``ip=`` settings. Interfaces the agent reports with a MAC that is
not in the config (docker0, veths) are ignored: their addresses are private to
the guest and would join the wrong hosts.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from schemas import ProxmoxGuest
from schemas.types import normalize_mac

_NET_KEY = re.compile(r"^net\d+$")
_QEMU_MODELS = frozenset({"virtio", "e1000", "e1000e", "e1000-82540em", "e1000-82544gc",
                          "e1000-82545em", "i82551", "i82557b", "i82559er", "ne2k_isa", "ne2k_pci",
                          "pcnet", "rtl8139", "vmxnet3"})


@dataclass
class Nic:
    mac: str
    ips: list[str] = field(default_factory=list)
    name: str | None = None          # netN key


@dataclass
class Guest:
    guest: ProxmoxGuest
    nics: list[Nic] = field(default_factory=list)
    extra_ips: list[str] = field(default_factory=list)   # addresses not tied to a config MAC

    @property
    def macs(self) -> list[str]:
        return [nic.mac for nic in self.nics]

    @property
    def ips(self) -> list[str]:
        seen: dict[str, None] = {}
        for nic in self.nics:
            seen.update(dict.fromkeys(nic.ips))
        seen.update(dict.fromkeys(self.extra_ips))
        return list(seen)


def _cap(value: Any, limit: int = 255) -> str | None:
    return str(value)[:limit] if value not in (None, "") else None


def parse_net(value: str) -> tuple[str | None, str | None]:
    """A ``netN`` value -> (MAC, static IPv4 or None), for QEMU and LXC alike.

    QEMU: ``virtio=BC:24:11:2E:C5:4A,bridge=vmbr0`` (or ``macaddr=``); LXC:
    ``name=eth0,hwaddr=AA:..,ip=10.0.0.50/24``. ``ip=dhcp``/``manual`` carry no address.
    """
    mac: str | None = None
    ip: str | None = None
    for part in str(value).split(","):
        key, _, item = part.partition("=")
        key = key.strip().lower()
        item = item.strip()
        if key in ("hwaddr", "macaddr") or (key in _QEMU_MODELS and item):
            try:
                mac = normalize_mac(item)
            except ValueError:
                continue
        elif key == "ip" and item not in ("", "dhcp", "manual"):
            try:
                ip = str(ipaddress.ip_interface(item).ip)
            except ValueError:
                continue
    return mac, ip


def _usable(ip: str) -> str | None:
    try:
        address = ipaddress.ip_address(ip.split("%")[0].split("/")[0])
    except ValueError:
        return None
    if address.is_loopback or address.is_link_local or address.is_unspecified:
        return None
    return str(address)


def agent_addresses(result: Any) -> dict[str, list[str]]:
    """QEMU agent ``network-get-interfaces`` result -> {mac: [usable IPs]} (IPv4 first)."""
    found: dict[str, list[str]] = {}
    if isinstance(result, dict):
        result = result.get("result", [])
    if not isinstance(result, list):
        return found
    for interface in result:
        if not isinstance(interface, dict) or not interface.get("hardware-address"):
            continue
        try:
            mac = normalize_mac(str(interface["hardware-address"]))
        except ValueError:
            continue
        ips = [ip for entry in interface.get("ip-addresses") or [] if isinstance(entry, dict)
               if (ip := _usable(str(entry.get("ip-address", ""))))]
        found.setdefault(mac, []).extend(sorted(ips, key=lambda a: ":" in a))
    return found


def lxc_addresses(interfaces: Any) -> dict[str, list[str]]:
    """LXC ``/interfaces`` -> {mac: [usable IPs]}; ``inet`` is CIDR."""
    found: dict[str, list[str]] = {}
    if not isinstance(interfaces, list):
        return found
    for interface in interfaces:
        if not isinstance(interface, dict) or not interface.get("hwaddr"):
            continue
        try:
            mac = normalize_mac(str(interface["hwaddr"]))
        except ValueError:
            continue
        ips = found.setdefault(mac, [])
        for key in ("inet", "inet6"):
            ip = _usable(str(interface.get(key) or ""))
            if ip:
                ips.append(ip)
    return found


def guest_identity(resource: dict[str, Any], cluster: str | None = None) -> ProxmoxGuest:
    """A ``/cluster/resources`` item -> ProxmoxGuest (vmid is a JSON number, tags ``a;b``)."""
    tags = [t[:255] for t in re.split(r"[;,\s]+", str(resource.get("tags") or "")) if t]
    return ProxmoxGuest(
        vm_id=int(resource["vmid"]),
        name=_cap(resource.get("name")),
        vm_type=_cap(resource.get("type")),
        node=_cap(resource.get("node")),
        status=_cap(resource.get("status")),
        tags=tags,
        cluster=_cap(cluster),
    )


def build_guest(resource: dict[str, Any], config: dict[str, Any] | None,
                live: dict[str, list[str]] | None, cluster: str | None = None) -> Guest:
    """Join one guest's identity, config NICs and live addresses (agent or LXC interfaces)."""
    guest = Guest(guest_identity(resource, cluster))
    by_mac: dict[str, Nic] = {}
    for key in sorted(k for k in (config or {}) if _NET_KEY.match(k)):
        mac, static_ip = parse_net(str((config or {})[key]))
        if mac is None:
            continue
        nic = by_mac.get(mac)
        if nic is None:
            nic = by_mac[mac] = Nic(mac, name=key)
            guest.nics.append(nic)
        if static_ip:
            nic.ips.append(static_ip)
    for mac, ips in (live or {}).items():
        if mac in by_mac:
            by_mac[mac].ips.extend(ip for ip in ips if ip not in by_mac[mac].ips)
        elif not by_mac:
            # No config NICs at all (odd, but possible with a restricted token): trust the agent.
            nic = Nic(mac, ips=list(ips))
            guest.nics.append(nic)
    return guest


def agent_enabled(config: dict[str, Any] | None) -> bool:
    """QEMU ``agent: 1`` / ``enabled=1,fstrim_cloned_disks=1`` / ``1,type=virtio``."""
    value = str((config or {}).get("agent", "0")).strip()
    first = value.split(",")[0]
    if "=" in first:
        for part in value.split(","):
            key, _, item = part.partition("=")
            if key.strip() == "enabled":
                return item.strip() in ("1", "true", "yes", "on")
        return False
    return first in ("1", "true", "yes", "on")


class GuestIndex:
    """Guests by MAC and by IP. A MAC match beats an IP match (IPs get reused)."""

    def __init__(self, guests: list[Guest]) -> None:
        self.guests = guests
        self.by_mac: dict[str, Guest] = {}
        self.by_ip: dict[str, Guest] = {}
        # Running guests are indexed last so they win: a stopped clone with the same static
        # IP must not take over the running guest's address.
        for guest in sorted(guests, key=lambda g: g.guest.status != "running", reverse=True):
            for mac in guest.macs:
                self.by_mac[mac] = guest
            for ip in guest.ips:
                self.by_ip[ip] = guest

    def lookup(self, mac: str | None, ip: str | None) -> Guest | None:
        if mac and mac in self.by_mac:
            return self.by_mac[mac]
        if ip and ip in self.by_ip:
            return self.by_ip[ip]
        return None

    def __len__(self) -> int:
        return len(self.guests)
