"""Read-only SQL on the host_state file: one checked statement, bounded rows and time, plain cells.

Used by the sink (``lanscope query`` through the running pipeline) and by the
query command on the file itself when no pipeline owns it. A query still
running after its timeout is interrupted (DuckDB's ``interrupt()`` on its own
cursor); memory and threads are the connection's limits (_schema.connect).
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import MutableSet, Sequence
from datetime import datetime
from typing import Any

import duckdb
import msgspec

from .stage import QueryParam

_READ_PRAGMAS = re.compile(
    r"^\s*pragma\s+(table_info|show|show_tables|show_tables_expanded|database_size|storage_info|"
    r"database_list|version|platform|functions|metadata_info|user_agent)\b", re.IGNORECASE)
_READ_TYPES = {"SELECT", "EXPLAIN"}


class QueryRejected(ValueError):
    """A query that is not one read-only statement."""


class QueryStopped(Exception):
    """A query interrupted (too long, lanscope stopping) or out of memory; the message says which
    and the key that bounds it."""


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


def run_query(con: duckdb.DuckDBPyConnection, sql: str, max_rows: int,
              params: Sequence[QueryParam] = (), timeout_secs: float | None = None,
              *, running: MutableSet[duckdb.DuckDBPyConnection] | None = None) -> QueryResult:
    """Run one checked statement in a read-only transaction on its own cursor (blocking);
    ``params`` fill its ``?`` placeholders (never interpolate user text into ``sql``).

    ``timeout_secs``: interrupt it after that long. ``running``: where its cursor is while it
    runs, for whoever must interrupt it sooner (a stop)."""
    # Everything on the query's own cursor: the writer thread may be using the main
    # connection (an appender), and DuckDB refuses a second call on a busy connection.
    cur = con.cursor()
    timed_out = threading.Event()

    def interrupt() -> None:
        timed_out.set()
        cur.interrupt()

    timer = threading.Timer(timeout_secs, interrupt) if timeout_secs else None
    if running is not None:
        running.add(cur)
    try:
        check_read_only(cur, sql)
        if timer is not None:
            timer.start()
        cur.execute("BEGIN TRANSACTION READ ONLY")
        try:
            cur.execute(sql, list(params) if params else None)
            columns = [d[0] for d in cur.description or []]
            rows = cur.fetchmany(max_rows + 1)
        except duckdb.InterruptException:
            if timed_out.is_set():
                raise QueryStopped(f"the query ran longer than {timeout_secs:g}s and was stopped "
                                   "(sinks.host_state.query.timeout_ms)") from None
            raise QueryStopped("the query was stopped: lanscope is stopping") from None
        except duckdb.OutOfMemoryException as exc:
            raise QueryStopped("the query needs more memory than sinks.host_state.query.memory_limit_mb "
                               f"allows: {str(exc).splitlines()[0]}") from None
        finally:
            with contextlib.suppress(duckdb.Error):
                cur.execute("ROLLBACK")
    finally:
        if timer is not None:
            timer.cancel()
        if running is not None:
            running.discard(cur)
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
