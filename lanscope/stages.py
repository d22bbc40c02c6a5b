"""Stage construction: the global Config in, one stage with its own typed Config out.

The only place that maps config.yaml sections onto stage configs, so stages
never see the file or the environment. Each builder imports its stage lazily,
so running one stage does not import the others (DuckDB, proxmoxer ...).
The runner calls ``build(spec_name, ctx)``; one-shot commands call the
builders directly and compose the stages in-process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lanscope.config import Config
from lanscope.runtime.claims import Claims, MemoryClaims


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


def build(builder: str, ctx: StageContext) -> Any:
    """Build the stage named by a topology builder name (``build_port_probe``)."""
    function = globals().get(builder)
    if function is None or not callable(function):
        raise LookupError(f"no stage builder {builder!r} in lanscope.stages")
    return function(ctx)


# --------------------------------------------------------------------------
# Producers


def build_arp_sweep(ctx: StageContext) -> Any:
    raise NotImplementedError("arp_sweep: being built (issue 3)")


def build_ping_sweep(ctx: StageContext) -> Any:
    raise NotImplementedError("ping_sweep: being built (issue 3)")


def build_neighbours(ctx: StageContext) -> Any:
    raise NotImplementedError("neighbours: being built (issue 3)")


def dhcp_leases_config(config: Config) -> Any:
    """The dhcp_leases stage Config from `gateway:`, `lease_files:` and the schedule."""
    import msgspec

    from producers import dhcp_leases

    gateway = None
    g = config.gateway
    if g.host:
        gateway = dhcp_leases.GatewaySettings(
            host=g.host, user=g.user, password=g.password, scheme=g.scheme, port=g.port,
            tls=dhcp_leases.TlsSettings(**msgspec.structs.asdict(g.tls)),
            timeout_secs=g.timeout_secs, arp_table=g.arp_table)
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
    import msgspec

    from enrichers.proxmox_names import ProxmoxSettings
    from producers.dhcp_leases import TlsSettings

    p = config.proxmox
    if not p.host:
        return None
    return ProxmoxSettings(
        host=p.host, port=p.port, user=p.user, password=p.password, token_name=p.token_name,
        token_value=p.token_value, tls=TlsSettings(**msgspec.structs.asdict(p.tls)),
        timeout_secs=p.timeout_secs)


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

    return PortProbe(port_probe_config(ctx.config), claims=ctx.claims)


def build_dns_names(ctx: StageContext) -> Any:
    raise NotImplementedError("dns_names: being built (issue 3)")


def build_mac_vendor(ctx: StageContext) -> Any:
    raise NotImplementedError("mac_vendor: being built (issue 3)")


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
        max_query_rows=c.duckdb.max_query_rows))


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
