"""A state-file write failing as on a full disk, for the sinks' durability tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest


async def on_a_full_disk(monkeypatch: pytest.MonkeyPatch, writer: str,
                         write: Callable[[], Awaitable[object]]) -> None:
    """Run ``write()`` while ``writer`` (a dotted path to a state-file writer) fails as on a
    full disk; ``write()`` must raise that error."""
    async def disk_full(path: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device")
    with monkeypatch.context() as patch:
        patch.setattr(writer, disk_full)
        with pytest.raises(OSError, match="No space left on device"):
            await write()
