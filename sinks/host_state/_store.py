"""The DuckDB file: the host_state sink's single I/O primitive.

Only this module touches DuckDB. Every blocking call goes through
``asyncio.to_thread`` here, once. One ``write()`` is one transaction: the
processed event ids, the outbox, the host journal, history, findings and
registry rows commit together or not at all, so the runtime may ack the batch
after it returns and a redelivered batch finds its ids already processed.

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

Compaction writes rows with the Appender (never ``executemany``: ~100x slower).
DuckDB upserts keep the *first* of duplicate keys in one statement, so rows
arrive here already de-duplicated by key (the fold produces one row per host
and port; findings and registry rows are reduced newest-wins by the caller)
and replace existing rows with delete-then-append inside the transaction.
The store remembers every committed row minus its clock columns: a row whose
rest is unchanged becomes one narrow ``UPDATE ... FROM unnest(...)`` per table
instead of a delete and a 29-column append; rows equal to the committed ones
are not written at all. Timestamps cross into those statements as integer
microseconds (``make_timestamptz``): converting aware ``datetime`` objects is
much of the Appender's cost.

IPs are stored as text plus integers (``ipv4 UINTEGER``, ``ipv6 UHUGEINT``):
the ``inet`` extension would be downloaded at run time, which lanscope never does.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import re
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import msgspec

from schemas import AnyEvent, Finding, HostChanged, PortResult, PortState, Protocol, RegistryEntry

from .fold import HistoryRow, HostEntry, PortRow

log = logging.getLogger(__name__)

_HOST_COLUMNS = """
    host_key VARCHAR NOT NULL,
    ip VARCHAR, ipv4 UINTEGER, ipv6 UHUGEINT, ips VARCHAR[],
    hostname VARCHAR, vendor VARCHAR, mac_randomized BOOLEAN, os_hint VARCHAR,
    services VARCHAR[], open_ports VARCHAR[],
    dhcp_type VARCHAR, dhcp_status VARCHAR, dhcp_comment VARCHAR, arp_state VARCHAR,
    active BOOLEAN NOT NULL,
    vm_name VARCHAR, vm_id BIGINT, vm_type VARCHAR, vm_node VARCHAR, vm_status VARCHAR,
    first_seen TIMESTAMPTZ, last_seen TIMESTAMPTZ,
    last_evidence VARCHAR, last_evidence_at TIMESTAMPTZ, missed_sweeps INTEGER,
    last_seen_by JSON,
    state JSON NOT NULL
