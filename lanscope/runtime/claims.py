"""Coordination between replicas of a stage: short claims and "last done" stamps.

port_probe uses it so one host is not probed by two replicas at once and is
re-probed only when its last probe is older than the configured interval.
In the pipeline the store is a NATS KV bucket (``KvClaims`` in
``lanscope.runtime.bus``); one-shot commands use ``MemoryClaims``.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Protocol


class Claims(Protocol):
    async def claim(self, key: str, ttl_secs: float) -> bool:
        """Take an exclusive claim on ``key`` for ``ttl_secs``; False if someone holds it."""
        ...

    async def release(self, key: str) -> None: ...

    async def last_done(self, key: str) -> datetime | None: ...

    async def mark_done(self, key: str, when: datetime) -> None: ...


class MemoryClaims:
    """Claims for one process (one-shot commands, unit tests)."""

    def __init__(self) -> None:
        self._held: dict[str, float] = {}
        self._done: dict[str, datetime] = {}

    async def claim(self, key: str, ttl_secs: float) -> bool:
        now = time.monotonic()
        expires = self._held.get(key)
        if expires is not None and expires > now:
            return False
        self._held[key] = now + ttl_secs
        return True

    async def release(self, key: str) -> None:
        self._held.pop(key, None)

    async def last_done(self, key: str) -> datetime | None:
        return self._done.get(key)

    async def mark_done(self, key: str, when: datetime) -> None:
        self._done[key] = when
