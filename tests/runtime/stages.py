"""Hand-built stages and specs for the runtime tests (the runner accepts any spec + stage)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from lanscope.runtime.topology import Kind, StageSpec
from schemas import Event, HostAnnotated, HostSeen
from schemas import subjects as subj
from tests.factories import host_seen


def spec(name: str, kind: Kind, *, consumes: tuple[str, ...] = (subj.HOST_SEEN,), batch_size: int = 16,
         concurrency: int = 4, ack_wait_secs: float | None = None) -> StageSpec:
    return StageSpec(name, kind, consumes=consumes, batch_size=batch_size,
                     concurrency=concurrency, ack_wait_secs=ack_wait_secs)


def seen(i: int, *, source: str = "arp") -> HostSeen:
    """The i-th distinct sighting (distinct content, so distinct ids)."""
    return host_seen(ip=f"198.18.{i // 250}.{i % 250 + 1}", mac=f"02:00:00:00:{i // 256:02x}:{i % 256:02x}",
                     source=source)


def annotation_for(event: Event) -> HostAnnotated:
    return HostAnnotated(host_key=event.host_key, observed_at=event.observed_at, source="test",
                         hostname=f"h-{event.host_key.replace(':', '')}")


class EchoEnricher:
    """One HostAnnotated per input; optionally waits on a gate or fails with a predicate."""

    def __init__(self, *, gate: asyncio.Event | None = None,
                 fail: Callable[[Event], bool] | None = None) -> None:
        self.gate = gate
        self.fail = fail
        self.seen: list[str] = []
        self.started = asyncio.Event()

    async def handle(self, event: Event) -> list[Event]:
        self.seen.append(event.id)
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None and self.fail(event):
            raise RuntimeError(f"cannot handle {event.host_key}")
        return [annotation_for(event)]


class MemorySink:
    """Keeps events by id; write() can block on a gate; returns one annotation per new event."""

    def __init__(self, *, gate: asyncio.Event | None = None, emit: bool = False) -> None:
        self.gate = gate
        self.emit = emit
        self.rows: dict[str, Event] = {}
        self.batches: list[list[str]] = []
        self.writing = asyncio.Event()
        self.opened = self.closed = False

    async def open(self) -> None:
        self.opened = True

    async def write(self, batch: list[Event], redelivered: Collection[str] | None = None) -> list[Event]:
        self.writing.set()
        if self.gate is not None:
            await self.gate.wait()
        self.batches.append([e.id for e in batch])
        for event in batch:
            self.rows[event.id] = event
        return [annotation_for(e) for e in batch] if self.emit else []

    async def close(self) -> None:
        self.closed = True


class SqliteSink:
    """A durable sink for the subprocess tests: one row per event id, plus every delivery."""

    def __init__(self, path: Path, *, write_delay_secs: float = 0.0) -> None:
        self.path = path
        self.write_delay_secs = write_delay_secs
        self.db: sqlite3.Connection | None = None

    async def open(self) -> None:
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, host_key TEXT)")
        self.db.execute("CREATE TABLE IF NOT EXISTS deliveries (id TEXT)")

    async def write(self, batch: list[Event], redelivered: Collection[str] | None = None) -> list[Event]:
        assert self.db is not None
        if self.write_delay_secs:
            await asyncio.sleep(self.write_delay_secs)   # simulated slow commit: a window to kill in
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR IGNORE INTO events VALUES (?, ?)", [(e.id, e.host_key) for e in batch])
        self.db.executemany("INSERT INTO deliveries VALUES (?)", [(e.id,) for e in batch])
        self.db.execute("COMMIT")
        return [annotation_for(e) for e in batch]

    async def close(self) -> None:
        if self.db is not None:
            self.db.close()


def count_rows(path: Path, table: str = "events") -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(path, timeout=10) as db:
        try:
            return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


async def eventually(condition: Callable[[], Any], *, timeout: float = 15.0, what: str = "condition",
                     interval: float = 0.02, context: Callable[[], str] | None = None) -> Any:
    """Poll ``condition`` (sync or async) until it returns something truthy, which is
    returned; fail naming ``what`` (and ``context()``, say process logs) after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            detail = f"\n{context()}" if context is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
        await asyncio.sleep(interval)


async def subject_count(bus: object, stream: str, subject: str) -> int:
    """Messages stored on subjects matching ``subject`` in ``stream``."""
    info = await bus.js.stream_info(stream, subjects_filter=subject)  # type: ignore[attr-defined]
    return sum((info.state.subjects or {}).values())
