"""The registry sink's single I/O primitive: the inventory file it imports and its state file.

Blocking reads go through ``asyncio.to_thread`` here; the state file goes
through the sinks' shared atomic state-file helpers.
"""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path
from typing import Any

import yaml

from sinks._statefile import StateFileError, append_durable, read_bytes, remove, write_atomic

__all__ = ["InventoryError", "append_durable", "read_bytes", "read_inventory", "remove", "write_atomic"]

_FIELDS = ("id", "entry_id", "hostname", "ip", "internal_ip", "mac", "owner", "notes")


class InventoryError(StateFileError):
    """An inventory or state file that cannot be read; the message names the file and the row."""


async def read_inventory(path: Path) -> list[dict[str, Any]]:
    """Rows of a YAML (a list, or {entries: [...]}) or CSV (header row) inventory."""
    return await asyncio.to_thread(_read_inventory, path)


def _read_inventory(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise InventoryError(f"cannot read inventory {path}: {exc.strerror}") from None
    if path.suffix.lower() == ".csv":
        rows: list[dict[str, Any]] = [dict(r) for r in csv.DictReader(io.StringIO(text))]
    else:
        try:
            tree = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InventoryError(f"{path}: not valid YAML: {exc}") from None
        if isinstance(tree, dict):
            tree = tree.get("entries")
        if not isinstance(tree, list):
            raise InventoryError(f"{path}: expected a list of entries (or `entries: [...]`)")
        rows = tree
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise InventoryError(f"{path}: entry {number} is not a mapping")
        unknown = sorted(str(k) for k in row if k not in _FIELDS)
        if unknown:
            raise InventoryError(f"{path}: entry {number}: unknown field(s) {', '.join(unknown)}; "
                                 f"known: {', '.join(_FIELDS)}")
    return rows
