"""The lab's declared topology: every host, its addresses, MAC and expected ports.

Pure data, no side effects. `build_hosts` is the single source of truth used
by the lab builder, the DNS server's records, the README table and the tests.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

SUBNET = "198.18.0.0/16"
LIVE_24 = "198.18.0.0/24"
OFFLINK = "198.19.0.0/24"
DOWN_IP = "198.18.0.99"
DNS_IP = "198.18.0.53"
DOMAIN = "lab.test"
SCANNER_IP = "198.18.0.1"
SCANNER_IP6 = "fd00:1a5::1"
SCANNER_MAC = "02:1a:5c:00:00:01"
ROUTER_IP = "198.18.0.254"
ROUTER_OFF_IP = "198.19.0.1"
ULA_PREFIX = "fd00:1a5::"

# Vendor OUIs used for deterministic MACs (IEEE registry names, abridged).
PROXMOX = ("bc:24:11", "Proxmox Server Solutions GmbH")
RPI_FOUNDATION = ("b8:27:eb", "Raspberry Pi Foundation")
RPI_TRADING = ("dc:a6:32", "Raspberry Pi Trading Ltd")
INTEL = ("00:1b:21", "Intel Corporate")
CISCO = ("00:00:0c", "Cisco Systems, Inc")
DELL = ("00:14:22", "Dell Inc.")
VMWARE = ("00:50:56", "VMware, Inc.")
VMWARE_GUEST = ("00:0c:29", "VMware, Inc.")
LOCAL = ("02:1a:5c", "")  # locally administered: no vendor
HP = ("3c:d9:2b", "Hewlett Packard")
SYNOLOGY = ("00:11:32", "Synology Incorporated")

# Guest NICs of hypervisors: a host with one of these is a virtual machine (or container).
_VM_OUIS = (PROXMOX, VMWARE, VMWARE_GUEST)

# DHCP in the lab (dnsmasq on the dns host): the pool joining hosts get addresses from,
# and the reserved address of the lab's one DHCP client host.
DHCP_RANGE = ("198.18.2.1", "198.18.2.254")
DHCP_HOST = "iot"
# Joining hosts (Lab.join): locally administered MACs of their own, never a declared host's.
JOIN_OUI = "02:1a:5d"


@dataclass(frozen=True)
class LabHost:
    """One address in the lab and what a scanner should find there."""

    name: str
    ns: str
    ip: str
    ip6: str | None
    mac: str
    on_link: bool
    drops_icmp: bool
    tcp_open: tuple[int, ...]
    tcp_closed: tuple[int, ...]
    tcp_filtered: tuple[int, ...]
    udp_open: tuple[int, ...]
    services: tuple[str, ...]
    vendor: str = ""
    dhcp: bool = False  # gets its address from the lab's DHCP server (a reservation)
    # What a device-type classifier should call it ("" for hosts whose evidence says nothing).
    device_type: str = ""
    # Interface name of the host's veth peer in the namespace holding its
    # segment's bridge (scanner ns for on-link hosts, router ns otherwise).
    peer_if: str = field(default="", compare=False)

    @property
    def fqdn(self) -> str:
        """The host's DNS name in the lab zone."""
        return f"{self.name}.{DOMAIN}"


@dataclass(frozen=True)
class _Spec:
    name: str
    ip: str
    oui: tuple[str, str] = PROXMOX
    services: tuple[str, ...] = ()
    tcp_open: tuple[int, ...] = ()
    tcp_closed: tuple[int, ...] = ()
    tcp_filtered: tuple[int, ...] = ()
    udp_open: tuple[int, ...] = ()
    drops_icmp: bool = False
    ipv6: bool = False
    dhcp: bool = False
    device_type: str = ""


