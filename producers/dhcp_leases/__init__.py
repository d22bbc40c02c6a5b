"""DHCP leases: MikroTik RouterOS REST (leases + ARP table) and local lease files."""

from __future__ import annotations

from lanscope.net.tls import TlsSettings

from ._files import FileText, LeaseFileReader
from ._http import GatewayError, RouterOsClient, default_scheme
from .leasefiles import FORMATS, ParsedFile, detect_format, parse_file
from .routeros import RouterArp, arp_from_record, lease_from_record, lease_type, parse_duration
from .stage import (
    Config,
    DhcpLeases,
    GatewaySettings,
    Lease,
    Snapshot,
    arp_event,
    lease_event,
)


def create(config: Config) -> DhcpLeases:
    """The stage with its real I/O: a pooled RouterOS client and a lease file reader."""
    gateway = None
    if config.gateway is not None:
        g = config.gateway
        gateway = RouterOsClient(g.host, user=g.user, password=g.password, scheme=g.scheme,
                                 port=g.port, tls=g.tls, timeout_secs=g.timeout_secs)
    files = LeaseFileReader(config.lease_files) if config.lease_files else None
    return DhcpLeases(config, gateway=gateway, files=files)


__all__ = [
    "FORMATS",
    "Config",
    "DhcpLeases",
    "FileText",
    "GatewayError",
    "GatewaySettings",
    "Lease",
    "LeaseFileReader",
    "ParsedFile",
    "RouterArp",
    "RouterOsClient",
    "Snapshot",
    "TlsSettings",
    "arp_event",
    "arp_from_record",
    "create",
    "default_scheme",
    "detect_format",
    "lease_event",
    "lease_from_record",
    "lease_type",
    "parse_duration",
    "parse_file",
]
