"""Proxmox guest names: the guest index and the proxmox_names enricher.

The proxmoxer client is in ``_io`` (``ProxmoxClient``), imported only when a
Proxmox host is configured (``build``).
"""

from __future__ import annotations

from .inventory import (
    Guest,
    GuestIndex,
    Nic,
    agent_addresses,
    agent_enabled,
    build_guest,
    guest_identity,
    lxc_addresses,
    parse_net,
)
from .stage import Config, FetchGuests, GuestCache, ProxmoxError, ProxmoxNames, annotation, build

__all__ = [
    "Config",
    "FetchGuests",
    "Guest",
    "GuestCache",
    "GuestIndex",
    "Nic",
    "ProxmoxError",
    "ProxmoxNames",
    "agent_addresses",
    "agent_enabled",
    "annotation",
    "build",
    "build_guest",
    "guest_identity",
    "lxc_addresses",
    "parse_net",
]