"""

# Each entry migrates the schema from version i to i+1. Never edit a shipped one: append.
MIGRATIONS: tuple[str, ...] = (
    f"""
    CREATE TABLE hosts_by_mac (mac VARCHAR PRIMARY KEY, {_HOST_COLUMNS});
    CREATE TABLE hosts_by_ip ({_HOST_COLUMNS}, PRIMARY KEY (host_key));
    CREATE VIEW hosts AS
        SELECT * FROM hosts_by_mac UNION ALL BY NAME SELECT * FROM hosts_by_ip;
    CREATE TABLE history (
        host_key VARCHAR NOT NULL, field VARCHAR NOT NULL, old JSON, new JSON,
        source VARCHAR, observed_at TIMESTAMPTZ NOT NULL, event_id VARCHAR,
        recorded_at TIMESTAMPTZ NOT NULL);
    CREATE TABLE host_ports (
        host_key VARCHAR NOT NULL, ip VARCHAR, ipv4 UINTEGER, ipv6 UHUGEINT,
        protocol VARCHAR NOT NULL, port INTEGER NOT NULL, state VARCHAR NOT NULL, reason VARCHAR,
        service VARCHAR, product VARCHAR, version VARCHAR, extra_info VARCHAR,
        banner VARCHAR, os_hint VARCHAR, device_type VARCHAR, cpe VARCHAR[], tunnel VARCHAR,
        http_status INTEGER, http_title VARCHAR, tls JSON, auth_required BOOLEAN, method VARCHAR,
        first_seen TIMESTAMPTZ NOT NULL, last_seen TIMESTAMPTZ NOT NULL,
        state_since TIMESTAMPTZ NOT NULL, result JSON NOT NULL,
        PRIMARY KEY (host_key, protocol, port));
    CREATE VIEW services AS
        SELECT host_key, ip, protocol, port, service, product, version, extra_info,
               first_seen, last_seen
        FROM host_ports WHERE state = 'open' AND service IS NOT NULL;
    CREATE TABLE findings (
        finding_id VARCHAR PRIMARY KEY, state VARCHAR NOT NULL, rule VARCHAR NOT NULL,
        severity VARCHAR NOT NULL, category VARCHAR, title VARCHAR, host_key VARCHAR,
        ip VARCHAR, ipv4 UINTEGER, ipv6 UHUGEINT, mac VARCHAR, port INTEGER, evidence VARCHAR,
        first_seen TIMESTAMPTZ, last_seen TIMESTAMPTZ,
        observed_at TIMESTAMPTZ NOT NULL, event_id VARCHAR);
    CREATE TABLE registry (
        entry_id VARCHAR PRIMARY KEY, action VARCHAR, ip VARCHAR, ipv4 UINTEGER, ipv6 UHUGEINT,
        internal_ip VARCHAR, hostname VARCHAR, mac VARCHAR, os_hint VARCHAR,
        services VARCHAR[], owner VARCHAR, notes VARCHAR, last_seen TIMESTAMPTZ,
        observed_at TIMESTAMPTZ NOT NULL, event_id VARCHAR);
    CREATE TABLE processed_events (event_id VARCHAR PRIMARY KEY, processed_at TIMESTAMPTZ NOT NULL);
    CREATE TABLE outbox (
        input_id VARCHAR NOT NULL, output_id VARCHAR NOT NULL, payload VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL);
    CREATE INDEX outbox_input ON outbox (input_id);
    """,
    # 2: the host journal (see _write); processed ids one row per batch, not one per id.
    """
    CREATE TABLE host_journal (seq BIGINT NOT NULL, written_at TIMESTAMPTZ NOT NULL, facts BLOB NOT NULL);
    CREATE TABLE processed_batches (processed_at TIMESTAMPTZ NOT NULL, event_ids VARCHAR NOT NULL);
    INSERT INTO processed_batches
        SELECT processed_at, string_agg(event_id, chr(10)) FROM processed_events GROUP BY processed_at;
    DROP TABLE processed_events;
    CREATE VIEW processed_events AS
        SELECT unnest(string_split(event_ids, chr(10))) AS event_id, processed_at
        FROM processed_batches;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

_entry_encoder = msgspec.json.Encoder()
_entry_decoder = msgspec.json.Decoder(HostEntry)
_result_decoder = msgspec.json.Decoder(PortResult)
_changed_decoder = msgspec.json.Decoder(HostChanged)
_journal_encoder = msgspec.msgpack.Encoder()
_journal_decoder = msgspec.msgpack.Decoder(list[AnyEvent])


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

# A host row is (host_key .. first_seen | last_seen .. state): the columns after
# _HOST_CLOCKS change on every sighting and are updated in place; a change before
# it rewrites the row. A port row's only such column is last_seen (_PORT_LAST_SEEN).
_HOST_CLOCKS = 22
_PORT_LAST_SEEN = 23
_PORT_TLS, _PORT_RESULT = 19, 25     # the JSON columns of a port row (see _port_rows)
_TEXT: dict[Any, str] = {m: m.value for m in (*Protocol, *PortState)}   # no enum descriptor per use
_UPDATE_HOST_CLOCKS = """
    UPDATE {table} SET last_seen = make_timestamptz(u.ls), last_evidence = u.le,
        last_evidence_at = make_timestamptz(u.lea), missed_sweeps = u.ms, last_seen_by = u.lsb,
        state = u.st
    FROM (SELECT unnest($1) AS k, unnest($2) AS ls, unnest($3) AS le, unnest($4) AS lea,
                 unnest($5) AS ms, unnest($6) AS lsb, unnest($7) AS st) AS u
    WHERE {table}.host_key = u.k"""
_UPDATE_PORT_LAST_SEEN = """
    UPDATE host_ports SET last_seen = make_timestamptz(u.ls)
    FROM (SELECT unnest($1) AS k, unnest($2) AS pr, unnest($3) AS po, unnest($4) AS ls) AS u
    WHERE host_ports.host_key = u.k AND host_ports.protocol = u.pr AND host_ports.port = u.po"""
_DELETE_PORTS = """
    DELETE FROM host_ports USING (SELECT unnest($1) AS k, unnest($2) AS pr, unnest($3) AS po) AS d
    WHERE host_ports.host_key = d.k AND host_ports.protocol = d.pr AND host_ports.port = d.po"""


