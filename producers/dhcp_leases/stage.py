"""The dhcp_leases producer: MikroTik leases and ARP table, then local lease files.

Each sweep reads the gateway's ``/ip/dhcp-server/lease`` (and ``/ip/arp``),
then every configured lease file, and reports what it learnt as HostSeen:

- a lease -> ``source="dhcp"``, ``evidence="lease:<status>"``, the whole
  DhcpLease attached, the lease host name as a hint; ``alive`` only for a
  bound/active lease that is neither disabled nor blocked (a ``waiting``
  static reservation says a host *may* exist, not that it is up);
- a router ARP row -> ``source="router_arp"``, ``evidence="router_arp:<status>"``;
  alive for reachable/permanent/delay/probe, not alive for stale; failed and
  incomplete rows are dropped.

A failing gateway does not fail the sweep: the error (naming the gateway,
never the password) is logged, the gateway is skipped until an exponential
backoff expires (so a wrong password does not flood the router's log with
login failures), and the lease-file results are still returned.
SweepCompleted is emitted per source only when that source was fully read, so
a gateway outage never counts as "every DHCP host missed a sweep". It covers
no address (``covered`` empty): reading a lease table sends nothing to the
hosts it names, so a missing lease is no evidence that a host is gone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import msgspec

from lanscope.runtime.stage import StageContext, StageDisabled
from lanscope.settings import Port, PositiveFloat, Secret, TlsConfig
from schemas import DhcpLease, Event, HostSeen, SweepCompleted
from schemas.types import host_key

from ._files import FileText, LeaseFileReader
from .leasefiles import FileLease, parse_file
from .routeros import RouterArp, arp_from_record, lease_from_record

log = logging.getLogger(__name__)
STAGE = "dhcp_leases"
LEASE_PATH = "ip/dhcp-server/lease"
ARP_PATH = "ip/arp"


class GatewayError(Exception):
    """The gateway could not be read. ``str()`` names the gateway; never the password."""

    def __init__(self, gateway: str, reason: str, *, retryable: bool = True) -> None:
        super().__init__(f"gateway {gateway}: {reason}")
        self.gateway = gateway
        self.reason = reason
        self.retryable = retryable


class GatewayConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A MikroTik RouterOS gateway (REST API, RouterOS 7.1+). The seed's keys: host, user, pass."""

    host: str | None = None                # empty: no gateway
    user: str = "admin"
    password: Secret | None = msgspec.field(default=None, name="pass")
    scheme: Literal["auto", "http", "https"] = "auto"  # auto: http for private addresses
    port: Port | None = None               # empty: 80 or 443
    tls: TlsConfig = msgspec.field(default_factory=TlsConfig)
    timeout_secs: PositiveFloat = 10.0
    arp_table: bool = True                 # also read /rest/ip/arp


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """producers.dhcp_leases in config.yaml (documented in config.sample.yaml)."""

    enabled: bool = True
    interval_secs: PositiveFloat = 120.0
    gateway: GatewayConfig = msgspec.field(default_factory=GatewayConfig)
    lease_files: list[str] = msgspec.field(default_factory=lambda: [   # globs; []: none
        "/var/lib/dhcp/dhclient.leases",
        "/var/lib/dhcp/dhclient.*.leases",
        "/var/lib/dhclient/*.leases",
        "/var/lib/NetworkManager/*.lease",
        "/run/systemd/netif/leases/*",
        "/var/lib/misc/dnsmasq.leases",
        "/var/lib/dnsmasq/dnsmasq.leases",
        "/var/lib/dhcp/dhcpd.leases",
        "/var/lib/dhcpd/dhcpd.leases",
        "/var/lib/kea/kea-leases4.csv",
    ])
    backoff_initial_secs: PositiveFloat = 30.0   # first wait after a gateway failure
    backoff_max_secs: PositiveFloat = 1800.0     # doubling stops here


class RouterOsApi(Protocol):
    host: str

    async def get(self, path: str) -> list[dict[str, Any]]: ...


class LeaseFileSource(Protocol):
    unmatched: list[str]            # of the last read: patterns that named no file
    unreadable: list[str]           # "path: why" of the files that could not be read

    async def read(self) -> list[FileText]: ...


