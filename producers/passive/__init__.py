"""Passive listener: ARP, DHCP and NDP sightings as they are heard (see README.md)."""

from .stage import Config, Passive, build

__all__ = ["Config", "Passive", "build"]
