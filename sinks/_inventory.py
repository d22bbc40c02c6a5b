"""The people's inventory file (YAML or CSV) that the registry and notify sinks both read.

One row per device: ``id``/``entry_id``, ``site``, ``hostname``, ``ip``, ``internal_ip``,
``mac``, ``owner``, ``notes`` and ``tags`` (a list, or comma-separated text in CSV).
The registry seeds its entries from it; notify counts its devices as known and
gives hosts its tags; both match a row to a host by ``short_name``. Reads go through
``asyncio.to_thread`` here, once.
"""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path
from typing import Any

import yaml

from sinks._statefile import StateFileError

FIELDS = ("id", "entry_id", "site", "hostname", "ip", "internal_ip", "mac", "owner", "notes", "tags")


def short_name(name: str | None) -> str:
    """The name hosts and inventory rows are matched by: the first label, lower case ("" for none)."""
    return name.split(".", 1)[0].lower() if name else ""


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
        unknown = sorted(str(k) for k in row if k not in FIELDS)
        if unknown:
            raise InventoryError(f"{path}: entry {number}: unknown field(s) {', '.join(unknown)}; "
                                 f"known: {', '.join(FIELDS)}")
        tags = row.get("tags")
        if isinstance(tags, str):
            row["tags"] = [t.strip() for t in tags.split(",") if t.strip()]
        elif tags is not None and not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
            raise InventoryError(f"{path}: entry {number}: tags must be a list of words "
                                 "(or comma-separated text)")
    return rows
