"""Where every key of the old config.yaml layout went (sections by concern -> one per stage).

An old-format file gets one error per old key it uses, naming the new place:
``schedules.arp_sweep_secs: moved to producers.arp_sweep.interval_secs``.
"""

from __future__ import annotations

_PROBE = "enrichers.port_probe"
_OFF = "; 0 disabled it: now {}.enabled: false"


def _schedule(stage: str, key: str = "interval_secs") -> str:
    return f"moved to {stage}.{key}" + _OFF.format(stage)


MOVED: dict[str, str] = {
    # schedules: one interval per producer; the re-probe interval of port_probe
    "schedules.arp_sweep_secs": _schedule("producers.arp_sweep"),
    "schedules.ping_sweep_secs": _schedule("producers.ping_sweep"),
    "schedules.neighbours_secs": _schedule("producers.neighbours"),
    "schedules.dhcp_leases_secs": _schedule("producers.dhcp_leases"),
    "schedules.proxmox_guests_secs": _schedule("producers.proxmox_guests"),
    "schedules.port_probe_secs": f"moved to {_PROBE}.reprobe_secs",
    # ports
    "ports.tcp": f"moved to {_PROBE}.tcp",
    "ports.top_ports": f"moved to {_PROBE}.top_ports",
    "ports.udp": f"moved to {_PROBE}.udp",
    "ports.tcp_ping": "moved to producers.ping_sweep.tcp_ports",
    "ports.scan_type": f"moved to {_PROBE}.scan_type",
    "ports.syn_min_ports": f"moved to {_PROBE}.syn_min_ports",
    "ports.fingerprint": f"moved to {_PROBE}.fingerprint",
    "ports.nmap_service_probes": f"moved to {_PROBE}.nmap_service_probes",
    # timeouts: each stage has its own
    "timeouts.connect_ms": f"moved to {_PROBE}.connect_timeout_ms and "
                           "producers.ping_sweep.tcp_timeout_ms",
    "timeouts.banner_ms": f"moved to {_PROBE}.banner_timeout_ms",
    "timeouts.arp_ms": "moved to producers.arp_sweep.timeout_ms",
    "timeouts.icmp_ms": "moved to producers.ping_sweep.timeout_ms",
    "timeouts.dns_ms": "moved to dns.timeout_ms (timeouts.dns_ms was never read)",
    "timeouts.http_secs": "removed: it was never read; the gateway's is "
                          "producers.dhcp_leases.gateway.timeout_secs, Proxmox's proxmox.timeout_secs",
    "timeouts.host_secs": f"moved to {_PROBE}.host_timeout_secs",
    # concurrency
    "concurrency.hosts": f"moved to {_PROBE}.hosts",
    "concurrency.sockets": f"moved to {_PROBE}.sockets and producers.ping_sweep.tcp_concurrency",
    "concurrency.per_host": f"moved to {_PROBE}.per_host",
    "concurrency.banners": f"moved to {_PROBE}.banners",
    "concurrency.retries": f"moved to producers.arp_sweep.retries, producers.ping_sweep.retries and "
                           f"{_PROBE}.retries",
    "concurrency.packets_per_sec": "moved to producers.arp_sweep.packets_per_sec, "
                                   f"producers.ping_sweep.packets_per_sec and {_PROBE}.packets_per_sec",
    # lease files
    "lease_files.enabled": "removed: set producers.dhcp_leases.lease_files: [] to read no lease files",
    "lease_files.paths": "moved to producers.dhcp_leases.lease_files",
    # the shared proxmox and dns sections lost what belongs to one stage
    "proxmox.refresh_secs": "moved to enrichers.proxmox_names.refresh_secs",
    "proxmox.report_guests": "moved: false is now producers.proxmox_guests.enabled: false",
    "dns.enabled": "moved to enrichers.dns_names.enabled",
    "dns.cache_secs": "moved to enrichers.dns_names.cache_secs",
    # duckdb and presence: the host_state sink's
    "duckdb.path": "moved to sinks.host_state.path",
    "duckdb.batch_size": "moved to sinks.host_state.batch_size",
    "duckdb.flush_ms": "moved to sinks.host_state.flush_ms",
    "duckdb.keep_event_ids_days": "moved to sinks.host_state.keep_event_ids_days",
    "duckdb.max_query_rows": "moved to sinks.host_state.query.max_rows",
    "duckdb.compact_secs": "moved to sinks.host_state.compact_secs",
    "duckdb.query_timeout_ms": "moved to sinks.host_state.query.timeout_ms",
    "presence.missed_sweeps": "moved to sinks.host_state.presence.missed_sweeps",
    "presence.grace_secs": "moved to sinks.host_state.presence.grace_secs",
    # registry and findings: sinks
    "registry.mode": "moved to sinks.registry.mode; mode off is now sinks.registry.enabled: false",
    "registry.inventory": "moved to sinks.registry.inventory",
    "registry.state_file": "moved to sinks.registry.state_file",
    "findings.enabled": "moved to sinks.findings.enabled",
    "findings.min_openssh": "moved to sinks.findings.min_openssh",
    "findings.static_ranges": "moved to sinks.findings.static_ranges",
    "findings.gateways": "moved to sinks.findings.gateways",
    "findings.dhcp_servers": "moved to sinks.findings.dhcp_servers",
    "findings.cert_expiry_days": "moved to sinks.findings.cert_expiry_days",
    "findings.rules_file": "moved to sinks.findings.rules_file",
    "findings.duplicate_ip_window_secs": "moved to sinks.findings.window_secs",
    "findings.state_file": "moved to sinks.findings.state_file",
}

# The gateway section moved whole: every key of it, secret files included.
for _key in ("host", "user", "pass", "pass_file", "scheme", "port", "tls", "timeout_secs", "arp_table"):
    MOVED[f"gateway.{_key}"] = f"moved to producers.dhcp_leases.gateway.{_key}"

# Old sections that are gone, for keys of theirs the table does not name.
OLD_SECTIONS: dict[str, str] = {
    "schedules": "each producer's interval is producers.<name>.interval_secs",
    "ports": f"port settings are in {_PROBE}",
    "timeouts": "each stage has its own timeouts",
    "concurrency": f"concurrency is set per stage ({_PROBE}, producers.ping_sweep ...)",
    "gateway": "the gateway is producers.dhcp_leases.gateway",
    "lease_files": "lease files are producers.dhcp_leases.lease_files",
    "duckdb": "the DuckDB settings are in sinks.host_state",
    "presence": "presence is sinks.host_state.presence",
    "registry": "the registry is sinks.registry",
    "findings": "findings are sinks.findings",
}
