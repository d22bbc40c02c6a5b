"""Proxmox guest names: the proxmoxer client, the guest index, and the proxmox_names enricher."""

from __future__ import annotations

from ._io import ProxmoxClient, ProxmoxError, ProxmoxSettings
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
from .stage import Config, FetchGuests, GuestCache, ProxmoxNames, annotation


def create(config: Config) -> ProxmoxNames:
    """The enricher with its real I/O (proxmoxer in a worker thread)."""
    if config.proxmox is None:
        raise ValueError("proxmox_names needs proxmox settings (host and credentials)")
    return ProxmoxNames(config, fetch_guests=ProxmoxClient(config.proxmox).fetch_guests)


__all__ = [
    "Config",
    "FetchGuests",
    "Guest",
    "GuestCache",
    "GuestIndex",
    "Nic",
    "ProxmoxClient",
    "ProxmoxError",
    "ProxmoxNames",
    "ProxmoxSettings",
    "agent_addresses",
    "agent_enabled",
    "annotation",
    "build_guest",
    "create",
    "guest_identity",
    "lxc_addresses",
    "parse_net",
]