# Service hosts: each runs one real server bound to its lab address.
_SERVICE_SPECS: tuple[_Spec, ...] = (
    _Spec("ssh", "198.18.0.10", services=("openssh",), tcp_open=(22,), tcp_closed=(23,)),
    _Spec("dropbear", "198.18.0.11", services=("dropbear",), tcp_open=(22,), tcp_closed=(23,)),
    _Spec("nginx", "198.18.0.12", services=("nginx",), tcp_open=(80,), tcp_closed=(443,)),
    _Spec("apache", "198.18.0.13", services=("apache",), tcp_open=(80,), tcp_closed=(443,)),
    _Spec("redis", "198.18.0.14", services=("redis",), tcp_open=(6379,), tcp_closed=(6380,)),
    _Spec("mqtt", "198.18.0.15", services=("mosquitto",), tcp_open=(1883,), tcp_closed=(8883,)),
    _Spec("mariadb", "198.18.0.16", services=("mariadb",), tcp_open=(3306,), tcp_closed=(33060,)),
    _Spec("postgres", "198.18.0.17", services=("postgresql",), tcp_open=(5432,), tcp_closed=(5433,)),
    _Spec("ftp", "198.18.0.18", services=("vsftpd",), tcp_open=(21,), tcp_closed=(22,)),
    _Spec("lighttpd", "198.18.0.19", services=("lighttpd",), tcp_open=(80,), tcp_closed=(443,)),
    _Spec("smtp", "198.18.0.20", services=("postfix",), tcp_open=(25,), tcp_closed=(587,)),
    _Spec("snmp", "198.18.0.21", services=("snmpd", "lldpd"), udp_open=(161,), tcp_closed=(161,)),
    _Spec("noicmp", "198.18.0.30", services=("nginx",), tcp_open=(80,), tcp_closed=(22,), drops_icmp=True),
    _Spec(
        "filtered",
        "198.18.0.31",
        services=("nginx",),
        tcp_open=(80,),
        tcp_closed=(8082,),
        tcp_filtered=(8081,),
    ),
    _Spec("dns", DNS_IP, services=("dnsmasq",), tcp_open=(53,), udp_open=(53,), tcp_closed=(80,)),
    # Devices that say what they are (issue 23): mDNS (avahi), NetBIOS (nmbd), UPnP (minidlna),
    # a DHCP client (BusyBox udhcpc), SNMP with LLDP (snmpd + lldpd).
    _Spec("printer", "198.18.0.23", HP, services=("avahi",), tcp_closed=(631,), device_type="printer"),
    _Spec("nas", "198.18.0.24", SYNOLOGY, services=("avahi", "nmbd"), udp_open=(137,),
          tcp_closed=(445,), device_type="nas"),
    _Spec("media", "198.18.0.25", INTEL, services=("minidlna",), tcp_open=(8200,), udp_open=(1900,),
          device_type="media"),
    _Spec("desktop", "198.18.0.26", DELL, services=("avahi", "nmbd", "lldpd"), udp_open=(137,),
          tcp_closed=(22,), device_type="computer"),
    _Spec(DHCP_HOST, "198.18.0.27", LOCAL, services=("udhcpc",), tcp_closed=(80,), dhcp=True,
          device_type="iot"),
)

_RABBITMQ_SPEC = _Spec(
    "rabbitmq", "198.18.0.22", services=("rabbitmq",), tcp_open=(5672,), tcp_closed=(5671,)
)

# Plain hosts: answer ARP and ICMP, nothing listening.
_FILLER_IPS = (2, 3, 4, 5, 6, 7, 8, 9, 41, 42, 43, 44, 45, 64, 65, 66, 100, 101, 102, 128, 150, 200, 201, 250)
_FILLER_OUIS = (RPI_FOUNDATION, RPI_TRADING, INTEL, CISCO, DELL, VMWARE)
_SPARSE_IPS = (
    "198.18.1.1",
    "198.18.7.33",
    "198.18.17.171",
    "198.18.42.42",
    "198.18.63.5",
    "198.18.100.200",
    "198.18.128.1",
    "198.18.200.7",
    "198.18.254.254",
    "198.18.255.10",
)
# The one host with a locally administered MAC (no vendor).
LOCAL_MAC_HOST = "f24"