def _micros(value: datetime | None) -> int | None:
    return None if value is None else (value - _EPOCH) // _MICROSECOND


class StoreError(Exception):
    """The database cannot be opened or has a schema this version does not know."""


@functools.lru_cache(maxsize=65536)
def ip_ints(ip: str | None) -> tuple[int | None, int | None]:
    """(ipv4, ipv6) integer columns for an IP text."""
    if not ip:
        return None, None
    try:   # inet_pton: strict dotted quads, ~10x faster than ipaddress for the usual case
        return int.from_bytes(socket.inet_pton(socket.AF_INET, ip), "big"), None
    except OSError:
        pass
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None, None
    return (int(addr), None) if addr.version == 4 else (None, int(addr))


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _json(value: Any) -> str:
    if value is None:      # most history rows of a new host start from nothing
        return "null"
    return _entry_encoder.encode(value).decode()


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
    outbox: list[tuple[str, HostChanged]] = field(default_factory=list)   # (input id, output)
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


_READ_PRAGMAS = re.compile(
    r"^\s*pragma\s+(table_info|show|show_tables|show_tables_expanded|database_size|storage_info|"
    r"database_list|version|platform|functions|metadata_info|user_agent)\b", re.IGNORECASE)
_READ_TYPES = {"SELECT", "EXPLAIN"}


class QueryRejected(ValueError):
    """A query that is not one read-only statement."""


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Reject anything but one SELECT/WITH/DESCRIBE/SHOW/SUMMARIZE/EXPLAIN/read-PRAGMA statement."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRejected(str(exc).splitlines()[0]) from None
    if len(statements) != 1:
        raise QueryRejected(f"exactly one statement please, got {len(statements)}")
    kind = statements[0].type.name
    if kind == "PRAGMA" and _READ_PRAGMAS.match(sql):
        return
    if kind not in _READ_TYPES:
        raise QueryRejected(f"read-only queries only: {kind} statements are not allowed")


def _plain(value: Any) -> Any:
    """A cell as JSON can carry it (big integers and odd types become text)."""
    if value is None or isinstance(value, (bool, float, str)):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


class QueryResult(msgspec.Struct, kw_only=True):
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = False


# A query parameter: what JSON carries. User input reaches SQL only this way (``?``).
QueryParam = str | int | float | bool | None


def run_query(con: duckdb.DuckDBPyConnection, sql: str, max_rows: int,
              params: Sequence[QueryParam] = ()) -> QueryResult:
    """Run one checked statement in a read-only transaction on its own cursor (blocking);
    ``params`` fill its ``?`` placeholders (never interpolate user text into ``sql``)."""
    # Everything on the query's own cursor: the writer thread may be using the main
    # connection (an appender), and DuckDB refuses a second call on a busy connection.
    cur = con.cursor()
    try:
        check_read_only(cur, sql)
        cur.execute("BEGIN TRANSACTION READ ONLY")
        try:
            cur.execute(sql, list(params) if params else None)
            columns = [d[0] for d in cur.description or []]
            rows = cur.fetchmany(max_rows + 1)
        finally:
            cur.execute("ROLLBACK")
    finally:
        cur.close()
    return QueryResult(columns=columns, rows=[[_plain(v) for v in row] for row in rows[:max_rows]],
                       truncated=len(rows) > max_rows)


def unapplied_batches(con: duckdb.DuckDBPyConnection) -> int:
    """Journal rows the host tables lack (only after host_state stopped uncleanly)."""
    try:
        row = con.execute("SELECT count(*) FROM host_journal").fetchone()
    except duckdb.CatalogException:   # a file of schema version 1
        return 0
    return int(row[0]) if row else 0


# DuckDB checkpoints on the commit that takes its write-ahead log past this (default 16 MB).
# Such a checkpoint costs more the more rows the journal has (deleted ones too, until a
# checkpoint), at ~300 bytes per fact: at the default, commits cost 3-8 us per fact with a
# compaction every 5 s and up to 20 us with 700,000 facts journaled; at 256 MB, under 1 us.
# Replaying a WAL that size after a crash takes ~0.4 s at open.
CHECKPOINT_THRESHOLD = "256MB"
# How long the journal may hold a batch before the host tables catch up: the default of
# HostStore and of the sink's Config (config.yaml's duckdb.compact_secs ships the same).
COMPACT_SECS = 30.0


