"""``lanscope query``: from the DuckDB file when no pipeline runs, from the owner over NATS when one does."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from lanscope import cli
from lanscope.runtime.bus import Bus
from schemas.subjects import QUERY
from sinks.host_state import Config, HostState
from tests.factories import host_seen, port, ports_probed

MAC = "02:00:00:00:00:0a"


async def filled(tmp_path: Path) -> HostState:
    sink = HostState(Config(path=str(tmp_path / "var" / "lanscope.duckdb")))
    await sink.open()
    await sink.write([host_seen("198.18.0.10", MAC, t=0, id="a", hostname="web-1"),
                      ports_probed("198.18.0.10", MAC, [port(22, service="ssh")], t=1, id="b")])
    return sink


def config_file(tmp_path: Path, url: str = "") -> str:
    path = tmp_path / "config.yaml"
    path.write_text(f"data_dir: {tmp_path / 'var'}\nnats: {{url: '{url}'}}\n")
    return str(path)


async def test_query_reads_the_file_when_no_pipeline_runs(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    await (await filled(tmp_path)).close()
    code = cli.main(["-c", config_file(tmp_path), "query", "SELECT ip, mac, open_ports FROM hosts",
                     "--format", "json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["rows"] == [["198.18.0.10", MAC, ["tcp/22"]]]


@pytest.mark.parametrize("argv", [["query", "--json", "SELECT ip FROM hosts"],
                                  ["--json", "query", "SELECT ip FROM hosts"]])
async def test_query_json_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    """--json, like every command that prints a table (same as --format json)."""
    await (await filled(tmp_path)).close()
    assert cli.main(["-c", config_file(tmp_path), *argv]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == [["198.18.0.10"]]


async def test_after_an_unclean_stop_the_file_says_what_it_lacks(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    sink = await filled(tmp_path)
    con, sink.store._con = sink.store._con, None   # killed: no compaction at close
    assert con is not None
    con.close()
    code = cli.main(["-c", config_file(tmp_path), "query", "SELECT count(*) AS n FROM host_journal",
                     "--format", "json"])
    captured = capsys.readouterr()
    assert code == 0 and json.loads(captured.out)["rows"] == [[1]]
    assert "1 batches in the host journal are not in hosts/host_ports yet" in captured.err


@pytest.mark.parametrize(("fmt", "expected"), [
    ("csv", 'ip,open_ports\r\n198.18.0.10,"[""tcp/22""]"\r\n'),
    ("table", "198.18.0.10"),
])
async def test_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str, expected: str) -> None:
    await (await filled(tmp_path)).close()
    assert cli.main(["-c", config_file(tmp_path), "query", "SELECT ip, open_ports FROM hosts",
                     "--format", fmt]) == 0
    assert expected in capsys.readouterr().out


async def test_writes_are_refused_and_change_nothing(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    await (await filled(tmp_path)).close()
    assert cli.main(["-c", config_file(tmp_path), "query", "DELETE FROM hosts_by_mac"]) == 2
    assert "DELETE statements are not allowed" in capsys.readouterr().err
    con = duckdb.connect(str(tmp_path / "var" / "lanscope.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM hosts").fetchone() == (1,)
    con.close()


async def test_no_database_yet_says_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["-c", config_file(tmp_path), "query", "SELECT 1"]) == 2
    assert "no database at" in capsys.readouterr().err


async def test_a_held_file_without_an_answering_pipeline_is_a_clear_error(tmp_path: Path) -> None:
    sink = await filled(tmp_path)      # this process is the writer; the command runs in another
    try:
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "lanscope", "-c", config_file(tmp_path), "query",
                             "SELECT 1"], capture_output=True, text=True, timeout=60)
    finally:
        await sink.close()
    assert done.returncode == 1
    assert "Could not set lock" in done.stderr and "did not answer on lanscope.query" in done.stderr


@pytest.mark.nats
async def test_query_goes_to_the_running_owner_over_nats(tmp_path: Path, bus: Bus,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    sink = await filled(tmp_path)

    async def serve(msg: object) -> None:
        await bus.nc.publish(msg.reply, await sink.query(msg.data))  # type: ignore[attr-defined]

    sub = await bus.nc.subscribe(QUERY, cb=serve)
    try:
        code = await asyncio.to_thread(cli.main, ["-c", config_file(tmp_path, bus.config.url), "query",
                                                  "SELECT hostname FROM hosts", "--format", "json"])
        refused = await asyncio.to_thread(cli.main, ["-c", config_file(tmp_path, bus.config.url),
                                                     "query", "DROP TABLE history"])
    finally:
        await sub.unsubscribe()
        await sink.close()
    assert code == 0 and refused == 1
    out = capsys.readouterr()
    assert json.loads(out.out)["rows"] == [["web-1"]]
    assert "DROP statements are not allowed" in out.err


async def test_a_query_on_the_file_is_bounded_in_time_and_memory(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 20, case 5, the read-only file path: the same limits as the pipeline's."""
    await (await filled(tmp_path)).close()
    config = tmp_path / "bounded.yaml"
    config.write_text(f"data_dir: {tmp_path / 'var'}\n"
                      "sinks: {host_state: {query: {timeout_ms: 1000, memory_limit_mb: 128}}}\n")
    for sql, error in (("SELECT sum(i * i) FROM range(1000000000000) t(i)",
                        "the query ran longer than 1s and was stopped (sinks.host_state.query.timeout_ms)"),
                       ("SELECT count(*) FROM range(1000000000) t1, range(1000000000) t2",
                        "the query needs more memory than sinks.host_state.query.memory_limit_mb allows")):
        started = time.monotonic()
        code = cli.main(["-c", str(config), "query", "--file", sql])
        took = time.monotonic() - started
        assert code == 1 and took < 3.0, took
        assert error in capsys.readouterr().err
