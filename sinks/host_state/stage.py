"""The ``host_state`` sink: host records, change detection and history; owns the DuckDB file.

``write(batch)`` folds the batch into the in-memory host book (loaded from
DuckDB at ``open()``), commits everything in one transaction, and returns the
``HostChanged`` events to publish. Inputs whose ids were committed before (a
redelivery after a crash between commit and ack) are not folded again; their
stored outputs (the outbox) are returned again, with the same ids, so the
runtime's ``Nats-Msg-Id`` de-duplication drops the copies. Only inputs the bus
delivered before can have been committed before, so with ``redelivered`` (the
runtime's word on which those are) only they are looked up.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from lanscope.runtime.stage import StageContext
from lanscope.settings import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from schemas import Event, Finding, HostChanged, RegistryEntry

from .fold import HostBook
from .presence import PresenceConfig
from .records import STAGE, Folded, HostEntry

if TYPE_CHECKING:   # the store imports DuckDB: only when the sink runs (not with the config)
    from ._store import HostStore, Loaded, Output

log = logging.getLogger(__name__)


class QueryConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Bounds of every query, through the pipeline or on the file (``lanscope query``)."""

    max_rows: PositiveInt = 10000           # a query returns at most this many rows
    timeout_ms: PositiveInt = 3000          # a query still running after this is interrupted
    memory_limit_mb: PositiveInt = 1024     # DuckDB's memory (queries and ingest); nothing spills to disk
    threads: PositiveInt = 2                # DuckDB's worker threads
    concurrency: PositiveInt = 2            # queries the pipeline runs at once; more wait their turn
    waiting: NonNegativeInt = 32            # ... at most this many wait; more are refused as busy


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """sinks.host_state in config.yaml (documented in config.sample.yaml)."""

    enabled: bool = True
    path: str = ""                          # the DuckDB file; empty: <data_dir>/lanscope.duckdb
    batch_size: PositiveInt = 4000          # facts per commit when behind
    flush_ms: NonNegativeInt = 200          # a batch waits this long to fill up
    keep_event_ids_days: PositiveFloat = 7.0  # processed ids and the outbox are kept this long
    compact_secs: NonNegativeFloat = 30.0   # host tables catch up with the journal within this
    query: QueryConfig = msgspec.field(default_factory=QueryConfig)
    presence: PresenceConfig = msgspec.field(default_factory=PresenceConfig)


def database_path(config: Config, data_dir: Path) -> Path:
    """The DuckDB file: ``path``, else ``<data_dir>/lanscope.duckdb``."""
    return Path(config.path) if config.path else data_dir / "lanscope.duckdb"


def _utcnow() -> datetime:
    return datetime.now(UTC)


# A query parameter: what JSON carries. User input reaches SQL only this way (``?``).
QueryParam = str | int | float | bool | None


class QueryRequest(msgspec.Struct, forbid_unknown_fields=True):
    sql: str
    params: list[QueryParam] = []          # values for the statement's ``?`` placeholders


