"""``lanscope discover TARGETS``: the whole discovery in one shot, persisted, with a summary.

    lanscope discover 192.168.1.0/24
    lanscope discover 192.168.1.0/24 --gateway 192.168.1.1 --gateway-pass-env ROUTER_PASS --json

The seed's full discovery: ARP + ICMP/TCP ping (``discover_hosts``), the
kernel neighbour table, DHCP leases (a MikroTik gateway, then lease files),
then the enrichers (ports, banners and fingerprints; reverse DNS; MAC vendor;
Proxmox names when configured) and the sinks (``host_state`` writes DuckDB;
``registry`` with ``--register`` or ``sinks.registry``), composed in-process by
the runtime's ``LocalPipeline`` — the same stage code, ids and DuckDB rows as
``lanscope run``. Only the targets are port-probed; leases outside them are
stored as facts but get no packets.

DuckDB has one writer: when ``lanscope run`` owns the file this command stops
before sending anything and says so (the pipeline discovers continuously).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from lanscope.commands._remote import env_secret
from lanscope.commands._targets import add_target_arguments, targets_from_args
from lanscope.config import Config
from lanscope.errors import LanscopeError, UsageError
from lanscope.net.targets import Targets
from lanscope.output import print_json, print_line, print_table, progress, warn
from lanscope.runtime.local import LocalPipeline
from lanscope.runtime.stage import StageContext, StageDisabled
from lanscope.runtime.topology import STAGES, StageSpec
from schemas import ChangeKind, Event, HostChanged, HostSeen, SweepCompleted

HELP = "one-shot full discovery, persisted, with a summary"
# Enrichers and sinks in topology order; host_state first among the sinks, so a
# pipeline holding the DuckDB lock is found before anything else is opened. presence_check
# answers host_state's checks of hosts this discovery missed (the next round of the pipeline).
_STAGES = ("port_probe", "dns_names", "mac_vendor", "proxmox_names", "presence_check", "host_state",
           "registry")

Progress = Callable[[int, int], None]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser)
    parser.add_argument("--register", action="store_true",
                        help="create a registry entry for every new host (sinks.registry mode "
                             "register); default: sinks.registry from the config")
    gateway = parser.add_argument_group("DHCP leases (MikroTik RouterOS 7 REST; then lease files)")
    gateway.add_argument("--gateway", metavar="HOST",
                         help="the router (default: producers.dhcp_leases.gateway.host)")
    gateway.add_argument("--gateway-user", metavar="USER", help="RouterOS user (default: the configured one)")
    gateway.add_argument("--gateway-pass-env", metavar="VAR",
                         help="read the RouterOS password from environment variable VAR "
                              "(default: the configured one)")
    parser.add_argument("--json", action="store_true", help="the summary as JSON")


# --------------------------------------------------------------------------- summary


class HostLine(msgspec.Struct, kw_only=True):
    ip: str
    mac: str | None = None
    hostname: str | None = None
    vendor: str | None = None
    open_ports: list[str] = []
    services: list[str] = []
    os: str | None = None


class Summary(msgspec.Struct, kw_only=True):
    scan_from: str
    range: str
    hosts_found: int
    arp_found: int
    dhcp_leases: int
    hosts: list[HostLine]
    changes: dict[str, int] = {}     # HostChanged kinds this run produced: new, changed, back ...
    database: str = ""
    elapsed_secs: float = 0.0


# --------------------------------------------------------------------------- stages


class _ProbeTargetsOnce:
    """port_probe behind a gate: each live target address once, nothing outside the targets.

    Leases and neighbour entries may name hosts the user did not ask to scan;
    several sightings of one host (ARP, neighbour, lease) must not probe it twice."""

    def __init__(self, stage: Any, targets: Targets, total: int, update: Progress) -> None:
        self.stage = stage
        self.targets = targets
        self.total = total
        self.update = update
        self.done = 0
        self._taken: set[str] = set()

    async def handle(self, event: Event) -> list[Event]:
        if not isinstance(event, HostSeen) or not event.alive or not event.ip \
                or event.ip in self._taken or event.ip not in self.targets:
            return []
        self._taken.add(event.ip)
        try:
            outputs: list[Event] = await self.stage.handle(event)
            return outputs
        finally:
            self.done += 1
            self.update(self.done, max(self.total, self.done))


def _gateway_settings(args: argparse.Namespace, config: Config) -> Any:
    """producers.dhcp_leases with --gateway* on top (as `leases`)."""
    from lanscope.commands.leases import _stage_config

    if args.gateway_pass_env:
        env_secret("--gateway-pass-env", args.gateway_pass_env)   # named by this flag, not leases'
    options = argparse.Namespace(
        gateway=args.gateway, user=args.gateway_user, password_env=args.gateway_pass_env,
        scheme=None, port=None, fingerprint=None, ca_file=None, insecure=False, no_arp=False,
        file=[], no_gateway=False)
    return _stage_config(options, config)


def _build_stages(config: Config, ctx: StageContext,
                  probe_gate: Callable[[Any], Any]) -> list[tuple[StageSpec, Any]]:
    stages: list[tuple[StageSpec, Any]] = []
    specs = config.stage_specs()
    for name in _STAGES:
        spec = specs[name]
        try:
            stage = spec.instantiate(config.stage_config(name), ctx)
        except StageDisabled:     # no Proxmox, DNS off, registry off: simply not part of this run
            continue
        stages.append((spec, probe_gate(stage) if name == "port_probe" else stage))
    return stages


def _pipeline_owns_store(config: Config, reason: str) -> LanscopeError:
    pid = re.search(r"\(PID (\d+)\)", reason)
    holder = f" (PID {pid.group(1)})" if pid else ""
    return LanscopeError(
        f"the DuckDB store {config.duckdb_path} is locked by another process{holder}: normally a "
        "running `lanscope run`, whose host_state stage owns the file and which already discovers "
        "continuously. Follow it with `lanscope watch`, ask it with `lanscope query` or "
        "`lanscope status`, or stop it to run a one-shot discover")


# --------------------------------------------------------------------------- producers


async def _leases(stage_config: Any, ctx: StageContext) -> tuple[list[Event], int]:
    """Lease and router-ARP sightings, and the number of leases read; a gateway error is a warning."""
    from producers import dhcp_leases
    from producers.dhcp_leases.stage import arp_event, lease_event

    if not stage_config.gateway.host and not stage_config.lease_files:
        return [], 0
    try:
        stage = dhcp_leases.build(stage_config, ctx)
    except ValueError as exc:           # a malformed TLS fingerprint in the config
        raise UsageError(f"gateway: {exc}") from None
    try:
        snapshot = await stage.collect(ignore_backoff=True)
    finally:
        if stage.gateway is not None:
            await stage.gateway.aclose()   # type: ignore[attr-defined]
    for error in [*snapshot.errors, *snapshot.file_errors]:
        warn(f"{error}; continuing without those leases")
    for problem in snapshot.file_warnings:
        warn(problem)
    observed = datetime.now(UTC)
    events: list[Event] = []
    for item in snapshot.leases:
        event = lease_event(item, observed)
        if event is not None:
            events.append(event)
    events += [arp_event(row, observed) for row in snapshot.arp]
    return events, len(snapshot.leases)


async def _neighbours(config: Config, ctx: StageContext, targets: Targets) -> list[Event]:
    try:
        stage = STAGES["neighbours"].instantiate(config.producers.neighbours, ctx)
    except StageDisabled:
        return []
    return [e for e in await stage.sweep() if isinstance(e, HostSeen) and e.ip in targets]


def _sweep_completed(seen: list[HostSeen], targets: Targets, covered: list[str], started: datetime,
                     duration_ms: float) -> SweepCompleted:
    """This discovery as a sweep of what it probed, so host_state counts it for presence (gone)."""
    from producers.arp_sweep.stage import new_sweep_id

    sweep_id = next((e.sweep_id for e in seen if e.sweep_id), None) or new_sweep_id("discover", started)
    return SweepCompleted(host_key=sweep_id, observed_at=datetime.now(UTC), source="discover",
                          targets=[s[:255] for s in targets.specs][:1000], sweep_id=sweep_id,
                          hosts_found=len(seen), covered=covered, duration_ms=round(duration_ms, 1))


# --------------------------------------------------------------------------- the run


@dataclass
class _Found:
    seen: list[HostSeen] = field(default_factory=list)        # one per live target address
    neighbours: list[Event] = field(default_factory=list)
    leases: list[Event] = field(default_factory=list)
    lease_count: int = 0


async def discover(targets: Targets, config: Config, leases_config: Any, *,
                   show_progress: bool | None = None) -> Summary:
    """Discover ``targets`` (already scope-checked), persist through the sinks, summarise."""
    from lanscope.commands._discovery import discover_sweep
    from lanscope.net.interfaces import local_ip
    from lanscope.runtime.datadir import private
    from sinks.host_state import HostState, StoreError

    started_wall = datetime.now(UTC)
    started = time.monotonic()
    ctx = config.stage_context(sweep=targets)   # checked with the flags: the stages may probe them
    gate: _ProbeTargetsOnce | None = None

    def probe_gate(stage: Any) -> _ProbeTargetsOnce:
        nonlocal gate
        gate = _ProbeTargetsOnce(stage, targets, 0, lambda done, total: None)
        return gate

    stages = _build_stages(config, ctx, probe_gate)
    host_state = next(stage for spec, stage in stages if spec.name == "host_state")
    assert isinstance(host_state, HostState)
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(private(config.data_dir))    # the store it writes is private
        try:
            pipeline = await stack.enter_async_context(LocalPipeline(stages))
        except StoreError as exc:
            if "lock" in str(exc).lower():
                raise _pipeline_owns_store(config, str(exc)) from None
            raise LanscopeError(str(exc)) from None

        found = _Found()
        with progress("discovering hosts", targets.count, enabled=show_progress) as update:
            found.seen, covered = await discover_sweep(targets, config, progress=update)
        sweep = _sweep_completed(found.seen, targets, covered, started_wall,
                                 (time.monotonic() - started) * 1000)
        found.neighbours = await _neighbours(config, ctx, targets)
        found.leases, found.lease_count = await _leases(leases_config, ctx)

        live = {e.ip for e in found.seen if e.ip}
        live |= {e.ip for e in [*found.neighbours, *found.leases]
                 if isinstance(e, HostSeen) and e.alive and e.ip and e.ip in targets}
        produced: list[Event] = [*found.seen, sweep, *found.neighbours, *found.leases]
        with progress(f"probing {len(live)} hosts", len(live), enabled=show_progress) as update:
            if gate is not None:
                gate.total, gate.update = len(live), update
            events = await pipeline.run(produced)
        for name, count in pipeline.failures().items():
            warn(f"{name} failed on {count} events (see the log); the rest was stored")

    changes: dict[str, int] = {}
    for event in events:
        if isinstance(event, HostChanged):
            changes[event.kind.value] = changes.get(event.kind.value, 0) + 1
    first = targets.first()
    return Summary(
        scan_from=local_ip(str(first)) if first is not None else local_ip(),
        range=" ".join(targets.specs), hosts_found=len(live),
        arp_found=sum(1 for e in found.seen if e.source == "arp"),
        dhcp_leases=found.lease_count, hosts=_host_lines(host_state, live),
        changes={k.value: changes[k.value] for k in ChangeKind if k.value in changes},
        database=str(config.duckdb_path), elapsed_secs=round(time.monotonic() - started, 2))


def _host_lines(host_state: Any, live: set[str]) -> list[HostLine]:
    """The stored record of each live address: what DuckDB now says about it."""
    lines: list[HostLine] = []
    for ip in sorted(live, key=lambda a: (ipaddress.ip_address(a).version, int(ipaddress.ip_address(a)))):
        key = host_state.book.owner_of_ip(ip)
        entry = host_state.book.hosts.get(key) if key else None
        if entry is None:
            lines.append(HostLine(ip=ip))
            continue
        rec = entry.record
        lines.append(HostLine(ip=ip, mac=rec.mac, hostname=rec.hostname, vendor=rec.vendor,
                              open_ports=list(rec.open_ports), services=list(rec.services),
                              os=rec.os_hint))
    return lines


def main(args: argparse.Namespace, config: Config) -> int:
    targets = targets_from_args(args, config)          # bad targets and scope refusals: no packet sent
    leases_config = _gateway_settings(args, config)    # a missing --gateway-pass-env variable too
    if args.register:
        registry = msgspec.structs.replace(config.sinks.registry, enabled=True, mode="register")
        config = msgspec.structs.replace(
            config, sinks=msgspec.structs.replace(config.sinks, registry=registry))
    summary = asyncio.run(discover(targets, config, leases_config))
    if args.json:
        print_json(summary)
        return 0
    print_table(["address", "mac", "hostname", "vendor", "open ports", "services", "os"],
                [(h.ip, h.mac, h.hostname, h.vendor, h.open_ports, h.services, h.os)
                 for h in summary.hosts],
                title=f"{summary.hosts_found} hosts up in {summary.range} (from {summary.scan_from})")
    changes = ", ".join(f"{n} {kind}" for kind, n in summary.changes.items()) or "no changes"
    print_line(f"ARP: {summary.arp_found} replies; DHCP leases: {summary.dhcp_leases}; "
               f"stored in {summary.database} ({changes}) in {summary.elapsed_secs:.2f} s")
    return 0
