"""Stage construction: the global Config in, one stage with its own typed Config out.

The only place that maps config.yaml sections onto stage configs, so stages
never see the file or the environment. Each builder imports its stage lazily,
so running one stage does not import the others (DuckDB, proxmoxer ...).
The runner calls ``build(spec_name, ctx)``; one-shot commands call the
builders directly and compose the stages in-process.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lanscope.config import Config
from lanscope.runtime.claims import Claims, MemoryClaims
from lanscope.runtime.topology import STAGES, StageSpec


class StageDisabled(Exception):
    """Raised by a builder when its stage is not configured (no gateway, schedule 0 ...).

    The runner logs the reason and runs the other stages."""


@dataclass
class StageContext:
    """What a builder may hand to a stage besides its Config."""

    config: Config
    claims: Claims = field(default_factory=MemoryClaims)
    # Called by long sweeps as (done, total); one-shot commands draw a progress bar.
    progress: Callable[[int, int], None] | None = None


def configured_specs(config: Config) -> dict[str, StageSpec]:
    """The topology's stages with what config.yaml tunes (host_state's batch size)."""
    return {name: dataclasses.replace(spec, batch_size=config.duckdb.batch_size)
            if name == "host_state" else spec for name, spec in STAGES.items()}


def build(builder: str, ctx: StageContext) -> Any:
    """Build the stage named by a topology builder name (``build_port_probe``)."""
    function = globals().get(builder)
    if function is None or not callable(function):
        raise LookupError(f"no stage builder {builder!r} in lanscope.stages")
    return function(ctx)


# --------------------------------------------------------------------------
# Producers


def _checked_config_targets(config: Config) -> Any:
    """config.targets parsed and scope-checked (None when empty: the attached subnets)."""
    from lanscope.net.interfaces import attached_private_networks
    from lanscope.net.scope import check_scope
    from lanscope.net.targets import parse_targets

    if not config.targets:
        return None
    targets = parse_targets(config.targets, exclude=config.scope.exclude)
    check_scope(targets, config.scope, attached=attached_private_networks())
    return targets


def build_arp_sweep(ctx: StageContext, *, targets: Any = None,
                    interfaces: list[str] | None = None) -> Any:
    """ARP sweep of ``targets`` (one-shot commands) or config.targets / the attached subnets."""
    from lanscope.net.interfaces import interfaces_async
    from producers.arp_sweep import ArpSweep
    from producers.arp_sweep import Config as ArpConfig
    from producers.arp_sweep._io import arp_sweep_async

    c = ctx.config
    if targets is None and not c.schedules.arp_sweep_secs:
        raise StageDisabled("schedules.arp_sweep_secs is 0")
    stage_config = ArpConfig(interval_secs=c.schedules.arp_sweep_secs, exclude=c.scope.exclude,
                             timeout_ms=c.timeouts.arp_ms, retries=c.concurrency.retries,
                             packets_per_sec=c.concurrency.packets_per_sec,
                             interfaces=list(interfaces or []))
    return ArpSweep(stage_config, scan=arp_sweep_async, interfaces=interfaces_async,
                    targets=targets if targets is not None else _checked_config_targets(c),
                    progress=ctx.progress)


def build_ping_sweep(ctx: StageContext, *, targets: Any = None) -> Any:
    """ICMP echo + TCP ping sweep of ``targets`` or config.targets / the attached subnets."""
    from lanscope.net.interfaces import interfaces_async
    from producers.ping_sweep import Config as PingConfig
    from producers.ping_sweep import PingSweep
    from producers.ping_sweep._io import icmp_sweep_async, tcp_connect

    c = ctx.config
    if targets is None and not c.schedules.ping_sweep_secs:
        raise StageDisabled("schedules.ping_sweep_secs is 0")
    stage_config = PingConfig(interval_secs=c.schedules.ping_sweep_secs, exclude=c.scope.exclude,
                              timeout_ms=c.timeouts.icmp_ms, retries=c.concurrency.retries,
                              packets_per_sec=c.concurrency.packets_per_sec,
                              tcp_ports=list(c.ports.tcp_ping), tcp_timeout_ms=c.timeouts.connect_ms,
                              tcp_concurrency=c.concurrency.sockets)
    return PingSweep(stage_config, icmp=icmp_sweep_async, tcp_connect=tcp_connect,
                     interfaces=interfaces_async,
                     targets=targets if targets is not None else _checked_config_targets(c),
                     progress=ctx.progress)


def build_neighbours(ctx: StageContext) -> Any:
    from producers.neighbours import Config as NeighboursConfig
    from producers.neighbours import Neighbours
    from producers.neighbours._io import read_neighbours_async

    if not ctx.config.schedules.neighbours_secs:
        raise StageDisabled("schedules.neighbours_secs is 0")
    return Neighbours(NeighboursConfig(interval_secs=ctx.config.schedules.neighbours_secs),
                      read=read_neighbours_async)


def dhcp_leases_config(config: Config) -> Any:
    """The dhcp_leases stage Config from `gateway:`, `lease_files:` and the schedule."""
    from producers import dhcp_leases

    gateway = None
    g = config.gateway
    if g.host:
        gateway = dhcp_leases.GatewaySettings(
            host=g.host, user=g.user, password=g.password, scheme=g.scheme, port=g.port,
            tls=g.tls, timeout_secs=g.timeout_secs, arp_table=g.arp_table)
    return dhcp_leases.Config(
        interval_secs=config.schedules.dhcp_leases_secs, gateway=gateway,
        lease_files=list(config.lease_files.paths) if config.lease_files.enabled else [])


def build_dhcp_leases(ctx: StageContext) -> Any:
    from producers import dhcp_leases

    if not ctx.config.schedules.dhcp_leases_secs:
        raise StageDisabled("dhcp_leases: schedules.dhcp_leases_secs is 0")
    stage_config = dhcp_leases_config(ctx.config)
    if stage_config.gateway is None and not stage_config.lease_files:
        raise StageDisabled("dhcp_leases: no gateway.host and lease_files disabled")
    return dhcp_leases.create(stage_config)


def proxmox_settings(config: Config) -> Any:
    """Proxmox connection settings from `proxmox:`, or None when no host is configured."""
    from enrichers.proxmox_names import ProxmoxSettings

    p = config.proxmox
    if not p.host:
        return None
    return ProxmoxSettings(
        host=p.host, port=p.port, user=p.user, password=p.password, token_name=p.token_name,
        token_value=p.token_value, tls=p.tls, timeout_secs=p.timeout_secs)


def build_proxmox_guests(ctx: StageContext) -> Any:
    from producers import proxmox_guests

    settings = proxmox_settings(ctx.config)
    if settings is None:
        raise StageDisabled("proxmox_guests: no proxmox.host")
    if not ctx.config.proxmox.report_guests or not ctx.config.schedules.proxmox_guests_secs:
        raise StageDisabled("proxmox_guests: proxmox.report_guests is off or its schedule is 0")
    return proxmox_guests.create(proxmox_guests.Config(
        interval_secs=ctx.config.schedules.proxmox_guests_secs, proxmox=settings))


# --------------------------------------------------------------------------
# Enrichers


def port_probe_config(config: Config) -> Any:
    """The port_probe stage's Config from the ports, timeouts, concurrency and schedules sections."""
    from enrichers.port_probe.stage import Config as PortProbeConfig

    ports, timeouts, conc = config.ports, config.timeouts, config.concurrency
    return PortProbeConfig(
        tcp=ports.tcp, top_ports=ports.top_ports, udp=ports.udp, scan_type=ports.scan_type,
        syn_min_ports=ports.syn_min_ports, fingerprint=ports.fingerprint,
        nmap_service_probes=ports.nmap_service_probes, connect_timeout_ms=timeouts.connect_ms,
        banner_timeout_ms=timeouts.banner_ms, host_timeout_secs=timeouts.host_secs, hosts=conc.hosts,
        sockets=conc.sockets, per_host=conc.per_host, banners=conc.banners, retries=conc.retries,
        packets_per_sec=conc.packets_per_sec, interval_secs=config.schedules.port_probe_secs)