class HostState:
    """Sink: fold facts into host records, write DuckDB, return HostChanged events."""

    def __init__(self, config: Config, store: HostStore | None = None,
                 clock: Callable[[], datetime] = _utcnow) -> None:
        if store is None:
            from ._store import HostStore

            store = HostStore(Path(config.path), compact_secs=config.compact_secs, limits=config.query)
        self.config = config
        self.store = store
        self.clock = clock
        self.book = HostBook(config.presence)
        self._last_prune: datetime | None = None
        self._ahead = False            # memory may be ahead of the file (a reload failed)
        # Held while memory may run ahead of the file (fold .. commit): a query's
        # compaction writes the book's entries, which must all be committed ones.
        self._writing = asyncio.Lock()

    async def open(self) -> None:
        async with self._writing:
            await self._load(await self.store.open())
        log.info("host_state: %d hosts loaded from %s", len(self.book.hosts), self.store.path)

    async def _load(self, loaded: Loaded) -> None:
        """The book as committed: the host tables, then the journal's batches folded again."""
        self.book = HostBook(self.book.policy, loaded.entries)
        for facts in loaded.journal:
            folded = self.book.fold(facts)
            self.store.remember(list(folded.upserts.values()), list(folded.deletes), _ports_of(folded))
        if loaded.journal:
            log.info("host_state: %d batches replayed from the journal", len(loaded.journal))
            await self.store.compact()

    async def close(self) -> None:
        async with self._writing:
            await self.store.close()

    async def write(self, batch: list[Event], redelivered: Collection[str] | None = None) -> list[Event]:
        async with self._writing:
            return await self._write(batch, redelivered)

    async def _write(self, batch: list[Event], redelivered: Collection[str] | None) -> list[Event]:
        if self._ahead:
            await self._load(await self.store.reload())
            self._ahead = False
        maybe_done = [e.id for e in batch if e.id and (redelivered is None or e.id in redelivered)]
        done = await self.store.processed(maybe_done)
        replayed: dict[str, Event] = {}
        fresh: list[Event] = []
        seen_ids: dict[str, None] = {}   # a set in batch order
        for event in batch:
            if event.id and event.id in done:
                for output in done[event.id]:
                    replayed.setdefault(output.id, output)
                continue
            if event.id:
                if event.id in seen_ids:     # the same message twice in one batch
                    continue
                seen_ids[event.id] = None
            fresh.append(event)
        if not fresh:
            return list(replayed.values())

        from ._store import Batch

        host_facts = [e for e in fresh if not isinstance(e, (Finding, RegistryEntry))]
        try:
            folded = self.book.fold(host_facts)
            rows = Batch(
                processed=list(seen_ids),
                facts=host_facts,
                hosts=list(folded.upserts.values()),
                removed_hosts=folded.deletes,
                ports_of=_ports_of(folded),
                history=folded.history,
                findings=_newest(e for e in fresh if isinstance(e, Finding)),
                registry=_newest(e for e in fresh if isinstance(e, RegistryEntry)),
            )
            outputs: list[Output] = [*folded.changed, *folded.requests]
            for output in outputs:
                inputs = folded.contributors.get(output.id) or []
                rows.outbox.extend((i, output) for i in inputs)
            await self.store.write(rows, self.clock())
        except BaseException as failure:
            # Memory ran ahead of the database: reload it so a retry folds the batch again.
            try:
                await self._load(await self.store.reload())
            except Exception as exc:   # the write's error is the one to report (a full disk ...)
                log.warning("host_state: reloading after a failed write failed too: %s", exc)
                self._ahead = True     # the next write reloads first
                raise failure from exc
            raise
        await self._maybe_prune()
        return [*replayed.values(), *folded.changed, *folded.requests]

    async def _maybe_prune(self) -> None:
        now = self.clock()
        if self._last_prune is not None and now - self._last_prune < timedelta(hours=1):
            return
        self._last_prune = now
        await self.store.prune(now - timedelta(days=self.config.keep_event_ids_days))

    # ------------------------------------------------------------------ queries

    async def query(self, request: bytes) -> bytes:
        """JSON ``{"sql": ..., "params": [...]}`` -> ``{"columns": [...], "rows": [...]}`` or
        ``{"error": ...}``; ``params`` (optional) fill the statement's ``?`` placeholders.

        Read-only: one SELECT-like statement, run in a read-only transaction on
        its own cursor, with file access disabled for the whole database; bounded by
        ``query`` (rows, time, memory, threads, how many at once)."""
        from ._query import QueryRejected
        from ._schema import StoreError

        try:
            asked = msgspec.json.decode(request, type=QueryRequest)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return _error(f"bad query request: {exc}; send {{\"sql\": \"SELECT ...\"}}")
        try:
            async with self._writing:
                await self.store.compact()    # the host tables as of the last commit
            result = await self.store.query(asked.sql, asked.params)
        except QueryRejected as exc:
            return _error(str(exc))
        except StoreError as exc:
            return _error(str(exc))
        except Exception as exc:   # a SQL error is the caller's, not the sink's
            return _error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return msgspec.json.encode(result)


def _error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def _ports_of(folded: Folded) -> list[HostEntry]:
    """The folded hosts whose ports changed."""
    return [folded.upserts[k] for k in sorted(folded.ports_dirty) if k in folded.upserts]


def _newest(events: Any) -> list[Any]:
    """One event per key (finding_id / entry_id), the newest observation winning."""
    best: dict[str, Any] = {}
    for event in events:
        key = event.finding_id if isinstance(event, Finding) else event.entry_id
        current = best.get(key)
        if current is None or event.observed_at >= current.observed_at:
            best[key] = event
    return list(best.values())


def build(config: Config, ctx: StageContext) -> HostState:
    return HostState(msgspec.structs.replace(config, path=str(database_path(config, ctx.data_dir))))


__all__ = ["STAGE", "Config", "HostChanged", "HostState", "PresenceConfig", "QueryConfig", "build",
           "database_path"]