class Backoff:
    """Exponential backoff on a monotonic clock: initial, 2x, 4x ... up to maximum."""

    def __init__(self, initial_secs: float, max_secs: float, clock: Callable[[], float]) -> None:
        self.initial_secs = initial_secs
        self.max_secs = max_secs
        self.clock = clock
        self.failures = 0
        self.next_attempt = 0.0

    def ready(self) -> bool:
        return self.clock() >= self.next_attempt

    def failed(self) -> float:
        self.failures += 1
        delay = min(self.max_secs, self.initial_secs * 2 ** (self.failures - 1))
        self.next_attempt = self.clock() + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.next_attempt = 0.0


@dataclass
class Lease:
    """A lease with how it was learnt (what HostSeen needs besides the DhcpLease)."""

    lease: DhcpLease
    alive: bool
    interface: str | None = None


@dataclass
class Snapshot:
    """Everything one read of the sources found (also what `lanscope leases` prints)."""

    leases: list[Lease] = field(default_factory=list)
    arp: list[RouterArp] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Lease files: a file that is not a lease file, or could not be read, is an error; lines
    # or blocks skipped inside one (a row cut mid-write) are warnings, the rest is kept.
    file_errors: list[str] = field(default_factory=list)
    file_warnings: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)   # patterns that named no file (often normal)
    gateway_read: bool = False        # the lease table was read in full
    arp_read: bool = False
    files: list[str] = field(default_factory=list)


