"""SSDP / UPnP producer: device names, models, makers and types (see README.md)."""

from .stage import Config, Ssdp, build

__all__ = ["Config", "Ssdp", "build"]
