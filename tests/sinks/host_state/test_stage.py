"""The host_state sink on a real DuckDB file: one transaction per batch, redelivery, queries."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from ipaddress import ip_address
from pathlib import Path

import duckdb
import msgspec
import pytest

from schemas import ChangeKind, Finding, FindingState, HostChanged, RegistryEntry, Severity
from sinks.host_state import Config, HostState
from sinks.host_state._rows import ip_ints
from sinks.host_state._schema import CHECKPOINT_THRESHOLD, MIGRATIONS, SCHEMA_VERSION, connect
from sinks.host_state.stage import QueryConfig
from tests.factories import at, host_seen, port, ports_probed

MAC_A = "02:00:00:00:00:0a"


def clock() -> datetime:
    return datetime(2026, 1, 2, tzinfo=UTC)


async def opened(tmp_path: Path, **overrides: object) -> HostState:
    sink = HostState(Config(path=str(tmp_path / "lanscope.duckdb"), **overrides), clock=clock)
    await sink.open()
    return sink


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def finding(fid: str, state: FindingState, t: float, **fields: object) -> Finding:
    return Finding(host_key=MAC_A, observed_at=at(t), source="findings", finding_id=fid, state=state,
                   rule="telnet", severity=Severity.HIGH, category="exposure", title="Telnet open",
                   first_seen=at(0), last_seen=at(t), id=f"f-{fid}-{t}", **fields)


async def test_a_batch_is_written_and_survives_a_restart(tmp_path: Path) -> None:
    sink = await opened(tmp_path)
    out = await sink.write([
        host_seen("198.18.0.10", MAC_A, t=0, id="e1"),
        ports_probed("198.18.0.10", MAC_A, [port(22, service="ssh", banner="SSH-2.0-OpenSSH_9.2p1"),
                                            port(80, "closed")], t=1, id="e2"),
        host_seen("198.19.0.5", None, source="icmp", t=2, id="e3"),
    ])
    assert sorted((e.host_key, e.kind) for e in out if isinstance(e, HostChanged)) == [
        (MAC_A, ChangeKind.NEW), ("198.19.0.5", ChangeKind.NEW)]
    await sink.close()
    db = tmp_path / "lanscope.duckdb"
    assert rows(db, "SELECT mac, ip, ipv4, open_ports, active FROM hosts_by_mac") == [
        (MAC_A, "198.18.0.10", 3323068426, ["tcp/22"], True)]
    assert rows(db, "SELECT host_key, ip, ipv4 FROM hosts_by_ip") == [
        ("198.19.0.5", "198.19.0.5", int(ip_address("198.19.0.5")))]
    assert rows(db, "SELECT port, state, banner FROM host_ports ORDER BY port") == [
        (22, "open", "SSH-2.0-OpenSSH_9.2p1"), (80, "closed", None)]
    assert rows(db, "SELECT port, service FROM services") == [(22, "ssh")]
    assert rows(db, "SELECT max(version) FROM schema_version") == [(SCHEMA_VERSION,)]

    again = await opened(tmp_path)
    assert set(again.book.hosts) == {MAC_A, "198.19.0.5"}
    assert again.book.hosts[MAC_A].ports["tcp/22"].first_seen == at(1)
    changed = await again.write([ports_probed("198.18.0.10", MAC_A, [port(22, "closed")], t=100, id="e4")])
    assert [c.field for c in changed[0].changes] == ["open_ports", "services"]
    await again.close()
    assert rows(db, "SELECT field, old, new FROM history WHERE field = 'open_ports'") == [
        ("open_ports", "[]", '["tcp/22"]'), ("open_ports", '["tcp/22"]', "[]")]


async def test_redelivered_inputs_return_the_same_events_and_write_nothing_twice(tmp_path: Path) -> None:
    sink = await opened(tmp_path)
    batch = [host_seen("198.18.0.10", MAC_A, t=0, id="e1"),
             host_seen("198.18.0.11", "02:00:00:00:00:0b", t=0, id="e2")]
    first = await sink.write(batch)
    await sink.close()
    sink = await opened(tmp_path)   # as after a crash between commit and ack
    second = await sink.write([*batch, host_seen("198.18.0.12", "02:00:00:00:00:0c", t=1, id="e3")])
    await sink.close()
    assert {e.id for e in first} <= {e.id for e in second}
    assert [e for e in second if e.id in {x.id for x in first}] == first
    db = tmp_path / "lanscope.duckdb"
    assert rows(db, "SELECT count(*) FROM hosts") == [(3,)]
    assert rows(db, "SELECT count(*) FROM history WHERE field = 'ip'") == [(3,)]
    assert rows(db, "SELECT count(*) FROM processed_events") == [(3,)]


async def test_findings_and_registry_rows_dedupe_newest_wins(tmp_path: Path) -> None:
    sink = await opened(tmp_path)
    await sink.write([finding("x", FindingState.RESOLVED, 20), finding("x", FindingState.OPENED, 10),
                      finding("y", FindingState.OPENED, 5)])
    await sink.write([finding("x", FindingState.OPENED, 15)])     # older than the stored one
    entry = RegistryEntry(host_key=MAC_A, observed_at=at(3), source="registry", entry_id="r1",
                          action="created", ip="198.18.0.10", owner="ops", id="r-1")
    await sink.write([entry])
    await sink.close()
    db = tmp_path / "lanscope.duckdb"
    assert rows(db, "SELECT finding_id, state FROM findings ORDER BY 1") == [
        ("x", "resolved"), ("y", "opened")]
    assert rows(db, "SELECT entry_id, owner, ipv4 FROM registry") == [("r1", "ops", 3323068426)]


async def test_merge_moves_history_to_the_mac_key(tmp_path: Path) -> None:
    sink = await opened(tmp_path)
    await sink.write([host_seen("198.18.0.10", None, source="icmp", t=0, id="a")])
    await sink.write([host_seen("198.18.0.10", MAC_A, t=10, id="b")])
    await sink.close()
    db = tmp_path / "lanscope.duckdb"
    assert rows(db, "SELECT count(*) FROM hosts_by_ip") == [(0,)]
    assert rows(db, "SELECT DISTINCT host_key FROM history") == [(MAC_A,)]


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "lanscope.duckdb"))
    con.execute("CREATE TABLE schema_version (version INTEGER, applied_at TIMESTAMPTZ)")
    con.execute("INSERT INTO schema_version VALUES (?, now())", [len(MIGRATIONS) + 1])
    con.close()
    with pytest.raises(Exception, match="newer than this lanscope knows"):
        await opened(tmp_path)


@pytest.mark.parametrize("sql", [
    "SELECT host_key FROM hosts",
    "WITH h AS (SELECT * FROM hosts) SELECT count(*) FROM h",
    "DESCRIBE hosts", "SHOW TABLES", "SUMMARIZE history", "EXPLAIN SELECT 1", "FROM hosts",
    "PRAGMA table_info('hosts')",
])
async def test_read_queries_are_answered(tmp_path: Path, sql: str) -> None:
    sink = await opened(tmp_path)
    await sink.write([host_seen(mac=MAC_A, id="e1")])
    reply = json.loads(await sink.query(json.dumps({"sql": sql}).encode()))
    await sink.close()
    assert "error" not in reply and reply["columns"]


@pytest.mark.parametrize(("sql", "message"), [
    ("DELETE FROM hosts_by_mac", "DELETE statements are not allowed"),
    ("INSERT INTO history VALUES (1)", "INSERT statements are not allowed"),
    ("DROP TABLE hosts_by_mac", "DROP statements are not allowed"),
    ("SELECT 1; DELETE FROM hosts_by_mac", "exactly one statement"),
    ("COPY hosts_by_mac TO '/tmp/x.csv'", "COPY statements are not allowed"),
    ("ATTACH '/tmp/other.duckdb'", "ATTACH statements are not allowed"),
    ("SET threads = 1", "SET statements are not allowed"),
    ("PRAGMA enable_profiling", "PRAGMA statements are not allowed"),
    ("CALL pragma_version()", "CALL statements are not allowed"),
    ("SELECT * FROM read_text('/etc/hostname')", "file system operations are disabled"),
    ("SELEC 1", "Parser Error"),
])
async def test_anything_but_a_read_is_refused(tmp_path: Path, sql: str, message: str) -> None:
    sink = await opened(tmp_path)
    await sink.write([host_seen(mac=MAC_A, id="e1")])
    reply = json.loads(await sink.query(json.dumps({"sql": sql}).encode()))
    await sink.close()
    assert message in reply["error"]
    assert rows(tmp_path / "lanscope.duckdb", "SELECT count(*) FROM hosts_by_mac") == [(1,)]


async def test_a_malformed_request_is_an_error_reply(tmp_path: Path) -> None:
    sink = await opened(tmp_path)
    reply = json.loads(await sink.query(b'{"sq": 1}'))
    await sink.close()
    assert reply["error"].startswith("bad query request")


async def test_rows_are_capped(tmp_path: Path) -> None:
    sink = await opened(tmp_path, query=QueryConfig(max_rows=5))
    reply = json.loads(await sink.query(b'{"sql": "SELECT * FROM range(10)"}'))
    await sink.close()
    assert len(reply["rows"]) == 5 and reply["truncated"] is True


async def test_queries_are_answered_while_a_batch_is_being_written(tmp_path: Path) -> None:
    """A query used to call extract_statements on the main connection, which DuckDB refuses
    ("connection is busy") while the writer thread has an appender open on it."""
    import asyncio

    sink = await opened(tmp_path)
    batches = [[host_seen(f"198.18.{b}.{i % 250 + 1}", f"02:00:00:{b:02x}:{i // 256:02x}:{i % 256:02x}",
                          t=b, id=f"q{b}-{i}") for i in range(2000)] for b in range(6)]

    async def writes() -> None:
        for batch in batches:
            await sink.write(batch)

    async def queries() -> list[dict[str, object]]:
        replies = []
        while not writer.done():
            replies.append(json.loads(await sink.query(b'{"sql": "SELECT count(*) FROM hosts"}')))
        return replies

    writer = asyncio.ensure_future(writes())
    replies = await queries()
    await writer
    await sink.close()
    assert replies and not [r for r in replies if "error" in r]


def crash(sink: HostState) -> None:
    """What a SIGKILL leaves: the committed transactions, no compaction at close (one
    running in the background is let finish or fail first: its transaction is atomic)."""
    if sink.store._compacting is not None:
        sink.store._compacting[1].exception()
    con, sink.store._con = sink.store._con, None
    assert con is not None
    con.close()


@pytest.mark.parametrize("compact_secs", [3600.0, 0.0], ids=["rarely", "in-background-each-batch"])
@pytest.mark.parametrize("restart", ["close", "crash"])
async def test_rows_written_batch_by_batch_equal_rows_written_at_once(
        tmp_path: Path, restart: str, compact_secs: float) -> None:
    """Rows whose only change is a clock (last_seen, evidence, state) are updated in place,
    not rewritten, and the host tables catch up with the journal only now and then (after
    a crash: by folding the journal again at open), or in the background while the next
    batches commit: the file must end up as if every row had been rewritten for every batch."""
    mac_b = "02:00:00:00:00:0b"
    events = [
        [host_seen("198.18.0.10", MAC_A, t=0, id="a1"), host_seen("198.19.0.5", None, t=0, id="a2"),
         ports_probed("198.18.0.10", MAC_A, [port(22, service="ssh"), port(80)], t=1, id="a3"),
         host_seen("198.18.0.20", None, source="icmp", t=1, id="a4")],
        [host_seen("198.18.0.10", MAC_A, t=10, id="b1", rtt_ms=0.4, ttl=64),
         host_seen("198.19.0.5", None, t=10, id="b2"),
         ports_probed("198.18.0.10", MAC_A, [port(22, service="ssh"), port(80)], t=11, id="b3")],
        [ports_probed("198.18.0.10", MAC_A, [port(22, service="ssh", banner="SSH-2.0-x")], t=20,
                      id="c1"),
         host_seen("198.19.0.5", None, source="icmp", t=21, id="c2"),
         host_seen("198.18.0.20", mac_b, t=22, id="c3")],               # merges the IP record
        [host_seen("198.18.0.20", mac_b, t=30, id="d1", rtt_ms=0.7),
         ports_probed("198.18.0.10", MAC_A, [port(22, service="ssh", banner="SSH-2.0-x")], t=31,
                      id="d2")],
    ]
    stepwise, at_once = tmp_path / "steps", tmp_path / "once"
    sink = await opened(stepwise, compact_secs=compact_secs)
    for i, batch in enumerate(events):
        await sink.write(batch)
        if i == 1:                       # a restart in between: what is remembered is reloaded
            before = {k: msgspec.json.encode(e) for k, e in sink.book.hosts.items()}
            if restart == "close":
                await sink.close()
            else:
                crash(sink)
            sink = await opened(stepwise, compact_secs=compact_secs)
            assert {k: msgspec.json.encode(e) for k, e in sink.book.hosts.items()} == before
    await sink.close()
    sink = await opened(at_once)
    await sink.write([e for batch in events for e in batch])
    await sink.close()

    def table(path: Path, sql: str) -> list[tuple[object, ...]]:
        return rows(path / "lanscope.duckdb", sql)

    for sql in ("SELECT * EXCLUDE (state) FROM hosts_by_mac ORDER BY mac",
                "SELECT * EXCLUDE (state) FROM hosts_by_ip ORDER BY host_key",
                "SELECT * FROM host_ports ORDER BY host_key, protocol, port"):
        assert table(stepwise, sql) == table(at_once, sql), sql
    assert table(stepwise, "SELECT last_seen FROM hosts_by_mac WHERE mac = '02:00:00:00:00:0a'") == [
        (at(31),)]
    assert table(stepwise, "SELECT mac, rtt_ms, ttl FROM hosts_by_mac ORDER BY mac") == [
        (MAC_A, 0.4, 64), (mac_b, 0.7, None)]      # observations, updated in place
    assert table(stepwise, "SELECT port, last_seen FROM host_ports WHERE host_key = "
                           "'02:00:00:00:00:0a' ORDER BY port") == [(22, at(31)), (80, at(20))]
    again = await opened(stepwise)
    reference = await opened(at_once)
    assert again.book.hosts == reference.book.hosts
    await again.close()
    await reference.close()


async def test_a_query_sees_every_committed_batch(tmp_path: Path) -> None:
    """Host tables lag behind the journal until a compaction; a query compacts first."""
    sink = await opened(tmp_path, compact_secs=3600.0)
    await sink.write([host_seen("198.18.0.10", MAC_A, t=0, id="e1")])
    await sink.write([host_seen("198.18.0.11", MAC_A, t=10, id="e2"),
                      host_seen("198.19.0.5", None, source="icmp", t=10, id="e3")])
    sql = "SELECT host_key, ip, last_seen, (SELECT count(*) FROM host_journal) FROM hosts ORDER BY 1"
    reply = json.loads(await sink.query(json.dumps({"sql": sql}).encode()))
    crash(sink)
    assert reply["rows"] == [[MAC_A, "198.18.0.11", at(10).isoformat(), 0],
                             ["198.19.0.5", "198.19.0.5", at(10).isoformat(), 0]]


async def test_only_redelivered_inputs_are_looked_up(tmp_path: Path) -> None:
    sink = await opened(tmp_path)
    first = await sink.write([host_seen("198.18.0.10", MAC_A, t=0, id="e1")], redelivered=set())
    # Redelivered (committed before): the stored outputs again, nothing folded twice.
    again = await sink.write([host_seen("198.18.0.10", MAC_A, t=0, id="e1")], redelivered={"e1"})
    assert again == first
    # Not named as redelivered: folded again, which is harmless (nothing changes).
    assert await sink.write([host_seen("198.18.0.10", MAC_A, t=0, id="e1")], redelivered=set()) == []
    await sink.close()
    assert rows(tmp_path / "lanscope.duckdb", "SELECT count(*) FROM history WHERE field = 'ip'") == [(1,)]


async def test_a_version_1_file_is_migrated_with_its_processed_ids(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "lanscope.duckdb"))
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL)")
    con.execute(MIGRATIONS[0])
    con.execute("INSERT INTO schema_version VALUES (1, now())")
    con.execute("INSERT INTO processed_events VALUES ('old1', ?), ('old2', ?)", [at(0), at(0)])
    con.close()
    sink = await opened(tmp_path)
    assert set(await sink.store.processed(["old1", "old2", "new"])) == {"old1", "old2"}
    await sink.write([host_seen("198.18.0.10", MAC_A, t=1, rtt_ms=0.5, ttl=64)])
    await sink.close()
    db = tmp_path / "lanscope.duckdb"
    assert rows(db, "SELECT max(version) FROM schema_version") == [(SCHEMA_VERSION,)] == [(5,)]
    # The columns version 5 added, in the `hosts` view too.
    assert rows(db, "SELECT flapping, rtt_ms, ttl FROM hosts") == [(False, 0.5, 64)]


async def test_a_version_2_file_keeps_its_hosts_and_gets_the_device_type_columns(tmp_path: Path) -> None:
    sink = await opened(tmp_path)
    await sink.write([host_seen("198.18.0.10", MAC_A, t=0, id="v2")])
    await sink.close()
    # Back to version 2's tables, as a file written before issue 23 has them (and before sites).
    con = duckdb.connect(str(tmp_path / "lanscope.duckdb"))
    con.execute("DROP VIEW hosts")
    con.execute("DROP VIEW services")
    for table in ("hosts_by_mac", "hosts_by_ip"):
        for column in ("device_type", "flapping", "rtt_ms", "ttl"):
            con.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    for table in ("hosts_by_mac", "hosts_by_ip", "host_ports", "history", "findings", "registry"):
        con.execute(f"ALTER TABLE {table} DROP COLUMN site")
    con.execute("CREATE VIEW hosts AS SELECT * FROM hosts_by_mac UNION ALL BY NAME SELECT * FROM hosts_by_ip")
    con.execute("CREATE VIEW services AS SELECT host_key, ip, protocol, port, service FROM host_ports")
    con.execute("DELETE FROM schema_version WHERE version >= 3")
    # ... and its state: a record without the fields version 3 added.
    [(state,)] = con.execute("SELECT state FROM hosts_by_mac").fetchall()
    old_state = json.loads(state)
    for name in ("device_type", "device_type_confidence", "device_type_reasons", "names", "advertised"):
        old_state["record"].pop(name, None)
    con.execute("UPDATE hosts_by_mac SET state = ?", [json.dumps(old_state)])
    con.close()
    sink = await opened(tmp_path)
    assert MAC_A in sink.book.hosts
    await sink.write([host_seen("198.18.0.10", MAC_A, t=5, id="v3")])
    await sink.close()
    assert rows(tmp_path / "lanscope.duckdb", "SELECT host_key, ip, device_type FROM hosts") == [
        (MAC_A, "198.18.0.10", "unknown")]


async def test_a_failed_background_compaction_is_retried_and_loses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sink = await opened(tmp_path, compact_secs=0.0)
    real = sink.store._apply_compaction
    attempts: list[int] = []

    def flaky(job: object) -> None:
        attempts.append(len(job.entries))  # type: ignore[attr-defined]
        if len(attempts) == 1:
            raise duckdb.TransactionException("conflict (injected)")
        real(job)  # type: ignore[arg-type]

    monkeypatch.setattr(sink.store, "_apply_compaction", flaky)
    await sink.write([host_seen("198.18.0.10", MAC_A, t=0, id="e1"),
                      host_seen("198.19.0.5", None, source="icmp", t=0, id="e2")])
    assert sink.store._compacting is not None
    sink.store._compacting[1].exception()         # the first attempt fails in the background
    await sink.write([host_seen("198.18.0.10", MAC_A, t=5, id="e3")])   # put back, tried again
    sink.store._compacting[1].exception()
    db = tmp_path / "lanscope.duckdb"
    crash(sink)
    assert attempts == [2, 2]
    assert rows(db, "SELECT host_key, last_seen FROM hosts ORDER BY 1") == [
        (MAC_A, at(5)), ("198.19.0.5", at(0))]
    assert rows(db, "SELECT count(*) FROM host_journal") == [(0,)]


@pytest.mark.parametrize("ip", ["198.18.0.1", "0.0.0.0", "255.255.255.255", "fe80::1", "fe80::1%eth0",
                                "::ffff:198.18.0.1", "2001:db8::1", "1.2.3", "01.2.3.4", "x", ""])
def test_ip_integer_columns_agree_with_ipaddress(ip: str) -> None:
    try:
        addr = ip_address(ip)
    except ValueError:
        assert ip_ints(ip) == (None, None)
        return
    assert ip_ints(ip) == ((int(addr), None) if addr.version == 4 else (None, int(addr)))


async def test_the_writer_checkpoints_rarely_and_readers_keep_duckdbs_default(tmp_path: Path) -> None:
    def threshold(con: duckdb.DuckDBPyConnection) -> object:
        row = con.execute("SELECT current_setting('checkpoint_threshold')").fetchone()
        return row[0] if row else None

    # As DuckDB spells the values it was given (its own formatting, e.g. "244.1 MiB").
    raised = threshold(duckdb.connect(config={"checkpoint_threshold": CHECKPOINT_THRESHOLD}))
    default = threshold(duckdb.connect())
    assert raised != default
    sink = await opened(tmp_path)
    try:
        assert threshold(sink.store.con) == raised
    finally:
        await sink.close()
    reader = connect(tmp_path / "lanscope.duckdb", read_only=True)
    try:
        assert threshold(reader) == default
    finally:
        reader.close()


async def test_queries_beyond_the_concurrency_wait_then_are_refused_as_busy_and_close_stops_them(
        tmp_path: Path) -> None:
    import asyncio
    import time

    sink = await opened(tmp_path, query=QueryConfig(concurrency=1, waiting=1, timeout_ms=60_000))
    slow = asyncio.ensure_future(sink.query(b'{"sql": "SELECT sum(i * i) FROM range(1000000000000) t(i)"}'))
    await asyncio.sleep(0.3)
    waiting = asyncio.ensure_future(sink.query(b'{"sql": "SELECT 1"}'))   # its turn comes after slow
    await asyncio.sleep(0.1)
    assert not waiting.done()
    busy = json.loads(await sink.query(b'{"sql": "SELECT 2"}'))
    assert busy["error"].startswith("busy: 2 queries are running or waiting "
                                    "(sinks.host_state.query.concurrency, .waiting)")
    started = time.monotonic()
    await sink.close()                              # interrupts the running query: no waiting for it
    assert time.monotonic() - started < 2.0
    assert json.loads(await slow)["error"] == "the query was stopped: lanscope is stopping"
    assert "error" in json.loads(await asyncio.wait_for(waiting, 5))   # the store closed under it
