"""The event contract: every fact that crosses the bus.

Evolution rules (msgspec's): new fields get defaults, no field changes type,
a breaking change is a new type with a new tag and subject. Wire tags are
explicit snake_case strings. Wire structs never forbid unknown fields, so an
old reader accepts a newer writer's events. ``v`` is the revision of the
type's field set; readers must not depend on it for decoding.

Every event is a small fact keyed by ``host_key`` (the MAC when known, else
the IP) with ``observed_at`` (UTC) and ``source``. ``id`` is deterministic and
filled by the runtime before publishing (it is also the ``Nats-Msg-Id``).
``site`` (since Event v2; HostSeen, HostAnnotated, HostChanged and
SweepCompleted v3) says where it was observed: "" is the default site (a
single-site install, whose events keep the subjects they always had); a named
site's events travel under ``lanscope.<site>.…`` (schemas.subjects), and the
hosts they name are that site's (types.site_key): the same private range at two
sites is two sets of hosts. The runtime stamps it: producers' events get the
site of the process (``site:`` in config.yaml), an enricher's outputs that of
their input, and sinks carry their host's.

Decoding checks meaning as well as shape, so a value no stage can use is
refused where the message is read (and dead-lettered at once), not deep in a
sink: every IP must parse (it is replaced by its canonical text), MACs are in
lower-case colon form, ports and TTLs are in range, text, ids and keys are
capped, a site is a subject token of at most 32 characters and no entity's
name (``host``, ``dlq`` ...: its subjects would be another's). The address
checks are ``__post_init__`` methods (msgspec turns their ValueError into a
ValidationError naming the value); they run on construction too, so a stage
cannot publish what a reader would refuse.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Annotated, Any

import msgspec

from .record import Count, FieldChange, HostRecord
from .types import (
    ChangeKind,
    Cidr,
    Confidence,
    FindingState,
    Ip,
    Key,
    LongText,
    Mac,
    Port,
    PortState,
    Protocol,
    Severity,
    ShortText,
    Site,
    Ttl,
    canonical_ip,
    check_cidrs,
)

HttpStatus = Annotated[int, msgspec.Meta(ge=0, le=999)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]


def _ip(value: str | None, field: str) -> str | None:
    return None if value is None else canonical_ip(value, field)


# gc=False on events and their parts: they hold values, lists and other parts, never a
# reference back, so they can be in no cycle; untracked, the batches a sink holds cost the
# garbage collector nothing (decode + fold of 200,000 facts: GC 1.0 -> 0.2 us/event).
class Event(msgspec.Struct, kw_only=True, tag_field="type", omit_defaults=False, gc=False):
    """Fields common to every event."""

    id: Key = ""
    v: int = 2
    host_key: Key
    observed_at: datetime
    source: ShortText
    site: Site = ""                       # since v2; "" = the default site


# --------------------------------------------------------------------------
# Parts


class DhcpLease(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """A DHCP lease as a server (MikroTik, dnsmasq, dhcpd, Kea) or client file tells it."""

    address: Ip | None = None
    mac: Mac | None = None
    client_id: ShortText | None = None
    hostname: ShortText | None = None
    dynamic: bool | None = None          # False = static reservation
    status: ShortText | None = None      # bound, waiting, offered, active, expired, ...
    expires_after_secs: int | None = None  # None = never / unknown
    expires_at: datetime | None = None
    last_seen_secs: int | None = None    # seconds ago; None = never
    server: ShortText | None = None      # DHCP server name or address
    comment: ShortText | None = None
    disabled: bool | None = None
    blocked: bool | None = None
    active_address: Ip | None = None
    active_mac: Mac | None = None
    gateway: ShortText | None = None     # which router or file reported it
    origin: ShortText | None = None      # mikrotik, dnsmasq, dhcpd, kea, dhclient, ...

    def __post_init__(self) -> None:
        self.address = _ip(self.address, "lease.address")
        self.active_address = _ip(self.active_address, "lease.active_address")


class DhcpRequest(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """What a DHCP client broadcast (DISCOVER, REQUEST, INFORM ...), as the passive listener
    heard it: the client's own word, not the server's lease."""

    message: ShortText                    # discover | request | inform | decline | release
    hostname: ShortText | None = None     # option 12
    vendor_class: ShortText | None = None  # option 60, e.g. "MSFT 5.0", "android-dhcp-13"
    parameters: list[int] = []            # option 55 in the client's order: its fingerprint
    client_id: ShortText | None = None    # option 61, hex "01:aa:bb:cc:dd:ee:ff"
    requested_ip: Ip | None = None        # option 50

    def __post_init__(self) -> None:
        self.requested_ip = _ip(self.requested_ip, "dhcp.requested_ip")


class Advertised(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """A service a host announces itself (mDNS/DNS-SD, SSDP/UPnP, router advertisements)."""

    type: ShortText                       # "_ipp._tcp", "urn:schemas-upnp-org:device:MediaServer:1"
    name: ShortText | None = None         # the instance name ("Office printer")
    port: Port | None = None


class SnmpInterface(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    index: int
    name: ShortText | None = None         # ifDescr / ifName
    mac: Mac | None = None                # ifPhysAddress
    type: int | None = None               # ifType (6 ethernetCsmacd, 71 ieee80211, 24 loopback ...)


class LldpNeighbour(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """One row of LLDP-MIB lldpRemTable: a device seen on one of the agent's ports."""

    local_port: ShortText | None = None   # the agent's port (lldpLocPortId / its number)
    chassis_id: ShortText | None = None   # often the neighbour's MAC
    port_id: ShortText | None = None
    port_description: ShortText | None = None
    system_name: ShortText | None = None
    system_description: LongText | None = None


