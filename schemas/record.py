"""The host record: what the host_state sink knows of a host, as every HostChanged carries it.

Its fields are facts or observations (sinks/host_state/README.md, "Facts and
observations"), and each field's schema description says which: a change of a fact
is a ``FieldChange`` of a ``HostChanged`` and a history row; an observation only
updates its column. ``lanscope schema`` shows the descriptions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from .types import Confidence, Ip, Key, LongText, Mac, ShortText, Site, Ttl, canonical_ip

Count = Annotated[int, msgspec.Meta(ge=0)]


class FieldChange(msgspec.Struct, kw_only=True, gc=False):
    """One fact of a HostRecord that changed (never an observation: see HostRecord)."""

    field: ShortText
    old: Any = None
    new: Any = None


def _fact(what: str) -> msgspec.Meta:
    return msgspec.Meta(description=f"fact (a change is a HostChanged and a history row): {what}")



def _observation(what: str) -> msgspec.Meta:
    return msgspec.Meta(description=f"observation (updated in place, never a HostChanged): {what}")


class HostRecord(msgspec.Struct, kw_only=True, omit_defaults=False, gc=False):
    """A host's current state as the host_state sink knows it.

    Facts are what the host is (identity, addresses, names, services, presence); a
    change of one is reported. Observations are how it was last seen (per-source
    times, neighbour state, round-trip time, TTL); they move with every sighting and
    are never reported as changes. Undescribed fields move with a fact (vm_id with
    vm_name, the device type's confidence and reasons with device_type, names with
    hostname) and are never reported alone."""

    host_key: Annotated[Key, _fact("identity: types.site_key(site, the MAC when known, else the IP)")]
    mac: Annotated[Mac | None, _fact("identity: the hardware address")] = None
    ip: Annotated[Ip | None, _fact("the primary address (IPv4 before IPv6, a new address "
                                   "before a known one)")] = None
    ips: Annotated[list[Ip], _fact("every address of the host, newest first (up to 16)")] = []
    hostname: Annotated[ShortText | None, _fact("name (DNS, then DHCP, then Proxmox, then what "
                                                "the host calls itself)")] = None
    vendor: Annotated[ShortText | None, _fact("MAC vendor")] = None
    mac_randomized: bool | None = None
    os_hint: Annotated[ShortText | None, _fact("operating system")] = None
    services: Annotated[list[ShortText], _fact('open services, "tcp/22 ssh OpenSSH 9.2p1"')] = []
    open_ports: Annotated[list[ShortText], _fact('open ports, "tcp/22"')] = []
    dhcp_type: Annotated[ShortText | None, _fact("static | dynamic lease")] = None
    dhcp_status: Annotated[ShortText | None, _fact("lease status")] = None
    dhcp_comment: Annotated[ShortText | None, _fact("lease comment")] = None
    arp_state: Annotated[ShortText | None, _observation(
        'neighbour state (REACHABLE, STALE, ...) or "reply" (an ARP reply)')] = None
    active: Annotated[bool, _fact("present: alive evidence, until gone (confirmed)")] = False
    flapping: Annotated[bool, _fact("gone and back more often than the configured limit within "
                                    "the window; reported once per window while it lasts")] = False
    vm_name: Annotated[ShortText | None, _fact("Proxmox guest name")] = None
    vm_id: Count | None = None
    vm_type: ShortText | None = None
    vm_node: ShortText | None = None
    vm_status: ShortText | None = None
    first_seen: datetime | None = None
    last_seen: Annotated[datetime | None, _observation("the newest sighting")] = None
    last_seen_by: Annotated[dict[ShortText, datetime], _observation("the newest sighting per source")] = {}
    # Since HostChanged v2: names and identity from the passive sources, and the device type.
    names: dict[str, ShortText] = {}      # name source (dns, dhcp, mdns, netbios ...) -> name
    advertised: Annotated[list[ShortText], _fact(
        "service types the host announces (mDNS, SSDP, RA)")] = []
    model: Annotated[ShortText | None, _fact("model")] = None
    manufacturer: Annotated[ShortText | None, _fact("manufacturer")] = None
    workgroup: Annotated[ShortText | None, _fact("NetBIOS workgroup or domain")] = None
    dhcp_fingerprint: Annotated[ShortText | None, _fact('DHCP option 55 as "1,3,6,15,..."')] = None
    dhcp_vendor_class: Annotated[ShortText | None, _fact("DHCP option 60")] = None
    sys_object_id: Annotated[ShortText | None, _fact("SNMP sysObjectID")] = None
    sys_descr: Annotated[LongText | None, _fact("SNMP sysDescr")] = None
    interfaces: Annotated[list[ShortText], _fact('SNMP ifTable: "eth0 aa:bb:cc:dd:ee:ff"')] = []
    neighbours: Annotated[list[ShortText], _fact('LLDP: "port 3: switch2 (Gi0/1)"')] = []
    device_type: Annotated[ShortText | None, _fact(
        "router, switch, printer, nas ... (see device_types.yaml)")] = None
    device_type_confidence: Confidence | None = None
    device_type_reasons: list[ShortText] = []
    site: Site = ""                       # the host's site ("" = the default site)
    # Since HostChanged v4: flapping above, and how the host was last seen.
    rtt_ms: Annotated[float | None, _observation("round-trip time of the newest timed reply")] = None
    ttl: Annotated[Ttl | None, _observation("TTL of the newest reply that carried one")] = None

    def __post_init__(self) -> None:
        self.ip = None if self.ip is None else canonical_ip(self.ip, "host.ip")
        if self.ips:
            self.ips = [canonical_ip(ip, "host.ips") for ip in self.ips]
