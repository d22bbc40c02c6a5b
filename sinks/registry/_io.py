"""The registry sink's I/O: the inventory file it imports and its state file.

The inventory is read by the sinks' shared reader (notify reads the same file);
the state file goes through the sinks' shared atomic state-file helpers.
"""

from __future__ import annotations

from sinks._inventory import InventoryError, read_inventory
from sinks._statefile import append_durable, read_bytes, remove, write_atomic

__all__ = ["InventoryError", "append_durable", "read_bytes", "read_inventory", "remove", "write_atomic"]
