"""The notify sink's file I/O: its ledger file, the lock that keeps it to one process, the
inventory. Blocking calls go through ``asyncio.to_thread`` here (and in the shared helpers).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path

from sinks._inventory import InventoryError, read_inventory
from sinks._statefile import StateFileError, append_durable, read_bytes, write_atomic

__all__ = ["InventoryError", "LedgerLocked", "StateFileError", "append_durable", "lock", "mtime",
           "read_bytes", "read_inventory", "unlock", "write_atomic"]


class LedgerLocked(StateFileError):
    """Another process holds the ledger."""


async def lock(path: Path) -> int:
    """An exclusive lock on ``path`` (created if missing) for this process; its descriptor."""
    return await asyncio.to_thread(_lock, path)


def _lock(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LedgerLocked(f"{path}: another notify process uses this ledger; give each copy of the "
                           "stage its own data_dir (or sinks.notify.ledger_file)") from None
    return fd


def unlock(fd: int) -> None:
    os.close(fd)     # closing the descriptor releases the flock


async def mtime(path: Path) -> float | None:
    """The file's modification time, or None when it does not exist."""
    def stat() -> float | None:
        try:
            return path.stat().st_mtime
        except FileNotFoundError:
            return None
    return await asyncio.to_thread(stat)