# Behind the router, on 198.19.0.0/24.
_OFFLINK_SPECS: tuple[_Spec, ...] = (
    _Spec("off1", "198.19.0.10", VMWARE_GUEST, ("nginx",), (80,), (22,), drops_icmp=True),
    _Spec("off2", "198.19.0.11", VMWARE_GUEST, tcp_closed=(22,)),
)


def _mac(oui: tuple[str, str], ip: str) -> str:
    """OUI + three bytes derived from the address: unique and stable."""
    octets = ipaddress.IPv4Address(ip).packed
    segment = octets[1] - 18  # 198.18 -> 0, 198.19 -> 1
    return f"{oui[0]}:{segment:02x}:{octets[2]:02x}:{octets[3]:02x}"


def _ip6(ip: str) -> str:
    """ULA address whose last group spells the IPv4 last octet: .10 -> ::10."""
    return f"{ULA_PREFIX}{ip.rsplit('.', 1)[1]}"


def _host(prefix: str, spec: _Spec, *, on_link: bool, with_ip6: bool) -> LabHost:
    return LabHost(
        name=spec.name,
        ns=f"{prefix}-{spec.name}",
        ip=spec.ip,
        ip6=_ip6(spec.ip) if with_ip6 else None,
        mac=_mac(spec.oui, spec.ip),
        on_link=on_link,
        drops_icmp=spec.drops_icmp,
        tcp_open=spec.tcp_open,
        tcp_closed=spec.tcp_closed,
        tcp_filtered=spec.tcp_filtered,
        udp_open=spec.udp_open,
        services=spec.services,
        vendor=spec.oui[1],
        dhcp=spec.dhcp,
        device_type=spec.device_type or ("virtual_machine" if spec.oui in _VM_OUIS else ""),
        peer_if=f"h-{spec.name}",
    )


def _fillers() -> list[_Spec]:
    specs = []
    for i, last in enumerate(_FILLER_IPS, start=1):
        name = f"f{i:02d}"
        oui = LOCAL if name == LOCAL_MAC_HOST else _FILLER_OUIS[i % len(_FILLER_OUIS)]
        specs.append(_Spec(name, f"198.18.0.{last}", oui))
    for i, ip in enumerate(_SPARSE_IPS, start=1):
        specs.append(_Spec(f"s{i:02d}", ip, _FILLER_OUIS[i % len(_FILLER_OUIS)]))
    return specs


def router_hosts(prefix: str) -> list[LabHost]:
    """The router's two addresses, as hosts a scanner will see."""
    ns = f"{prefix}-rtr"
    common = dict(ns=ns, ip6=None, drops_icmp=False, tcp_open=(), tcp_filtered=(), udp_open=(), services=())
    return [
        LabHost(
            name="rtr",
            ip=ROUTER_IP,
            mac=_mac(CISCO, ROUTER_IP),
            on_link=True,
            tcp_closed=(22,),
            vendor=CISCO[1],
            peer_if="h-rtr",
            **common,  # type: ignore[arg-type]
        ),
        LabHost(
            name="rtr-off",
            ip=ROUTER_OFF_IP,
            mac=_mac(CISCO, ROUTER_OFF_IP),
            on_link=False,
            tcp_closed=(22,),
            vendor=CISCO[1],
            **common,  # type: ignore[arg-type]
        ),
    ]


def build_hosts(prefix: str, *, full: bool = False) -> list[LabHost]:
    """The declared topology for one lab prefix.

    `full` adds the slow services (RabbitMQ).
    """
    services = list(_SERVICE_SPECS) + ([_RABBITMQ_SPEC] if full else [])
    hosts = [_host(prefix, s, on_link=True, with_ip6=True) for s in services]
    hosts += [_host(prefix, s, on_link=True, with_ip6=False) for s in _fillers()]
    hosts += router_hosts(prefix)
    hosts += [_host(prefix, s, on_link=False, with_ip6=False) for s in _OFFLINK_SPECS]
    return hosts


def all_host_names(*, full: bool = True) -> list[str]:
    """Every host name any lab configuration may create (for cleanup)."""
    return [h.name for h in build_hosts("x", full=full) if not h.ns.endswith("-rtr")]
