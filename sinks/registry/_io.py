"""The registry sink's single I/O primitive: the inventory file it imports and its state file.

Blocking reads and writes go through ``asyncio.to_thread`` here. The state
file is replaced atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
from pathlib import Path
from typing import Any

import yaml

_FIELDS = ("id", "entry_id", "hostname", "ip", "internal_ip", "mac", "owner", "notes")


class InventoryError(ValueError):
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


async def read_bytes(path: Path) -> bytes | None:
    return await asyncio.to_thread(_read_bytes, path)


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InventoryError(f"cannot read {path}: {exc.strerror}") from None


async def write_atomic(path: Path, data: bytes) -> None:
    await asyncio.to_thread(_write_atomic, path, data)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