def build_port_probe(ctx: StageContext) -> Any:
    from enrichers.port_probe.stage import PortProbe
    from lanscope.net.scope import scope_check

    # scope: "probe now" requests (lanscope.web) are refused outside config.scope.
    return PortProbe(port_probe_config(ctx.config), claims=ctx.claims, scope=scope_check(ctx.config.scope))


def build_dns_names(ctx: StageContext) -> Any:
    from enrichers.dns_names import Config as DnsConfig
    from enrichers.dns_names import DnsNames
    from enrichers.dns_names._io import make_reverse_lookup

    dns = ctx.config.dns
    if not dns.enabled:
        raise StageDisabled("dns.enabled is false")
    stage_config = DnsConfig(servers=list(dns.servers), timeout_ms=dns.timeout_ms,
                             cache_secs=dns.cache_secs)
    return DnsNames(stage_config, lookup=make_reverse_lookup(stage_config.servers,
                                                             stage_config.timeout_ms))


def build_mac_vendor(ctx: StageContext) -> Any:
    from enrichers.mac_vendor import Config as VendorConfig
    from enrichers.mac_vendor import MacVendor
    from enrichers.mac_vendor._io import oui_vendor_async

    return MacVendor(VendorConfig(), lookup=oui_vendor_async)


def build_proxmox_names(ctx: StageContext) -> Any:
    from enrichers import proxmox_names

    settings = proxmox_settings(ctx.config)
    if settings is None:
        raise StageDisabled("proxmox_names: no proxmox.host")
    return proxmox_names.create(proxmox_names.Config(
        proxmox=settings, refresh_secs=ctx.config.proxmox.refresh_secs))


# --------------------------------------------------------------------------
# Sinks


def build_host_state(ctx: StageContext) -> Any:
    from sinks.host_state import Config as HostStateConfig
    from sinks.host_state import HostState

    c = ctx.config
    return HostState(HostStateConfig(
        path=str(c.duckdb_path), missed_sweeps=c.presence.missed_sweeps,
        grace_secs=c.presence.grace_secs, keep_event_ids_secs=c.duckdb.keep_event_ids_days * 86400,
        max_query_rows=c.duckdb.max_query_rows, compact_secs=c.duckdb.compact_secs))


def build_findings(ctx: StageContext) -> Any:
    from pathlib import Path

    from sinks.findings import Config as FindingsConfig
    from sinks.findings import Findings

    f = ctx.config.findings
    if not f.enabled:
        raise StageDisabled("findings.enabled is false")
    return Findings(FindingsConfig(
        state_file=f.state_file or str(Path(ctx.config.data_dir) / "findings.json"),
        rules_file=f.rules_file, min_openssh=f.min_openssh, static_ranges=list(f.static_ranges),
        gateways=dict(f.gateways), dhcp_servers=list(f.dhcp_servers),
        cert_expiry_days=f.cert_expiry_days, window_secs=f.duplicate_ip_window_secs))


def build_registry(ctx: StageContext) -> Any:
    from pathlib import Path

    from sinks.registry import Config as RegistryConfig
    from sinks.registry import Registry

    r = ctx.config.registry
    if r.mode == "off":
        raise StageDisabled("registry.mode is off")
    return Registry(RegistryConfig(
        mode=r.mode, inventory=r.inventory,
        state_file=r.state_file or str(Path(ctx.config.data_dir) / "registry.json")))
