"""DHCP leases: MikroTik RouterOS REST (leases + ARP table) and local lease files.

The RouterOS client (httpx) is in ``_http`` and imported only when a gateway is
configured (``build``), so reading the config does not load an HTTP stack.
"""

from __future__ import annotations

from ._files import FileText, LeaseFileReader
from .leasefiles import FORMATS, ParsedFile, detect_format, parse_file
from .routeros import RouterArp, arp_from_record, lease_from_record, lease_type, parse_duration
from .stage import (
    Config,
    DhcpLeases,
    GatewayConfig,
    GatewayError,
    Lease,
    Snapshot,
    arp_event,
    build,
    lease_event,
)

__all__ = [
    "FORMATS",
    "Config",
    "DhcpLeases",
    "FileText",
    "GatewayConfig",
    "GatewayError",
    "Lease",
    "LeaseFileReader",
    "ParsedFile",
    "RouterArp",
    "Snapshot",
    "arp_event",
    "arp_from_record",
    "build",
    "detect_format",
    "lease_event",
    "lease_from_record",
    "lease_type",
    "parse_duration",
    "parse_file",
]
