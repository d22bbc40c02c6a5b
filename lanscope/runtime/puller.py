"""A durable pull consumer kept fed: how every enricher and sink receives its messages."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from typing import TYPE_CHECKING

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

if TYPE_CHECKING:
    from lanscope.runtime.bus import Bus

log = logging.getLogger(__name__)

SUB_PENDING_BYTES = 256 * 1024 * 1024    # what a subscription may hold before nats-py drops


class Puller:
    """A durable pull consumer kept fed, so a batch arrives while the previous one is handled.

    nats-py's ``fetch()`` costs an asyncio timeout per message and leaves no
    request outstanding between calls; this keeps pull requests open on the
    server (each expiring after ``expires_secs``), and the subscription's
    callback (or the read loop itself, see fastpath) only appends to a buffer.
    The server's status replies say how much of a request went unfilled (408 on
    expiry), which keeps the count of requested messages exact; a reconnect
    (the server forgets a connection's requests) or a silent request resets it.

    ``ahead``: keep up to ``prefetch`` messages requested beyond what fetch()
    takes (a sink: the next batch arrives while one is written). Without it,
    at most what the last fetch() asked for is requested (an enricher: a
    message never waits in the client for a handler slot, aging towards
    ack_wait without a heartbeat).

    Nothing here acks: the caller settles every message it takes. ``close()``
    stops requesting, waits for the open requests to end, and returns what
    arrived but was never taken, for the caller to hand back (nak).
    """

    def __init__(self, bus: Bus, stream: str, durable: str, *, prefetch: int,
                 expires_secs: float, ahead: bool = True) -> None:
        self.bus = bus
        self.stream = stream
        self.durable = durable
        self.prefetch = max(prefetch, 1)
        self.expires_secs = max(expires_secs, 0.05)
        self.ahead = ahead
        self._window = self.prefetch           # buffered + requested stays within this
        self._next_subject = f"{bus.api_prefix}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = ""
        self._sub: Subscription | None = None
        self._buffer: deque[Msg] = deque()
        self._arrivals: deque[float] = deque()  # when each buffered message came (monotonic)
        self._wanted = 1                      # wake the taker once this many are buffered
        self._arrived = asyncio.Event()
        self._requested = 0                   # asked for, not yet delivered or expired
        self._active_at = 0.0                 # last request or reply
        self._reconnects = bus.reconnects
        self._closing = False

    async def start(self) -> None:
        self._inbox = self.bus.nc.new_inbox()
        self._sub = await self.bus.nc.subscribe(self._inbox, cb=self._on_msg,
                                                pending_bytes_limit=SUB_PENDING_BYTES)
        self.bus.nc.deliver_directly(self._sub, self._take)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def _take(self, msg: Msg) -> None:
        """A message of the stream (directly from the read loop, or via _on_msg)."""
        self._active_at = time.monotonic()
        self._requested = max(self._requested - 1, 0)
        self._buffer.append(msg)
        self._arrivals.append(self._active_at)
        if len(self._buffer) >= self._wanted:
            self._arrived.set()

    async def _on_msg(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is None and msg.reply:
            self._take(msg)
            return
        self._active_at = time.monotonic()
        if status == "100":                    # idle heartbeat
            return
        # 408 request expired, 409 request ended (leadership change, limits, consumer
        # deleted), 404 no messages: the header says how much went unfilled.
        unfilled = (msg.headers or {}).get("Nats-Pending-Messages")
        if unfilled is not None and unfilled.isdigit():
            self._requested = max(self._requested - int(unfilled), 0)
        else:
            self._requested = 0
        if status not in ("404", "408"):
            log.debug("pull %s/%s ended: %s %s", self.stream, self.durable, status,
                      (msg.headers or {}).get("Description", ""))
        self._arrived.set()                    # the taker may want to ask again

    async def _refill(self) -> None:
        if self._closing or self._sub is None:
            return
        now = time.monotonic()
        if self.bus.reconnects != self._reconnects:
            self._reconnects, self._requested = self.bus.reconnects, 0
        elif self._requested and now - self._active_at > self.expires_secs + 2.0:
            self._requested = 0                # expired without a word (lost on the way)
        want = self._window - len(self._buffer) - self._requested
        # Ask again when half the window is free, not for every message taken.
        if want <= 0 or (self._requested and want < self._window // 2):
            return
        request = {"batch": want, "expires": int(self.expires_secs * 1e9)}
        try:
            await self.bus.nc.publish(self._next_subject, json.dumps(request).encode(),
                                      reply=self._inbox)
        except (nats.errors.Error, OSError) as exc:
            log.debug("pull request for %s/%s failed: %s", self.stream, self.durable,
                      type(exc).__name__)
            return
        self._requested += want
        self._active_at = now

    async def fetch(self, limit: int, timeout: float, *, fill_secs: float = 0.0) -> list[Msg]:
        """Up to ``limit`` messages: waits ``timeout`` for the first, then for the batch to
        fill until the oldest has waited ``fill_secs`` since it arrived (a message that
        waited while the previous batch was written is not held back again); [] when
        nothing came."""
        if not self.ahead:
            self._window = max(min(limit, self.prefetch), 1)
        deadline = time.monotonic() + max(timeout, 0.0)
        await self._wait(1, deadline)
        if not self._buffer:
            return []
        if fill_secs > 0 and len(self._buffer) < limit:
            await self._wait(limit, self._arrivals[0] + fill_secs)
        count = min(limit, len(self._buffer))
        taken = [self._buffer.popleft() for _ in range(count)]
        for _ in range(count):
            self._arrivals.popleft()
        if self.ahead:
            await self._refill()
        return taken

    async def _wait(self, count: int, deadline: float) -> None:
        while len(self._buffer) < count:
            await self._refill()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            # Wake on `count` buffered or on a status reply (time to ask again).
            self._wanted = min(count, self.prefetch)
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), min(remaining, self.expires_secs))
            except TimeoutError:
                pass
            finally:
                self._wanted = 1
            if count > self.prefetch and len(self._buffer) >= self.prefetch:
                return

    async def close(self) -> list[Msg]:
        """Stop asking; wait for the open requests to end; unsubscribe; return untaken messages."""
        self._closing = True
        if self._sub is None:
            return list(self._buffer)
        deadline = time.monotonic() + self.expires_secs + 1.0
        while self._requested and time.monotonic() < deadline and not self.bus.nc.is_closed \
                and self.bus.reconnects == self._reconnects:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), max(deadline - time.monotonic(), 0.01))
        # Let the subscription's callback pass on anything already read from the socket.
        while self._sub.pending_msgs and time.monotonic() < deadline:
            await asyncio.sleep(0)
        sub, self._sub = self._sub, None
        self.bus.nc.stop_delivering(sub)
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        left, self._buffer, self._arrivals = list(self._buffer), deque(), deque()
        return left
