"""The DuckDB file: the host_state sink's single I/O primitive.

Only this module touches DuckDB, with its helpers: _schema (the tables, opening
the file), _rows (records as rows, and writing them) and _query (read-only
SQL). Every blocking call goes through ``asyncio.to_thread`` here, once. One
``write()`` is one transaction: the processed event ids, the outbox, the host
journal, history, findings and registry rows commit together or not at all, so
the runtime may ack the batch after it returns and a redelivered batch finds
its ids already processed.

The journal: most facts only move a known host's clocks (last seen, evidence,
a port's ``last_seen``), and rewriting its rows for each batch was most of the
sink's cost. A batch instead commits the facts it folded as one ``host_journal``
row (msgpack, ~0.3 us and ~300 bytes per event), and the host tables are brought
up to date from memory by a *compaction*: in the background once the oldest
journaled batch is ``compact_secs`` old (see HostStore), before every query, at
close, and at open. A compaction writes each host once however many batches
touched it (and deletes the rows of hosts merged away), and deletes the journal
rows it covers, in one transaction. The fold is deterministic, so folding the
journal's batches in order onto the host tables (what ``open()`` returns and the
sink does) gives back exactly the committed state after a crash. ``hosts`` and
``host_ports`` lag by about ``compact_secs``; anything that reads them through
the sink (``query``) compacts first.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import msgspec

from schemas import AnyEvent, Finding, HostChanged, HostCheckRequested, PortResult, RegistryEntry, site_of_key

from ._query import QueryParam, QueryResult, QueryStopped, run_query
from ._rows import (
    finding_row,
    host_head,
    host_row,
    json_text,
    port_head,
    port_rows,
    registry_row,
    replace_newer,
    write_hosts,
    write_ports,
)
from ._schema import StoreError, connect, migrate, rollback
from .records import HistoryRow, HostEntry, PortRow
from .stage import QueryConfig

log = logging.getLogger(__name__)

_entry_decoder = msgspec.json.Decoder(HostEntry)
_result_decoder = msgspec.json.Decoder(PortResult)
Output = HostChanged | HostCheckRequested      # what the sink publishes (the outbox)
_output_decoder = msgspec.json.Decoder(Output)
_journal_encoder = msgspec.msgpack.Encoder()
_journal_decoder = msgspec.msgpack.Decoder(list[AnyEvent])


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


@dataclass
class Loaded:
    """What open() finds: the host tables' records, and the journal's batches of facts
    (committed, not yet in the tables) for the caller to fold on top, in order."""

    entries: list[HostEntry]
    journal: list[list[Any]]


@dataclass
class Batch:
    """Everything one write() commits."""

    processed: list[str] = field(default_factory=list)
    outbox: list[tuple[str, Output]] = field(default_factory=list)        # (input id, output)
    facts: list[Any] = field(default_factory=list)                        # folded: the journal row
    hosts: list[HostEntry] = field(default_factory=list)                  # what the facts touched
    removed_hosts: dict[str, str] = field(default_factory=dict)           # old key -> new key
    ports_of: list[HostEntry] = field(default_factory=list)               # their ports changed
    history: list[HistoryRow] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    registry: list[RegistryEntry] = field(default_factory=list)


@dataclass
class _Compaction:
    """One compaction: rows taken from the book right after the commit of journal row
    ``seq`` (while nothing folds), written to the host tables later, in any thread."""

    seq: int
    entries: dict[str, HostEntry]        # the journaled hosts it covers (put back if it fails)
    ports_dirty: set[str]
    removed: set[str]                    # merged-away hosts whose rows it deletes
    # (table, row, the head the table holds or None)
    hosts: list[tuple[str, tuple[Any, ...], tuple[Any, ...] | None]]
    # (host_key, port names, port rows, the heads the table holds)
    ports: list[tuple[str, list[str], list[tuple[Any, ...]], dict[str, tuple[Any, ...]]]]
    # What the tables hold after it commits (see HostStore._hosts / _ports).
    host_heads: dict[tuple[str, str], tuple[Any, ...]] = field(default_factory=dict)
    port_heads: dict[str, dict[str, tuple[Any, ...]]] = field(default_factory=dict)





class HostStore:
    """The DuckDB file of the host_state sink (the one writer).

    ``compact_secs``: how long the journal may hold a batch before the host tables
    catch up; ``compact_hosts``: ... or as soon as this many hosts wait in it.

    A compaction due after a write runs in the background, on a cursor of its own, while
    the next batches commit: those touch the journal (appends; it deletes only rows it
    covers), history, outbox and processed ids, never the host tables, so the two
    transactions cannot conflict. Only taking its rows from the book holds up the write.
    One runs at a time; compact(), open and close wait for it."""

    def __init__(self, path: Path, *, compact_secs: float, compact_hosts: int = 50000,
                 limits: QueryConfig | None = None) -> None:
        self.path = path
        self.compact_secs = compact_secs
        self.compact_hosts = compact_hosts
        self.limits = limits or QueryConfig()
        self._con: duckdb.DuckDBPyConnection | None = None
        # Queries run in threads of their own, at most limits.concurrency at once: a slow one
        # never holds up the writes (the default executor) nor the next query.
        self._queries: ThreadPoolExecutor | None = None
        self._querying = 0
        self._running: set[duckdb.DuckDBPyConnection] = set()   # cursors of running queries
        self._lock = threading.Lock()   # one write transaction at a time on the main connection
        # What the host tables hold, minus the clock columns: (table, host_key) -> host row
        # head, host_key -> {"tcp/22": port row without last_seen}. Changed only after a COMMIT.
        self._hosts: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._ports: dict[str, dict[str, tuple[Any, ...]]] = {}
        # Committed to the journal, not yet to the host tables (the live entries).
        self._journaled: dict[str, HostEntry] = {}
        self._ports_journaled: set[str] = set()
        self._removed: set[str] = set()       # merged away: rows the next compaction deletes
        self._journal_seq = 0
        self._journal_since: float | None = None   # when the oldest uncompacted batch committed
        self._compactor: ThreadPoolExecutor | None = None     # while open
        self._compacting: tuple[_Compaction, Future[None]] | None = None
        self._compact_con: duckdb.DuckDBPyConnection | None = None

    # -------------------------------------------------------------- lifecycle

    async def open(self) -> Loaded:
        """Open (creating and migrating), and load every host with its ports."""
        return await asyncio.to_thread(self._open)

    def _open(self) -> Loaded:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = connect(self.path, read_only=False, memory_limit_mb=self.limits.memory_limit_mb,
                            threads=self.limits.threads)
        self._queries = ThreadPoolExecutor(max_workers=self.limits.concurrency,
                                           thread_name_prefix="host_state-query")
        migrate(self._con)
        self._compact_con = self._con.cursor()
        self._compactor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="host_state-compact")
        return self._load(self._con)

    async def reload(self) -> Loaded:
        """The committed state again (after a failed write left memory ahead of the file)."""
        return await asyncio.to_thread(self._load, self.con)

    async def close(self) -> None:
        # Running queries first: interrupted, so neither the close nor the exit waits for them.
        for cursor in list(self._running):
            with contextlib.suppress(Exception):
                cursor.interrupt()
        if self._queries is not None:
            await asyncio.to_thread(self._queries.shutdown, wait=True, cancel_futures=True)
            self._queries = None
        if self._con is not None:
            await asyncio.to_thread(self._compact_now)
            con, self._con = self._con, None
            if self._compact_con is not None:
                self._compact_con.close()
            await asyncio.to_thread(con.close)
        if self._compactor is not None:
            self._compactor.shutdown(wait=True)
            self._compactor = None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise StoreError("the store is not open")
        return self._con

    def _load(self, con: duckdb.DuckDBPyConnection) -> Loaded:
        """The host tables' records, and the journal's batches of facts in commit order."""
        with self._lock:
            self._settle(wait=True)
            entries: dict[str, HostEntry] = {}
            self._hosts, self._ports = {}, {}
            stored: list[tuple[str, HostEntry]] = []
            for table in ("hosts_by_mac", "hosts_by_ip"):
                for (state,) in con.execute(f"SELECT state FROM {table}").fetchall():
                    entry = _entry_decoder.decode(state)
                    entries[entry.record.host_key] = entry
                    stored.append((table, entry))
            for key, proto, port, result, first, last, since in con.execute(
                    "SELECT host_key, protocol, port, result, first_seen, last_seen, state_since "
                    "FROM host_ports").fetchall():
                owner = entries.get(key)
                if owner is not None:
                    owner.ports[f"{proto}/{port}"] = PortRow(
                        result=_result_decoder.decode(result), first_seen=_utc(first),
                        last_seen=_utc(last), state_since=_utc(since))
            for table, entry in stored:
                self._hosts[(table, entry.record.host_key)] = host_head(entry, table)
            for entry in entries.values():
                if entry.ports:
                    rows = zip(entry.ports, port_rows(entry), strict=True)
                    self._ports[entry.record.host_key] = {name: port_head(row) for name, row in rows}
            journal = con.execute("SELECT seq, facts FROM host_journal ORDER BY seq").fetchall()
            self._journaled, self._ports_journaled, self._removed = {}, set(), set()
            self._journal_since = None
            self._journal_seq = journal[-1][0] if journal else 0
            return Loaded(list(entries.values()), [_journal_decoder.decode(blob) for _, blob in journal])

    def remember(self, hosts: Sequence[HostEntry], removed: Sequence[str],
                 ports_of: Sequence[HostEntry]) -> None:
        """Committed to the journal (or replayed from it): the hosts the tables lag behind on.
        The removed (merged-away) hosts' rows go in the next compaction."""
        if self._journal_since is None and (hosts or removed):
            self._journal_since = time.monotonic()
        for old in removed:
            self._forget_rows(old)
            self._journaled.pop(old, None)
            self._ports_journaled.discard(old)
            self._removed.add(old)
        for entry in hosts:
            self._journaled[entry.record.host_key] = entry
        self._ports_journaled.update(e.record.host_key for e in ports_of)

    # ---------------------------------------------------------------- writing

    async def processed(self, ids: Sequence[str]) -> dict[str, list[Output]]:
        """Which of these input ids were committed before, with the outputs they produced."""
        if not ids:
            return {}
        return await asyncio.to_thread(self._processed, list(ids))

    def _processed(self, ids: list[str]) -> dict[str, list[Output]]:
        # A scan of every kept id: the runtime asks only for redelivered messages.
        with self._lock:
            cur = self.con.cursor()
            try:
                texts = {i: _id_text(i) for i in ids}
                done = {row[0] for row in cur.execute(
                    "SELECT DISTINCT event_id FROM processed_events "
                    "WHERE event_id IN (SELECT unnest(?))", [list(texts.values())]).fetchall()}
                found: dict[str, list[Output]] = {i: [] for i, text in texts.items() if text in done}
                if found:
                    for input_id, payload in cur.execute(
                            "SELECT input_id, payload FROM outbox WHERE input_id IN (SELECT unnest(?)) "
                            "ORDER BY rowid", [sorted(found)]).fetchall():
                        found[input_id].append(_output_decoder.decode(payload))
                return found
            finally:
                cur.close()

    async def write(self, batch: Batch, now: datetime) -> None:
        await asyncio.to_thread(self._write, batch, now)

    def _write(self, batch: Batch, now: datetime) -> None:
        with self._lock:
            con = self.con
            con.execute("BEGIN")
            try:
                self._write_rows(con, batch, now)
                con.execute("COMMIT")
            except BaseException:
                rollback(con)
                raise
            self._journal_seq += 1
            self.remember(batch.hosts, list(batch.removed_hosts), batch.ports_of)
            self._settle(wait=False)
            if self._compacting is None and self._compactor is not None and self._compaction_due():
                job = self._take_compaction()
                if job is not None:
                    self._compacting = (job, self._compactor.submit(self._apply_compaction, job))

    def _compaction_due(self) -> bool:
        return (len(self._journaled) >= self.compact_hosts
                or (self._journal_since is not None
                    and time.monotonic() - self._journal_since >= self.compact_secs))

    def _write_rows(self, con: duckdb.DuckDBPyConnection, batch: Batch, now: datetime) -> None:
        if batch.processed:
            # One row per batch (see the processed_events view): ~3x cheaper than a row per id.
            con.execute("INSERT INTO processed_batches VALUES ($1, $2)",
                        [now, "\n".join(_id_text(i) for i in batch.processed)])
        if batch.outbox:
            with con.appender("outbox") as app:
                app.append_rows((i, e.id, json_text(e), now) for i, e in batch.outbox)
        # Merged records: the history follows the MAC key (the IP-keyed rows go at compaction).
        for old, new in batch.removed_hosts.items():
            con.execute("UPDATE history SET host_key = ? WHERE host_key = ?", [new, old])
        if batch.facts:
            con.execute("INSERT INTO host_journal VALUES ($1, $2, $3)",
                        [self._journal_seq + 1, now, _journal_encoder.encode(batch.facts)])
        if batch.history:
            with con.appender("history") as app:
                app.append_rows((h.host_key, h.field, json_text(h.old), json_text(h.new), h.source,
                                 h.observed_at, h.event_id or None, now, site_of_key(h.host_key))
                                for h in batch.history)
        if batch.findings:
            replace_newer(con, "findings", "finding_id", [finding_row(f) for f in batch.findings])
        if batch.registry:
            replace_newer(con, "registry", "entry_id", [registry_row(r) for r in batch.registry])

    async def compact(self) -> None:
        """Bring the host tables up to date (the caller holds memory equal to what is committed)."""
        await asyncio.to_thread(self._compact_now)

    def _compact_now(self) -> None:
        with self._lock:
            self._settle(wait=True)
            job = self._take_compaction()
            if job is None:
                return
            try:
                self._write_compaction(self.con, job)
            except BaseException:
                self._put_back(job)
                raise
            self._absorb(job)

    def _take_compaction(self) -> _Compaction | None:
        """The rows of every journaled host, as the book has them now (under the lock, with
        nothing folding); the journal starts over."""
        entries, dirty, removed = self._journaled, self._ports_journaled, self._removed
        self._journaled, self._ports_journaled, self._removed = {}, set(), set()
        self._journal_since = None
        if not entries and not removed:
            return None
        hosts: list[tuple[str, tuple[Any, ...], tuple[Any, ...] | None]] = []
        for key, entry in entries.items():
            table = "hosts_by_mac" if entry.record.mac else "hosts_by_ip"
            hosts.append((table, host_row(entry, table), self._hosts.get((table, key))))
        ports = [(key, list(entry.ports), port_rows(entry), self._ports.get(key, {}))
                 for key, entry in entries.items() if key in dirty]
        return _Compaction(self._journal_seq, entries, dirty, removed, hosts, ports)

    def _apply_compaction(self, job: _Compaction) -> None:
        """The background half (compaction thread)."""
        assert self._compact_con is not None
        self._write_compaction(self._compact_con, job)

    def _write_compaction(self, con: duckdb.DuckDBPyConnection, job: _Compaction) -> None:
        """Write the job's hosts once each and delete the journal rows it covers: one transaction."""
        con.execute("BEGIN")
        try:
            if job.removed:
                keys = sorted(job.removed)
                con.execute("DELETE FROM hosts_by_ip WHERE host_key IN (SELECT unnest(?))", [keys])
                con.execute("DELETE FROM host_ports WHERE host_key IN (SELECT unnest(?))", [keys])
            for table in ("hosts_by_mac", "hosts_by_ip"):
                rows = [(row, stored) for t, row, stored in job.hosts if t == table]
                if rows:
                    write_hosts(con, table, rows, job.host_heads)
            if job.ports:
                write_ports(con, job.ports, job.port_heads)
            con.execute("DELETE FROM host_journal WHERE seq <= ?", [job.seq])
            con.execute("COMMIT")
        except BaseException:
            rollback(con)
            raise

    def _settle(self, *, wait: bool) -> None:
        """Take in the background compaction's outcome once it is over (``wait``: wait for it)."""
        if self._compacting is None:
            return
        job, future = self._compacting
        if not wait and not future.done():
            return
        self._compacting = None
        try:
            future.result()
        except Exception as exc:   # the journal still has it all: try again later
            log.warning("host_state: compaction failed, retried later: %s", exc)
            self._put_back(job)
            return
        self._absorb(job)

    def _absorb(self, job: _Compaction) -> None:
        """What the tables hold now; hosts merged away meanwhile are not among it."""
        self._hosts.update(job.host_heads)
        self._ports.update(job.port_heads)
        for old in self._removed:
            self._forget_rows(old)

    def _forget_rows(self, old: str) -> None:
        """A merged-away IP host: its rows leave the tables (at the next compaction)."""
        self._hosts.pop(("hosts_by_ip", old), None)
        self._ports.pop(old, None)

    def _put_back(self, job: _Compaction) -> None:
        """A failed compaction's hosts wait for the next one (as the book has them then)."""
        for key, entry in job.entries.items():
            if key not in self._removed:          # not merged away meanwhile
                self._journaled.setdefault(key, entry)
        self._ports_journaled |= job.ports_dirty - self._removed
        self._removed |= job.removed
        if self._journal_since is None:
            self._journal_since = time.monotonic()

    async def prune(self, before: datetime) -> None:
        """Forget processed ids and outbox rows older than the replay window."""
        await asyncio.to_thread(self._prune, before)

    def _prune(self, before: datetime) -> None:
        with self._lock:
            self.con.execute("DELETE FROM outbox WHERE created_at < ?", [before])
            self.con.execute("DELETE FROM processed_batches WHERE processed_at < ?", [before])

    # --------------------------------------------------------------- querying

    async def query(self, sql: str, params: Sequence[QueryParam] = ()) -> QueryResult:
        """One read-only query within ``limits``: ``concurrency`` run at once (the executor's
        threads), up to ``waiting`` more wait their turn (a dashboard page asks several at
        once); StoreError beyond that."""
        if self._queries is None:
            raise StoreError("the store is not open")
        if self._querying >= self.limits.concurrency + self.limits.waiting:
            raise StoreError(f"busy: {self._querying} queries are running or waiting "
                             "(sinks.host_state.query.concurrency, .waiting); try again")
        self._querying += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._queries, functools.partial(run_query, self.con, sql, self.limits.max_rows, params,
                                                 self.limits.timeout_ms / 1000, running=self._running))
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise                       # our caller's cancellation: let it through
            # A waiting query whose turn never came: close() shut the executor down.
            raise QueryStopped("the query was stopped: lanscope is stopping") from None
        finally:
            self._querying -= 1


def _id_text(event_id: str) -> str:
    """An event id as processed_batches keeps it (newline-separated)."""
    return event_id.replace("\n", " ")
