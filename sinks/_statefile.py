"""Small state files that sinks keep beside DuckDB (open findings, registry entries).

Read whole and replaced atomically (temporary file, fsync, rename), so a crash
leaves the previous state or the new one, never half of each; or appended to
(fsync'd) as a journal, whose torn last line the reader skips. Blocking calls go
through ``asyncio.to_thread`` here, once.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import BinaryIO


class StateFileError(ValueError):
    """A state file that cannot be read or parsed; the message names it."""


async def read_bytes(path: Path) -> bytes | None:
    """The file's bytes, or None when it does not exist yet."""
    return await asyncio.to_thread(_read_bytes, path)


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(f"cannot read {path}: {exc.strerror}") from None


async def write_atomic(path: Path, data: bytes) -> None:
    await asyncio.to_thread(_write_atomic, path, data)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with _private(tmp, os.O_TRUNC) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)     # a full disk: leave no half-written copy taking room
        raise


def _private(path: Path, mode: int) -> BinaryIO:
    """Open for writing, created 0600: state files hold the LAN's inventory."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | mode, 0o600), "wb")


async def append_durable(path: Path, data: bytes) -> None:
    """Append ``data`` and fsync: once this returns, a crash keeps it."""
    await asyncio.to_thread(_append_durable, path, data)


def _append_durable(path: Path, data: bytes) -> None:
    with _private(path, os.O_APPEND) as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


async def remove(path: Path) -> None:
    """Delete the file if it exists."""
    await asyncio.to_thread(path.unlink, missing_ok=True)
