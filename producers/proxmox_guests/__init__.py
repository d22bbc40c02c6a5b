"""The proxmox_guests producer: known Proxmox VMs and containers as sightings (see README.md)."""

from .stage import Config, ProxmoxGuests, build, sightings

__all__ = ["Config", "ProxmoxGuests", "build", "sightings"]
