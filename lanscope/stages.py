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


def build_dhcp_leases(ctx: StageContext) -> Any:
    raise NotImplementedError("dhcp_leases: being built (issue 5)")


def build_proxmox_guests(ctx: StageContext) -> Any:
    raise NotImplementedError("proxmox_guests: being built (issue 5)")


# --------------------------------------------------------------------------
# Enrichers


def build_port_probe(ctx: StageContext) -> Any:
    raise NotImplementedError("port_probe: being built (issue 4)")


def build_dns_names(ctx: StageContext) -> Any:
    raise NotImplementedError("dns_names: being built (issue 3)")


def build_mac_vendor(ctx: StageContext) -> Any:
    raise NotImplementedError("mac_vendor: being built (issue 3)")


def build_proxmox_names(ctx: StageContext) -> Any:
    raise NotImplementedError("proxmox_names: being built (issue 5)")


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
