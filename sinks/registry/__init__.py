"""registry: an inventory kept in step with the LAN (register new hosts, or sync existing entries)."""

from ._io import InventoryError
from .stage import Config, Entry, Registry, build

__all__ = ["Config", "Entry", "InventoryError", "Registry", "build"]