class SnmpSystem(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """What an SNMP agent says about its device (SNMPv2-MIB system, IF-MIB, LLDP-MIB)."""

    sys_name: ShortText | None = None
    sys_descr: LongText | None = None
    sys_object_id: ShortText | None = None
    sys_services: int | None = None       # RFC 1213 bit mask: 2 bridge, 4 router, 64 application
    interfaces: list[SnmpInterface] = []
    neighbours: list[LldpNeighbour] = []


class ProxmoxGuest(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    vm_id: Count
    name: ShortText | None = None
    vm_type: ShortText | None = None     # qemu | lxc
    node: ShortText | None = None
    status: ShortText | None = None      # running | stopped | paused ...
    tags: list[ShortText] = []
    cluster: ShortText | None = None


class TlsCert(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    subject: LongText | None = None
    issuer: LongText | None = None
    sans: list[ShortText] = []
    not_before: datetime | None = None
    not_after: datetime | None = None
    self_signed: bool | None = None
    sha256: ShortText | None = None


class PortResult(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """One port of one host, as nmap reports it, plus what the banner told."""

    protocol: Protocol
    port: Port
    state: PortState
    reason: ShortText = ""                # syn-ack, conn-refused, no-response, udp-response, port-unreach
    reason_ttl: Ttl | None = None
    banner: LongText | None = None        # escaped text: non-printable bytes as \\xNN
    service: ShortText | None = None      # ssh, http, mysql ...
    product: ShortText | None = None      # OpenSSH, nginx ...
    version: ShortText | None = None
    extra_info: ShortText | None = None
    cpe: list[ShortText] = []
    os_hint: ShortText | None = None
    device_type: ShortText | None = None
    confidence: Confidence | None = None
    tunnel: ShortText | None = None       # "ssl" when the service speaks TLS
    http_status: HttpStatus | None = None
    http_title: ShortText | None = None
    tls: TlsCert | None = None
    auth_required: bool | None = None     # False = answered a data command without credentials
    method: ShortText | None = None       # "banner" | "probe" | "port" (how the service was named)


# Cached: port names repeat for every probe of every host (~0.15 us instead of ~0.45).
@functools.lru_cache(maxsize=65536)
def port_name(protocol: Protocol, port: int) -> str:
    """"tcp/22": how open_ports, findings rules and finding ids name a port."""
    return f"{protocol.value}/{port}"


class OsGuess(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    name: ShortText                       # e.g. "Linux", "Windows", "Ubuntu 22.04"
    family: ShortText | None = None       # linux | windows | bsd | network | embedded
    confidence: Confidence = 0
    evidence: list[ShortText] = []        # "ttl=64", "ssh banner Ubuntu-4ubuntu0.5" ...


# --------------------------------------------------------------------------
# Events


class HostSeen(Event, tag="host_seen", kw_only=True):
    """A producer saw a host (or heard about one from a lease or an API).

    Since v2: ``dhcp``, what a DHCP client broadcast (the passive listener)."""

    v: int = 3
    ip: Ip | None = None
    mac: Mac | None = None
    alive: bool = True                    # False: not evidence of presence (a STALE neighbour)
    evidence: ShortText = ""              # arp-reply, echo-reply, syn-ack, neighbour:REACHABLE, lease:bound
    interface: ShortText | None = None
    rtt_ms: NonNegative | None = None
    ttl: Ttl | None = None
    hostname: ShortText | None = None     # a hint (lease host-name, DNS, guest name)
    neighbour_state: ShortText | None = None
    lease: DhcpLease | None = None
    guest: ProxmoxGuest | None = None
    sweep_id: ShortText | None = None     # one id per producer sweep, for "missed sweeps" presence
    dhcp: DhcpRequest | None = None       # a DHCP client's DISCOVER/REQUEST (source "passive")

    def __post_init__(self) -> None:
        # The hot path: an address already seen is one dict lookup (canonical_ip remembers).
        if self.ip is not None:
            self.ip = canonical_ip(self.ip)


class SweepCompleted(Event, tag="sweep_completed", kw_only=True):
    """A producer finished one sweep; host_state counts missed sweeps with it.

    ``covered`` (since v2) is what the sweep covered: exactly the addresses it sent
    a probe to, as CIDRs ("198.18.0.0/25"), each ``address/prefix`` with no host
    bits set, IPv4 before IPv6, ascending, disjoint, as few as hold the set. What the
    producer skipped (excludes, its own addresses, network and broadcast addresses)
    is not in it; a sweep that sent nothing (DHCP leases read from a router) covers
    nothing. Readers must reject (not skip) an entry that is not a CIDR.
    ``targets`` is what was asked for, as written (nmap syntax, lease sources):
    for people, not for presence. A sweep covers addresses of its own site only.
    """

    v: int = 3
    targets: list[ShortText] = []         # what was asked for (informational)
    sweep_id: ShortText = ""
    hosts_found: Count = 0
    duration_ms: NonNegative = 0.0
    covered: list[Cidr] = []              # the addresses probed, as CIDRs (see above)

    def __post_init__(self) -> None:
        if self.covered:
            check_cidrs(self.covered)


class HostAnnotated(Event, tag="host_annotated", kw_only=True):
    """An enricher's addition to a host: a name, a vendor, a Proxmox guest.

    Since v2, what a host says about itself (sources mdns, ssdp, netbios, snmp, passive):
    the services it announces, its model and maker, its NetBIOS workgroup, its SNMP system.
    ``advertised`` is the source's whole current list for the host (it replaces that
    source's previous one); None fields say nothing."""

    v: int = 3
    ip: Ip | None = None
    mac: Mac | None = None
    hostname: ShortText | None = None
    vendor: ShortText | None = None
    mac_randomized: bool | None = None
    guest: ProxmoxGuest | None = None
    advertised: list[Advertised] | None = None
    model: ShortText | None = None
    manufacturer: ShortText | None = None
    workgroup: ShortText | None = None
    snmp: SnmpSystem | None = None

    def __post_init__(self) -> None:
        if self.ip is not None:
            self.ip = canonical_ip(self.ip)


class PortsProbed(Event, tag="ports_probed", kw_only=True):
    """The result of probing one host's ports (a full snapshot for the probed set)."""

    ip: Ip
    mac: Mac | None = None
    ports: list[PortResult] = []
    scanned: list[ShortText] = []         # port specs that were probed, e.g. "tcp:1-1024"
    scan_type: ShortText = "connect"      # connect | syn | udp
    os: OsGuess | None = None
    duration_ms: NonNegative = 0.0

    def __post_init__(self) -> None:
        self.ip = canonical_ip(self.ip)


class HostChanged(Event, tag="host_changed", kw_only=True):
    """What the host_state sink concluded: a host is new, changed, gone or back.

    Published only when a fact changed; the history table holds one row per change,
    keyed by this event's id.

    v2: the host record has names by source, advertised services, model, SNMP system
    and the device type with its confidence and reasons. v3: the site (the event's and
    the record's). v4: the record's ``flapping`` (a fact), ``rtt_ms`` and ``ttl``
    (observations); ``changes`` are facts only."""

    v: int = 4
    kind: ChangeKind
    changes: Annotated[list[FieldChange], msgspec.Meta(
        description="the facts that changed (first old, last new value in the batch); "
                    "observations never appear here")] = []
    host: HostRecord
    evidence: Annotated[ShortText | None, msgspec.Meta(
        description="why presence changed: the sighting that brought it back, or the missed "
                    "sweeps and the confirmation that failed (what was tried)")] = None


class HostCheckRequested(Event, tag="host_check_requested", kw_only=True):
    """host_state asks for a direct check of a host that missed enough sweeps to be gone.

    A sink sends no packets: the presence_check enricher answers with a HostSeen
    (source ``presence_check``) when the host replied, or a HostUnreachable naming
    what it tried. ``host_key`` is the record's key, to be repeated in the answer."""

    ip: Ip
    mac: Mac | None = None
    open_ports: list[Port] = []           # TCP ports the host last had open (off-link checks)
    reason: ShortText = ""                # "missed 2 sweeps covering ... since ..."

    def __post_init__(self) -> None:
        self.ip = canonical_ip(self.ip)


class HostUnreachable(Event, tag="host_unreachable", kw_only=True):
    """presence_check tried a host directly and it did not answer: host_state may say gone."""

    ip: Ip
    mac: Mac | None = None
    request_id: Key                       # the HostCheckRequested this answers
    tried: list[ShortText] = []           # "arp 198.18.0.2 on br0 to dc:a6:32:00:00:02 x3", ...
    started_at: datetime                  # when the first probe went out
    duration_ms: NonNegative = 0.0

    def __post_init__(self) -> None:
        self.ip = canonical_ip(self.ip)


class Finding(Event, tag="finding", kw_only=True):
    """A security finding opened or resolved (a lifecycle, not a one-off alert)."""

    finding_id: Key                       # stable: rule + host + detail
    state: FindingState
    rule: ShortText
    severity: Severity
    category: ShortText
    title: LongText
    ip: Ip | None = None
    mac: Mac | None = None
    port: Port | None = None
    evidence: LongText = ""
    first_seen: datetime
    last_seen: datetime

    def __post_init__(self) -> None:
        self.ip = _ip(self.ip, "ip")


class RegistryEntry(Event, tag="registry_entry", kw_only=True):
    """The host registry's view of one inventory entry after a register/sync."""

    entry_id: Key
    action: ShortText                     # created | updated
    ip: Ip | None = None
    internal_ip: Ip | None = None
    hostname: ShortText | None = None
    mac: Mac | None = None
    os_hint: ShortText | None = None
    services: list[ShortText] = []
    owner: ShortText | None = None
    notes: LongText | None = None
    last_seen: datetime | None = None

    def __post_init__(self) -> None:
        self.ip = _ip(self.ip, "ip")
        self.internal_ip = _ip(self.internal_ip, "internal_ip")


class ProbeRequested(Event, tag="probe_requested", kw_only=True):
    """A person asked for a host to be probed now (the dashboard's "probe now").

    port_probe probes ``ip`` whatever its re-probe interval, if the address is in
    its scope (else it refuses and says why), and drops a request older than its
    ``request_max_age_secs``: a request replayed from the stream much later is no
    longer anyone's wish. ``requested_by`` says who asked (for the log)."""

    ip: Ip
    mac: Mac | None = None
    requested_by: ShortText = ""

    def __post_init__(self) -> None:
        self.ip = canonical_ip(self.ip)


AnyEvent = (
    HostSeen | SweepCompleted | HostAnnotated | PortsProbed | HostChanged | HostCheckRequested
    | HostUnreachable | Finding | RegistryEntry | ProbeRequested
)
EVENT_TYPES: tuple[type[Event], ...] = (
    HostSeen,
    SweepCompleted,
    HostAnnotated,
    PortsProbed,
    HostChanged,
    HostCheckRequested,
    HostUnreachable,
    Finding,
    RegistryEntry,
    ProbeRequested,
)

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)


def encode(event: Event) -> bytes:
    """JSON bytes for the wire."""
    return _encoder.encode(event)


def decode(data: bytes) -> AnyEvent:
    """Decode any event; raises msgspec.DecodeError / ValidationError naming the bad field."""
    return _decoder.decode(data)


def tag_of(event_type: type[Event]) -> str:
    """The wire tag of an event type (``"host_seen"``)."""
    tag = event_type.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def json_schema() -> dict[str, Any]:
    """JSON Schema of every event, for subscribers in other languages."""
    _, components = msgspec.json.schema_components(EVENT_TYPES, ref_template="#/$defs/{name}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "lanscope events",
        "oneOf": [{"$ref": f"#/$defs/{t.__name__}"} for t in EVENT_TYPES],
        "$defs": components,
    }
