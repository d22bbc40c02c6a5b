"""The findings sink's single I/O primitive: its rules file and its local state file.

Both are small files read or written whole through ``asyncio.to_thread``; the
state file goes through the sinks' shared atomic state-file helpers.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml

from sinks._statefile import StateFileError, read_bytes, write_atomic

SHIPPED_RULES = Path(__file__).with_name("rules.yaml")


__all__ = ["SHIPPED_RULES", "StateFileError", "read_bytes", "read_yaml", "write_atomic"]


async def read_yaml(path: Path) -> Any:
    return await asyncio.to_thread(_read_yaml, path)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise StateFileError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise StateFileError(f"{path}: not valid YAML: {exc}") from None