def connect(path: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Open the file; no file-system access from SQL (queries cannot read or write other files)."""
    config: dict[str, str | bool | int | float | list[str]] = {"enable_external_access": False}
    if not read_only:
        config["checkpoint_threshold"] = CHECKPOINT_THRESHOLD
    try:
        return duckdb.connect(str(path), read_only=read_only, config=config)
    except duckdb.Error as exc:   # IOException: another process holds the lock
        raise StoreError(f"cannot open {path}: {str(exc).splitlines()[0]}") from None


class HostStore:
    """The DuckDB file of the host_state sink (the one writer).

    ``compact_secs``: how long the journal may hold a batch before the host tables
    catch up; ``compact_hosts``: ... or as soon as this many hosts wait in it.

    A compaction due after a write runs in the background, on a cursor of its own, while
    the next batches commit: those touch the journal (appends; it deletes only rows it
    covers), history, outbox and processed ids, never the host tables, so the two
    transactions cannot conflict. Only taking its rows from the book holds up the write.
    One runs at a time; compact(), open and close wait for it."""

    def __init__(self, path: Path, *, compact_secs: float = COMPACT_SECS, compact_hosts: int = 50000) -> None:
        self.path = path
        self.compact_secs = compact_secs
        self.compact_hosts = compact_hosts
        self._con: duckdb.DuckDBPyConnection | None = None
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
        self._con = connect(self.path, read_only=False)
        self._migrate(self._con)
        self._compact_con = self._con.cursor()
        self._compactor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="host_state-compact")
        return self._load(self._con)

    async def reload(self) -> Loaded:
        """The committed state again (after a failed write left memory ahead of the file)."""
        return await asyncio.to_thread(self._load, self.con)

    async def close(self) -> None:
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

    @staticmethod
    def _migrate(con: duckdb.DuckDBPyConnection) -> None:
        con.execute("CREATE TABLE IF NOT EXISTS schema_version "
                    "(version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL)")
        current = con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        version = int(current[0]) if current else 0
        if version > SCHEMA_VERSION:
            raise StoreError(f"database schema version {version} is newer than this lanscope "
                             f"knows ({SCHEMA_VERSION}); upgrade lanscope")
        for number in range(version, SCHEMA_VERSION):
            con.execute("BEGIN")
            try:
                con.execute(MIGRATIONS[number])
                con.execute("INSERT INTO schema_version VALUES (?, now())", [number + 1])
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise

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
                self._hosts[(table, entry.record.host_key)] = _host_head(entry, table)
            for entry in entries.values():
                if entry.ports:
                    rows = zip(entry.ports, _port_rows(entry), strict=True)
                    self._ports[entry.record.host_key] = {name: _port_head(row) for name, row in rows}
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

    async def processed(self, ids: Sequence[str]) -> dict[str, list[HostChanged]]:
        """Which of these input ids were committed before, with the outputs they produced."""
        if not ids:
            return {}
        return await asyncio.to_thread(self._processed, list(ids))

    def _processed(self, ids: list[str]) -> dict[str, list[HostChanged]]:
        # A scan of every kept id: the runtime asks only for redelivered messages.
        with self._lock:
            cur = self.con.cursor()
            try:
                texts = {i: _id_text(i) for i in ids}
                done = {row[0] for row in cur.execute(
                    "SELECT DISTINCT event_id FROM processed_events "
                    "WHERE event_id IN (SELECT unnest(?))", [list(texts.values())]).fetchall()}
                found: dict[str, list[HostChanged]] = {i: [] for i, text in texts.items() if text in done}
                if found:
                    for input_id, payload in cur.execute(
                            "SELECT input_id, payload FROM outbox WHERE input_id IN (SELECT unnest(?)) "
                            "ORDER BY rowid", [sorted(found)]).fetchall():
                        found[input_id].append(_changed_decoder.decode(payload))
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
                con.execute("ROLLBACK")
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
                app.append_rows((i, e.id, _json(e), now) for i, e in batch.outbox)
        # Merged records: the history follows the MAC key (the IP-keyed rows go at compaction).
        for old, new in batch.removed_hosts.items():
            con.execute("UPDATE history SET host_key = ? WHERE host_key = ?", [new, old])
        if batch.facts:
            con.execute("INSERT INTO host_journal VALUES ($1, $2, $3)",
                        [self._journal_seq + 1, now, _journal_encoder.encode(batch.facts)])
        if batch.history:
            with con.appender("history") as app:
                app.append_rows((h.host_key, h.field, _json(h.old), _json(h.new), h.source,
                                 h.observed_at, h.event_id or None, now) for h in batch.history)
        if batch.findings:
            self._replace_newer(con, "findings", "finding_id", [_finding_row(f) for f in batch.findings])
        if batch.registry:
            self._replace_newer(con, "registry", "entry_id", [_registry_row(r) for r in batch.registry])

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
            hosts.append((table, _host_row(entry, table), self._hosts.get((table, key))))
        ports = [(key, list(entry.ports), _port_rows(entry), self._ports.get(key, {}))
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
                    self._write_hosts(con, table, rows, job.host_heads)
            if job.ports:
                self._write_ports(con, job.ports, job.port_heads)
            con.execute("DELETE FROM host_journal WHERE seq <= ?", [job.seq])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
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

    @staticmethod
    def _write_hosts(con: duckdb.DuckDBPyConnection, table: str,
                     rows: list[tuple[tuple[Any, ...], tuple[Any, ...] | None]],
                     heads: dict[tuple[str, str], tuple[Any, ...]]) -> None:
        """Append new and changed host rows; only the clocks of the others (see _HOST_CLOCKS).
        ``rows``: (row, the head the table holds); ``heads`` gets the heads written."""
        at = _clocks_at(table)
        replaced: list[str] = []
        appended: list[tuple[Any, ...]] = []
        clocks: list[tuple[Any, ...]] = []
        for row, stored in rows:
            head = row[:at]
            if stored == head:
                clocks.append(row)
                continue
            key = row[at - _HOST_CLOCKS]
            if stored is not None:
                replaced.append(key)
            appended.append(row)
            heads[(table, key)] = head
        if replaced:
            con.execute(f"DELETE FROM {table} WHERE host_key IN (SELECT unnest(?))", [replaced])
        if appended:
            with con.appender(table) as app:
                app.append_rows(appended)
        if clocks:
            columns = list(zip(*(r[at:] for r in clocks), strict=True))
            con.execute(_UPDATE_HOST_CLOCKS.format(table=table), [
                [r[at - _HOST_CLOCKS] for r in clocks],
                [_micros(v) for v in columns[0]], list(columns[1]),
                [_micros(v) for v in columns[2]], list(columns[3]), list(columns[4]),
                list(columns[5])])

    @staticmethod
    def _write_ports(con: duckdb.DuckDBPyConnection,
                     ports: list[tuple[str, list[str], list[tuple[Any, ...]], dict[str, tuple[Any, ...]]]],
                     heads: dict[str, dict[str, tuple[Any, ...]]]) -> None:
        """Append new and changed port rows, delete vanished ones, update the rest's last_seen.
        ``ports``: (host_key, names, rows, the heads the table holds)."""
        gone: list[tuple[str, str, int]] = []
        appended: list[tuple[Any, ...]] = []
        seen: list[tuple[str, str, int, int | None]] = []
        for key, names, rows, stored in ports:
            current: dict[str, tuple[Any, ...]] = {}
            for name, row in zip(names, rows, strict=True):
                head = current[name] = _port_head(row)
                before = stored.get(name)
                if before == head:
                    seen.append((key, row[4], row[5], _micros(row[_PORT_LAST_SEEN])))
                    continue
                if before is not None:
                    gone.append((key, row[4], row[5]))
                appended.append(row)
            for name, before in stored.items():
                if name not in current:
                    gone.append((key, before[4], before[5]))
            heads[key] = current
        if gone:
            con.execute(_DELETE_PORTS, [list(c) for c in zip(*gone, strict=True)])
        if appended:
            with con.appender("host_ports") as app:
                app.append_rows(_port_values(row) for row in appended)
        if seen:
            con.execute(_UPDATE_PORT_LAST_SEEN, [list(c) for c in zip(*seen, strict=True)])

    @staticmethod
    def _replace_newer(con: duckdb.DuckDBPyConnection, table: str, key: str,
                       rows: list[tuple[Any, ...]]) -> None:
        """Upsert rows whose observed_at is not older than the stored one (rows unique by key)."""
        staging = f"{table}_in"
        con.execute(f"CREATE TEMP TABLE IF NOT EXISTS {staging} AS SELECT * FROM {table} LIMIT 0")
        con.execute(f"DELETE FROM {staging}")
        with con.appender(staging) as app:
            app.append_rows(rows)
        con.execute(f"DELETE FROM {staging} s USING {table} t "
                    f"WHERE s.{key} = t.{key} AND s.observed_at < t.observed_at")
        con.execute(f"DELETE FROM {table} t USING {staging} s WHERE t.{key} = s.{key}")
        con.execute(f"INSERT INTO {table} SELECT * FROM {staging}")

    async def prune(self, before: datetime) -> None:
        """Forget processed ids and outbox rows older than the replay window."""
        await asyncio.to_thread(self._prune, before)

    def _prune(self, before: datetime) -> None:
        with self._lock:
            self.con.execute("DELETE FROM outbox WHERE created_at < ?", [before])
            self.con.execute("DELETE FROM processed_batches WHERE processed_at < ?", [before])

    # --------------------------------------------------------------- querying

    async def query(self, sql: str, max_rows: int, params: Sequence[QueryParam] = ()) -> QueryResult:
        return await asyncio.to_thread(run_query, self.con, sql, max_rows, params)


def _id_text(event_id: str) -> str:
    """An event id as processed_batches keeps it (newline-separated)."""
    return event_id.replace("\n", " ")


def _clocks_at(table: str) -> int:
    """Index of the first clock column of a `table` row (hosts_by_mac starts with the MAC)."""
    return _HOST_CLOCKS + (table == "hosts_by_mac")


def _host_row(entry: HostEntry, table: str) -> tuple[Any, ...]:
    """The row of `table`: its head (_host_head), then the clock columns."""
    r = entry.record
    state = msgspec.structs.replace(entry, ports={})
    return (*_host_head(entry, table), r.last_seen, entry.last_evidence, entry.last_evidence_at,
            entry.missed_sweeps, _json(r.last_seen_by), _json(state))


def _host_head(entry: HostEntry, table: str) -> tuple[Any, ...]:
    """A `table` row up to its clock columns (hosts_by_mac starts with the MAC)."""
    r = entry.record
    v4, v6 = ip_ints(r.ip)
    mac = (r.mac,) if table == "hosts_by_mac" else ()
    return (*mac, r.host_key, r.ip, v4, v6, list(r.ips), r.hostname, r.vendor, r.mac_randomized, r.os_hint,
            list(r.services), list(r.open_ports), r.dhcp_type, r.dhcp_status, r.dhcp_comment,
            r.arp_state, r.active, r.vm_name, r.vm_id, r.vm_type, r.vm_node, r.vm_status,
            r.first_seen)


def _port_head(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A port row without last_seen (what decides between rewriting it and updating last_seen)."""
    return row[:_PORT_LAST_SEEN] + row[_PORT_LAST_SEEN + 1:]


def _port_rows(entry: HostEntry) -> list[tuple[Any, ...]]:
    """The host's host_ports rows, with the two JSON columns (tls, result) still the structs
    themselves: rows are compared far more often than written (a re-probe repeats most
    ports), structs compare without encoding and are never changed in place by the fold.
    _port_values() encodes them for writing."""
    r = entry.record
    v4, v6 = ip_ints(r.ip)
    rows = []
    for row in entry.ports.values():
        p = row.result
        rows.append((r.host_key, r.ip, v4, v6, _TEXT[p.protocol], p.port, _TEXT[p.state], p.reason,
                     p.service, p.product, p.version, p.extra_info, p.banner, p.os_hint,
                     p.device_type, list(p.cpe), p.tunnel, p.http_status, p.http_title,
                     p.tls, p.auth_required, p.method,
                     row.first_seen, row.last_seen, row.state_since, p))
    return rows


def _port_values(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A _port_rows() row as the Appender takes it."""
    tls = row[_PORT_TLS]
    return (*row[:_PORT_TLS], _json(tls) if tls else None, *row[_PORT_TLS + 1:_PORT_RESULT],
            _json(row[_PORT_RESULT]))


def _finding_row(f: Finding) -> tuple[Any, ...]:
    v4, v6 = ip_ints(f.ip)
    return (f.finding_id, f.state.value, f.rule, f.severity.value, f.category, f.title, f.host_key,
            f.ip, v4, v6, f.mac, f.port, f.evidence, f.first_seen, f.last_seen, f.observed_at,
            f.id or None)


def _registry_row(e: RegistryEntry) -> tuple[Any, ...]:
    v4, v6 = ip_ints(e.ip)
    return (e.entry_id, e.action, e.ip, v4, v6, e.internal_ip, e.hostname, e.mac, e.os_hint,
            list(e.services), e.owner, e.notes, e.last_seen, e.observed_at, e.id or None)
