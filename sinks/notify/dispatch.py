"""Per-target delivery: one queue and one worker per target, so a failing target holds
back only its own notifications.

A worker sends its queue's notifications in order. A failure a retry can help
(a timeout, a 5xx, a broker away) is retried with exponential backoff
(``backoff_secs``, doubling up to ``backoff_max_secs``) up to ``attempts`` times;
one no retry can help (a 4xx other than 408/425/429) is not retried. Then the
notification is dead-lettered with the reason. A target whose notification ran
out of attempts is "failing": its next ones get one attempt each until one gets
through, so an outage longer than the retry budget drains the backlog into the DLQ
instead of retrying each notification for the whole budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from lanscope.settings import PositiveFloat, PositiveInt, Section

from ._redact import redact
from .model import Note

log = logging.getLogger(__name__)


class Retry(Section):
    """How a target's failed notification is retried before it is dead-lettered."""

    attempts: PositiveInt = 8              # tries per notification (the first one included)
    backoff_secs: PositiveFloat = 2.0      # wait after the first failure; doubles per failure
    backoff_max_secs: PositiveFloat = 300.0


class DeliveryError(Exception):
    """A send failed; the message is the reason (secrets redacted). ``retry``: whether
    trying again can help."""

    def __init__(self, reason: str, *, retry: bool = True) -> None:
        super().__init__(reason)
        self.retry = retry


class Sender(Protocol):
    """One target's I/O (webhook, Apprise, MQTT)."""

    name: str
    kind: str

    async def start(self) -> None: ...

    async def send(self, note: Note) -> None:
        """Deliver; raise DeliveryError when it did not get through."""
        ...

    async def close(self) -> None: ...


Settle = Callable[[Note, str | None], Awaitable[None]]   # (note, None: sent | the reason it was given up)


class TargetQueue:
    """One target's queue and worker."""

    def __init__(self, sender: Sender, retry: Retry, settle: Settle) -> None:
        self.sender = sender
        self.retry = retry
        self.settle = settle
        self.queue: deque[Note] = deque()
        self.failing = False
        self.sending: Note | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    @property
    def name(self) -> str:
        return self.sender.name

    def put(self, note: Note) -> None:
        self.queue.append(note)
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"notify:{self.name}")

    def idle(self) -> bool:
        return not self.queue and self.sending is None

    async def stop(self, grace_secs: float) -> None:
        """Let the notification being sent finish (up to ``grace_secs``), then stop; what is
        still queued stays owed in the ledger."""
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=grace_secs)
            if not done:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task

    async def _run(self) -> None:
        while not self._stop.is_set():
            if not self.queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            note = self.queue[0]
            self.sending = note
            try:
                reason = await self._deliver(note)
            finally:
                self.sending = None
            if reason == "":          # stopping between attempts: stays owed
                return
            self.queue.popleft()
            try:
                await self.settle(note, reason)
            except Exception as exc:  # the DLQ or the disk: it stays owed, and goes again after a restart
                log.error("notify: %s to %s: cannot settle it: %s: %s", note.kind, self.name,
                          type(exc).__name__, redact(str(exc)))

    async def _deliver(self, note: Note) -> str | None:
        """None once sent; the reason once given up; "" when stopped between attempts."""
        attempts = 1 if self.failing else self.retry.attempts
        delay = self.retry.backoff_secs
        for attempt in range(1, attempts + 1):
            try:
                await self.sender.send(note)
            except Exception as exc:
                # A DeliveryError says whether a retry can help; anything else (a library's own
                # error) is tried again like a transport failure.
                delivery = exc if isinstance(exc, DeliveryError) else DeliveryError(
                    redact(f"{type(exc).__name__}: {exc}"))
                reason = str(delivery)
                if not delivery.retry:
                    return f"{reason} (not retried)"
                if attempt == attempts:
                    self.failing = True
                    return f"{reason} (after {attempt} attempt{'s' if attempt > 1 else ''})"
                log.warning("notify: %s to %s failed (attempt %d/%d), retry in %.1fs: %s", note.kind,
                            self.name, attempt, attempts, delay, reason)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                if self._stop.is_set():
                    return ""
                delay = min(delay * 2, self.retry.backoff_max_secs)
                continue
            if self.failing:
                log.info("notify: %s gets through again", self.name)
            self.failing = False
            return None
        raise AssertionError("unreachable")


__all__ = ["DeliveryError", "Retry", "Sender", "Settle", "TargetQueue"]
