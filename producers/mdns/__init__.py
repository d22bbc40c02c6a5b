"""mDNS / DNS-SD producer: services, names and models devices announce (see README.md)."""

from .stage import Config, Mdns, build

__all__ = ["Config", "Mdns", "build"]
