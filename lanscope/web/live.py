"""Live events for the pages: host changes and findings from the bus, fanned out to browsers.

One follower of the CHANGES stream per dashboard process (lanscope.runtime.observe)
hands each event to ``Broadcaster.publish``, which keeps the last ``web.feed_events``
for the feed page and puts it on the queue of every open server-sent-events stream
whose filter it matches. A browser that falls behind (its queue full) is cut off;
its EventSource reconnects with Last-Event-ID and gets what it missed from the ring.
Each item's HTML is rendered once, by the template engine (autoescaped), not per page.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas import AnyEvent, Finding, HostChanged

log = logging.getLogger(__name__)

HOST_KINDS = ("new", "changed", "gone", "back")
FINDING_KINDS = ("opened", "resolved")
KINDS = HOST_KINDS + FINDING_KINDS
_QUEUE = 256                      # items a stream may fall behind before it is cut off
KEEPALIVE_SECS = 15.0


@dataclass
class FeedItem:
    seq: int                      # this process's order; the SSE id
    kind: str                     # new changed gone back | opened resolved
    host_key: str
    ip: str | None
    mac: str | None
    hostname: str | None
    at: datetime
    fields: tuple[str, ...]       # changed fields (host events) or the rule (findings)
    event: AnyEvent
    html: str = ""                # rendered once, when published
    frame: str = ""               # its server-sent event, encoded once for every stream

    @classmethod
    def of(cls, seq: int, event: AnyEvent) -> FeedItem | None:
        if isinstance(event, HostChanged):
            host = event.host
            return cls(seq, event.kind.value, event.host_key, host.ip, host.mac, host.hostname,
                       event.observed_at, tuple(c.field for c in event.changes), event)
        if isinstance(event, Finding):
            return cls(seq, event.state.value, event.host_key, event.ip, event.mac, None,
                       event.observed_at, (event.rule,), event)
        return None


@dataclass(frozen=True)
class Filter:
    """What one page wants: kinds, one host, text in its address/name, a changed field."""

    kinds: frozenset[str] = frozenset(KINDS)
    host: str = ""
    text: str = ""
    field: str = ""

    @classmethod
    def from_query(cls, query: Mapping[str, str], kinds: list[str] | None = None) -> Filter:
        wanted = frozenset(k for k in (kinds or []) if k in KINDS) or frozenset(KINDS)
        return cls(wanted, query.get("host", "").strip(), query.get("q", "").strip().lower(),
                   query.get("field", "").strip())

    def matches(self, item: FeedItem) -> bool:
        if item.kind not in self.kinds:
            return False
        if self.host and item.host_key != self.host:
            return False
        if self.field and self.field not in item.fields:
            return False
        if self.text:
            haystack = " ".join(v for v in (item.host_key, item.ip, item.mac, item.hostname) if v).lower()
            if self.text not in haystack:
                return False
        return True


@dataclass(eq=False)
class _Stream:
    filter: Filter
    queue: asyncio.Queue[FeedItem | None] = field(default_factory=lambda: asyncio.Queue(_QUEUE))
    cut: bool = False


class TooManyStreams(Exception):
    pass


class Broadcaster:
    def __init__(self, size: int, max_streams: int, render: Callable[[FeedItem], str]) -> None:
        self.recent: deque[FeedItem] = deque(maxlen=max(size, 1))
        self.max_streams = max_streams
        self.render = render
        self._streams: set[_Stream] = set()
        self._seq = 0
        self.closed = False

    async def publish(self, event: AnyEvent, subject: str = "") -> None:
        """One event from the bus: keep it, and hand it to every matching stream."""
        item = FeedItem.of(self._seq + 1, event)
        if item is None:
            return
        self._seq = item.seq
        item.html = self.render(item)
        item.frame = _frame(item)
        self.recent.append(item)
        for stream in list(self._streams):
            if stream.cut or not stream.filter.matches(item):
                continue
            try:
                stream.queue.put_nowait(item)
            except asyncio.QueueFull:
                stream.cut = True            # it reconnects and catches up from the ring
                log.info("a live stream fell %d events behind; cut off", _QUEUE)

    def matching(self, flt: Filter, limit: int) -> list[FeedItem]:
        """The newest ``limit`` kept items that match, newest first."""
        found: list[FeedItem] = []
        for item in reversed(self.recent):
            if flt.matches(item):
                found.append(item)
                if len(found) >= limit:
                    break
        return found

    def after(self, seq: int) -> list[FeedItem]:
        return [item for item in self.recent if item.seq > seq]

    async def stream(self, flt: Filter, last_seq: int | None) -> AsyncIterator[str]:
        """Server-sent events for one page: missed items first (Last-Event-ID), then live."""
        if self.closed:
            return
        if len(self._streams) >= self.max_streams:
            raise TooManyStreams(f"{self.max_streams} live streams are open (web.max_streams)")
        stream = _Stream(flt)
        self._streams.add(stream)
        try:
            yield "retry: 3000\n\n"
            sent = last_seq or 0
            if last_seq is not None:
                for item in self.after(last_seq):
                    if flt.matches(item):
                        sent = item.seq
                        yield item.frame
            while not stream.cut:
                try:
                    queued = await asyncio.wait_for(stream.queue.get(), KEEPALIVE_SECS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if queued is None:
                    return
                if queued.seq > sent:
                    sent = queued.seq
                    yield queued.frame
        finally:
            self._streams.discard(stream)

    def close(self) -> None:
        """End every stream (shutdown): their pages reconnect to whoever serves next."""
        self.closed = True
        for stream in self._streams:
            try:
                stream.queue.put_nowait(None)
            except asyncio.QueueFull:
                stream.cut = True


def _frame(item: FeedItem) -> str:
    data: dict[str, Any] = {"seq": item.seq, "kind": item.kind, "host_key": item.host_key,
                            "html": item.html}
    return f"id: {item.seq}\nevent: lanscope\ndata: {json.dumps(data)}\n\n"
