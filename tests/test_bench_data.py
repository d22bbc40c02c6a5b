"""The benchmarks' generated data stays writable into the current store schema.

bench.webdata bulk-inserts history rows; when schema 4 added history.site its
INSERT broke and nothing noticed until the benchmark was run again.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from bench.webdata import build


async def test_the_web_benchmark_store_builds(tmp_path: Path) -> None:
    path = tmp_path / "web.duckdb"
    await build(path, hosts=40, days=3, changes_per_day=2.0)
    con = duckdb.connect(str(path), read_only=True)
    try:
        hosts, = con.execute("SELECT count(*) FROM hosts").fetchone() or (0,)
        rows, = con.execute("SELECT count(*) FROM history WHERE event_id LIKE 'bench-%'").fetchone() or (0,)
    finally:
        con.close()
    assert hosts == 40 and rows == 40 * 3 * 2
