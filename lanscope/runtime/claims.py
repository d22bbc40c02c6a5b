"""Coordination between replicas of a stage: short claims and "last done" stamps.

port_probe uses it so one host is not probed by two replicas at once and is
re-probed only when its last probe is older than the configured interval.
In the pipeline the store is a NATS KV bucket (``KvClaims``, opened by
``Bus.claims()``); one-shot commands use ``MemoryClaims``. Stages import this module
for ``Claims``, so it does not import nats itself: ``KvClaims`` takes nats-py's error
classes from the ``KeyValue`` it is given (the bus has loaded nats by then).
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

CLAIMS_BUCKET = "lanscope_claims"


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


def kv_key(key: str) -> str:
    """A KV-safe, injective, readable key: ``[A-Za-z0-9_-]`` kept, anything else ``=XX``.

    MACs and IPv6 addresses contain ':' and IPv4 addresses '.', which KV keys
    reserve as the token separator."""
    out: list[str] = []
    for char in key:
        if char.isascii() and (char.isalnum() or char in "_-"):
            out.append(char)
        else:
            out.extend(f"={byte:02X}" for byte in char.encode())
    return "".join(out) or "=00"


class KvClaims:
    """Claims on a NATS KV bucket, shared by every replica.

    ``claim.<key>`` holds ``{"owner", "until"}``; it is created only if absent, and
    an expired claim is taken over with a compare-and-set on its revision, so two
    replicas never both win. ``done.<key>`` holds the last completion time.
    """

    def __init__(self, kv: KeyValue, owner: str | None = None) -> None:
        import nats.js.errors as errors  # loaded with the KeyValue; never by a stage's import

        self.kv = kv
        self.owner = owner or uuid.uuid4().hex
        self._errors = errors

    async def claim(self, key: str, ttl_secs: float) -> bool:
        name = f"claim.{kv_key(key)}"
        value = json.dumps({"owner": self.owner, "until": time.time() + ttl_secs}).encode()
        try:
            await self.kv.create(name, value)
            return True
        except self._errors.KeyWrongLastSequenceError:
            pass
        except self._errors.APIError as exc:
            if exc.err_code not in (10071, 10164):
                raise
        try:
            entry = await self.kv.get(name)
        except self._errors.KeyNotFoundError:
            return await self._create_quietly(name, value)
        if entry.value and _claim_until(entry.value) > time.time():
            return False
        try:
            assert entry.revision is not None
            await self.kv.update(name, value, last=entry.revision)
            return True
        except (self._errors.KeyWrongLastSequenceError, self._errors.BadRequestError):
            return False

    async def _create_quietly(self, name: str, value: bytes) -> bool:
        try:
            await self.kv.create(name, value)
            return True
        except (self._errors.KeyWrongLastSequenceError, self._errors.BadRequestError):
            return False

    async def release(self, key: str) -> None:
        name = f"claim.{kv_key(key)}"
        try:
            entry = await self.kv.get(name)
        except self._errors.KeyNotFoundError:
            return
        if entry.value and json.loads(entry.value).get("owner") == self.owner:
            try:
                await self.kv.delete(name, last=entry.revision)
            except (self._errors.KeyWrongLastSequenceError, self._errors.BadRequestError):
                pass  # someone took it over after it expired: theirs now

    async def last_done(self, key: str) -> datetime | None:
        try:
            entry = await self.kv.get(f"done.{kv_key(key)}")
        except self._errors.KeyNotFoundError:
            return None
        if not entry.value:
            return None
        return datetime.fromisoformat(entry.value.decode())

    async def mark_done(self, key: str, when: datetime) -> None:
        await self.kv.put(f"done.{kv_key(key)}", when.isoformat().encode())


def _claim_until(value: bytes) -> float:
    try:
        return float(json.loads(value)["until"])
    except (ValueError, KeyError, TypeError):
        return 0.0   # unreadable claim: treat as expired so it cannot block a host forever
