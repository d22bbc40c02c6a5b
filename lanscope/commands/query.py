"""``lanscope query "SQL"``: read-only SQL against the DuckDB store.

DuckDB lets one process write a file and no one else open it meanwhile, so
while the pipeline runs the question goes to the DuckDB owner (the host_state
sink) as a core NATS request on ``lanscope.query``; when nothing answers, the
file is opened read-only here. Both paths accept only one read statement and
run it in a read-only transaction with file access from SQL disabled.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from lanscope.config import Config
from lanscope.errors import LanscopeError, UsageError
from lanscope.output import print_json, print_table, warn
from lanscope.runtime.locate import pipeline_url
from sinks.host_state import (
    QueryParam,
    QueryRejected,
    QueryResult,
    StoreError,
    connect,
    run_query,
    unapplied_batches,
)

if TYPE_CHECKING:
    from lanscope.runtime.bus import Bus

log = logging.getLogger(__name__)
_CONNECT_TIMEOUT_SECS = 1.0
_REPLY_MARGIN_SECS = 2.0


class QueryError(LanscopeError):
    """The store refused or failed the query; the message says why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sql", help='one read-only statement, e.g. "SELECT ip, hostname FROM hosts"')
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table",
                        help="output format (default: table)")
    parser.add_argument("--json", action="store_true", help="same as --format json")
    parser.add_argument("--file", action="store_true",
                        help="skip the running pipeline and open the DuckDB file read-only")


def main(args: argparse.Namespace, config: Config) -> int:
    if args.json and args.format not in ("table", "json"):
        raise UsageError(f"--json contradicts --format {args.format}")
    result = ask(config, args.sql, pipeline=not args.file)
    show(result, "json" if args.json else args.format)
    return 0


def show(result: QueryResult, fmt: str, *, title: str | None = None) -> None:
    if fmt == "json":
        print_json({"columns": result.columns, "rows": result.rows, "truncated": result.truncated})
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(result.columns)
        writer.writerows([_csv_cell(v) for v in row] for row in result.rows)
    else:
        caption = "more rows not shown (sinks.host_state.query.max_rows)" if result.truncated else None
        print_table(result.columns, result.rows, title=title, caption=caption)


def _csv_cell(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return msgspec.json.encode(value).decode()
    return value


def ask(config: Config, sql: str, *, pipeline: bool = True) -> QueryResult:
    """Answer one read-only query: from the running pipeline if it answers, else from the file."""
    if pipeline:
        url, _namespace = pipeline_url(config.nats, config.data_dir)
        if url:
            reply = asyncio.run(_request(config, url, sql))
            if reply is not None:
                return reply
    return _from_file(config, sql)


async def _request(config: Config, url: str, sql: str) -> QueryResult | None:
    """The owner's answer, or None when no pipeline answers (then the file is used)."""
    from lanscope.runtime.auth import QUERY, client_config
    from lanscope.runtime.bus import Bus

    nats_config = msgspec.structs.replace(
        client_config(config.nats, config.data_dir, QUERY),
        connect_timeout_secs=min(config.nats.connect_timeout_secs, _CONNECT_TIMEOUT_SECS))
    try:
        bus = await asyncio.wait_for(Bus.connect(nats_config, url=url, name="lanscope-query", role=QUERY),
                                     timeout=_CONNECT_TIMEOUT_SECS * 2)
    except Exception as exc:   # TimeoutError included: nothing listens, read the file
        log.debug("no NATS at %s (%s); reading the file", url, exc)
        return None
    try:
        return await ask_pipeline(bus, sql, timeout_secs=config.sinks.host_state.query.timeout_ms / 1000)
    finally:
        await bus.close()


async def ask_pipeline(bus: Bus, sql: str, params: Sequence[QueryParam] = (), *,
                       timeout_secs: float) -> QueryResult | None:
    """One query to the DuckDB owner over ``lanscope.query`` on a connected bus; None when no
    pipeline answers (no responders, or no answer in time). ``timeout_secs`` is the pipeline's
    own limit (sinks.host_state.query.timeout_ms): it stops the query then and says so, so the
    reply is awaited a little longer. ``params`` fill ``?`` placeholders: user input goes
    there, never into ``sql``. The dashboard asks this way too."""
    from schemas.subjects import QUERY

    request: dict[str, Any] = {"sql": sql}
    if params:
        request["params"] = list(params)
    try:
        msg = await bus.nc.request(QUERY, msgspec.json.encode(request),
                                   timeout=timeout_secs + _REPLY_MARGIN_SECS)
    except Exception as exc:  # no responders / timeout: no pipeline owns the file right now
        log.debug("no answer on the query subject (%s); reading the file", type(exc).__name__)
        return None
    from lanscope.runtime.stagerun import H_QUERY_ERROR

    if msg.headers and msg.headers.get(H_QUERY_ERROR):
        raise QueryError(f"the pipeline failed the query: {msg.headers[H_QUERY_ERROR]}")
    return _decode_reply(msg.data)


def _decode_reply(reply: bytes) -> QueryResult:
    try:
        tree = msgspec.json.decode(reply)
    except msgspec.DecodeError:
        raise QueryError("the pipeline sent a reply that is not JSON") from None
    if isinstance(tree, dict) and "error" in tree:
        raise QueryError(str(tree["error"]))
    try:
        return msgspec.convert(tree, QueryResult)
    except msgspec.ValidationError as exc:
        raise QueryError(f"unexpected reply from the pipeline: {exc}") from None


def _from_file(config: Config, sql: str) -> QueryResult:
    return ask_file(config, [(sql, ())])[0]


def ask_file(config: Config, queries: Sequence[tuple[str, Sequence[QueryParam]]], *,
             warn_lagging: bool = True) -> list[QueryResult]:
    """Queries on the DuckDB file opened read-only (no pipeline owns it), one connection for
    all of them, closed before returning so a pipeline can start and take the file."""
    path = config.duckdb_path
    if not path.exists():
        raise UsageError(f"no database at {path} yet: run `lanscope discover` or `lanscope run` first "
                         "(or set sinks.host_state.path)")
    limits = config.sinks.host_state.query
    try:
        con = connect(path, read_only=True, memory_limit_mb=limits.memory_limit_mb, threads=limits.threads)
    except StoreError as exc:
        raise QueryError(f"{exc} — if the pipeline is running, it did not answer on lanscope.query "
                         "(is the host_state stage running?)") from None
    try:
        lagging = unapplied_batches(con) if warn_lagging else 0
        if lagging:
            warn(f"{lagging} batches in the host journal are not in hosts/host_ports yet (host_state "
                 "did not stop cleanly); they are applied when it runs again")
        return [run_query(con, sql, limits.max_rows, params, limits.timeout_ms / 1000)
                for sql, params in queries]
    except QueryRejected as exc:
        raise UsageError(str(exc)) from None
    except Exception as exc:
        raise QueryError(str(exc).splitlines()[0]) from None
    finally:
        con.close()