class DhcpLeases:
    """Producer: ``await stage.sweep()`` every ``interval_secs``."""

    def __init__(self, config: Config, *, gateway: RouterOsApi | None = None,
                 files: LeaseFileSource | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config = config
        self.interval_secs = config.interval_secs
        self.gateway = gateway
        self.files = files
        self.now = now
        self.backoff = Backoff(config.backoff_initial_secs, config.backoff_max_secs, clock)
        self.arp_table = config.gateway.arp_table

    async def collect(self, *, ignore_backoff: bool = False) -> Snapshot:
        """Read the gateway (unless backing off), then the lease files."""
        snapshot = Snapshot()
        if self.gateway is not None:
            if ignore_backoff or self.backoff.ready():
                await self._read_gateway(self.gateway, snapshot)
            else:
                log.debug("gateway %s: backing off after %d failures", self.gateway.host,
                          self.backoff.failures, extra={"stage": STAGE})
        if self.files is not None:
            now = self.now()
            for file in await self.files.read():
                parsed = parse_file(file.path, file.text, now=now, mtime=file.mtime)
                snapshot.files.append(file.path)
                found = (snapshot.file_errors if parsed.format == "unknown" else snapshot.file_warnings)
                found += [f"lease file {file.path} ({parsed.format}): {p}" for p in parsed.problems]
                snapshot.leases.extend(_from_file(item) for item in parsed.leases)
            snapshot.unmatched = list(self.files.unmatched)
            snapshot.file_errors += [f"lease file {why}" for why in self.files.unreadable]
        return snapshot

    async def _read_gateway(self, gateway: RouterOsApi, snapshot: Snapshot) -> None:
        try:
            records = await gateway.get(LEASE_PATH)
            snapshot.leases.extend(self._leases(gateway.host, records, snapshot))
            snapshot.gateway_read = True
            if self.arp_table:
                arp_records = await gateway.get(ARP_PATH)
                snapshot.arp.extend(self._arp(gateway.host, arp_records, snapshot))
                snapshot.arp_read = True
        except GatewayError as exc:
            delay = self.backoff.failed()
            snapshot.errors.append(str(exc))
            log.error("%s; next attempt in %.0fs", exc, delay, extra={"stage": STAGE})
            return
        if self.backoff.failures:
            log.info("gateway %s: readable again", gateway.host, extra={"stage": STAGE})
        self.backoff.succeeded()

    def _leases(self, gateway: str, records: list[Any], snapshot: Snapshot) -> list[Lease]:
        # Keyed by (router, mac, address): RouterOS `.id`s are per-router and change on reboot.
        found: dict[tuple[str, str | None, str | None], Lease] = {}
        for index, record in enumerate(records):
            try:
                lease, problems = lease_from_record(record, gateway)
            except ValueError as exc:
                snapshot.errors.append(f"gateway {gateway}: lease record {index} skipped: {exc}")
                continue
            for problem in problems:
                log.warning("gateway %s: lease %s: %s", gateway, lease.address, problem,
                            extra={"stage": STAGE})
            alive = lease.status == "bound" and not lease.disabled and not lease.blocked
            key = (gateway, lease.mac, lease.address)
            if key not in found or alive:
                found[key] = Lease(lease, alive)
        return list(found.values())

    def _arp(self, gateway: str, records: list[Any], snapshot: Snapshot) -> list[RouterArp]:
        rows: dict[tuple[str, str], RouterArp] = {}
        for index, record in enumerate(records):
            try:
                row = arp_from_record(record, gateway)
            except ValueError as exc:
                snapshot.errors.append(f"gateway {gateway}: ARP record {index} skipped: {exc}")
                continue
            if row is not None:
                rows[(row.mac, row.address)] = row
        return list(rows.values())

    async def sweep(self) -> list[Event]:
        started = time.monotonic()
        observed = self.now()
        sweep_id = f"dhcp-{observed.strftime('%Y%m%dT%H%M%S.%fZ')}"
        snapshot = await self.collect()
        for error in snapshot.errors:
            if "skipped" in error:
                log.warning("%s", error, extra={"stage": STAGE})
        for problem in [*snapshot.file_errors, *snapshot.file_warnings[:5]]:
            log.warning("%s", problem, extra={"stage": STAGE})
        events: list[Event] = []
        for item in snapshot.leases:
            event = lease_event(item, observed, sweep_id)
            if event is not None:
                events.append(event)
        events.extend(arp_event(row, observed, sweep_id) for row in snapshot.arp)
        duration_ms = (time.monotonic() - started) * 1000
        gateway_ok = self.gateway is None or snapshot.gateway_read
        if gateway_ok and (self.gateway is not None or snapshot.files):
            targets = ([self.gateway.host] if self.gateway else []) + snapshot.files
            events.append(SweepCompleted(
                host_key=f"sweep:{sweep_id}", observed_at=observed, source="dhcp", sweep_id=sweep_id,
                targets=[t[:255] for t in targets],
                hosts_found=sum(1 for e in events if isinstance(e, HostSeen) and e.source == "dhcp"
                                and e.alive),
                duration_ms=duration_ms))
        if snapshot.arp_read and self.gateway is not None:
            events.append(SweepCompleted(
                host_key=f"sweep:{sweep_id}", observed_at=observed, source="router_arp",
                sweep_id=sweep_id, targets=[self.gateway.host],
                hosts_found=sum(1 for row in snapshot.arp if row.alive), duration_ms=duration_ms))
        return events


def _from_file(item: FileLease) -> Lease:
    return Lease(item.lease, item.alive, item.interface)


def lease_event(item: Lease, observed: datetime, sweep_id: str | None = None) -> HostSeen | None:
    """A lease as a sighting; None when it names neither a MAC nor an address."""
    lease = item.lease
    mac = lease.active_mac or lease.mac
    ip = lease.active_address or lease.address
    if mac is None and ip is None:
        return None
    return HostSeen(
        host_key=host_key(mac, ip), observed_at=observed, source="dhcp", ip=ip, mac=mac,
        alive=item.alive, evidence=f"lease:{lease.status or 'unknown'}"[:255],
        interface=item.interface, hostname=lease.hostname, lease=lease, sweep_id=sweep_id)


def arp_event(row: RouterArp, observed: datetime, sweep_id: str | None = None) -> HostSeen:
    return HostSeen(
        host_key=host_key(row.mac, row.address), observed_at=observed, source="router_arp",
        ip=row.address, mac=row.mac, alive=row.alive, evidence=f"router_arp:{row.status}",
        # `interface` is the scanner's own interface in HostSeen; the router's is not ours.
        neighbour_state=row.status, sweep_id=sweep_id)


def build(config: Config, ctx: StageContext) -> DhcpLeases:
    """The stage with its real I/O: a pooled RouterOS client and a lease file reader.

    A malformed TLS fingerprint raises ValueError."""
    g = config.gateway
    if not g.host and not config.lease_files:
        raise StageDisabled("no gateway.host and no lease_files")
    gateway = None
    if g.host:
        from ._http import RouterOsClient  # httpx: only when there is a gateway

        gateway = RouterOsClient(g.host, user=g.user, password=g.password, scheme=g.scheme,
                                 port=g.port, tls=g.tls, timeout_secs=g.timeout_secs)
    files = LeaseFileReader(config.lease_files) if config.lease_files else None
    return DhcpLeases(config, gateway=gateway, files=files)
