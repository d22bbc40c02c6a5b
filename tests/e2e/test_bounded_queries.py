"""Issue 20, case 5: queries are bounded in time, memory and rows; SIGTERM always stops.

`lanscope run --stage host_state` (embedded, closed NATS), asked over
``lanscope.query`` with the query role's credentials. The issue's query (a
cross product of two billion-row ranges) gets a clear error within the
timeout, the process's memory stays within the configured limit and returns
afterwards, and meanwhile sightings are written and other queries answered. A
query that only burns CPU is interrupted at the timeout. SIGTERM during a long
query stops the process within the shutdown grace.

Before: the same request grew `lanscope run` from 147 MB to 7.8 GB in ~15 s,
later queries went unanswered, and SIGTERM did not stop it within 6 s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from lanscope.runtime.auth import QUERY
from lanscope.runtime.bus import Bus
from schemas import subjects as subj
from tests.e2e.running import Running
from tests.factories import host_seen
from tests.runtime.stages import eventually

pytestmark = [pytest.mark.slow]
CROSS = "SELECT count(*) FROM range(1000000000) t1, range(1000000000) t2"   # the query
CPU = "SELECT sum(i * i) FROM range(1000000000000) t(i)"                   # time, no memory
MEMORY_MB = 256
GRACE_SECS = 3


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def start(tmp_path: Path, timeout_ms: int) -> Running:
    config = tmp_path / "config.yaml"
    config.write_text(f"""
data_dir: {tmp_path / "var"}
nats: {{shutdown_grace_secs: {GRACE_SECS}}}
sinks:
  host_state:
    flush_ms: 50
    query: {{timeout_ms: {timeout_ms}, memory_limit_mb: {MEMORY_MB}, threads: 2, concurrency: 2}}
""")
    running = Running(config, tmp_path / "var", ("host_state",), tmp_path / "run.log").start()
    running.wait_serving(says="answering queries")
    return running


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Running]:
    running = start(tmp_path, timeout_ms=3000)
    try:
        yield running
    finally:
        running.stop()


async def ask(bus: Bus, sql: str, timeout: float = 10.0) -> tuple[dict[str, object], float]:
    started = time.monotonic()
    reply = await bus.nc.request(subj.QUERY, msgspec.json.encode({"sql": sql}), timeout=timeout)
    return msgspec.json.decode(reply.data), time.monotonic() - started


async def test_an_expensive_query_is_stopped_in_time_and_memory_while_the_rest_carries_on(
        pipeline: Running) -> None:
    assert pipeline.process is not None
    pid = pipeline.process.pid
    query, producer = await pipeline.connect(QUERY), await pipeline.connect("arp_sweep")
    try:
        await ask(query, "SELECT count(*) FROM hosts")
        baseline = rss_mb(pid)
        peak = [baseline]
        done = asyncio.Event()

        async def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_mb(pid))
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        expensive = asyncio.create_task(ask(query, CROSS))
        await asyncio.sleep(0.2)
        # Meanwhile: sightings are written, and another query is answered at once.
        await producer.publish_events([host_seen(f"198.18.0.{i}", f"02:00:00:00:00:{i:02x}")
                                       for i in range(1, 11)])
        other, other_secs = await ask(query, "SELECT 42 AS answer")
        answer, secs = await expensive
        cpu, cpu_secs = await ask(query, CPU)
        done.set()
        await sampler
        stored, _ = await ask(query, "SELECT count(*) FROM hosts")

        async def returned() -> bool:
            return rss_mb(pid) < baseline + 64
        await eventually(returned, timeout=10, what="memory back near the baseline", interval=0.2)
        after = rss_mb(pid)
        print(f"\ncase 5: the issue's query: {answer['error']!r} after {secs:.2f}s; a CPU-only query: "
              f"{cpu['error']!r} after {cpu_secs:.2f}s; another query answered in {other_secs:.2f}s "
              f"meanwhile; RSS {baseline:.0f} MB -> peak {peak[0]:.0f} MB (limit {MEMORY_MB} MB) -> "
              f"{after:.0f} MB after; sightings stored meanwhile: {stored['rows']}")
        assert "memory_limit_mb" in str(answer["error"]) and secs < 3.5
        assert str(cpu["error"]).startswith("the query ran longer than 3s and was stopped")
        assert 2.5 < cpu_secs < 5.0
        assert other == {"columns": ["answer"], "rows": [[42]], "truncated": False} and other_secs < 1.5
        assert peak[0] < baseline + MEMORY_MB + 128
        await eventually(lambda: _rows(query, 10), what="10 sightings stored")
    finally:
        await query.close()
        await producer.close()


async def _rows(query: Bus, wanted: int) -> bool:
    reply, _ = await ask(query, "SELECT count(*) FROM hosts")
    return reply.get("rows") == [[wanted]]


async def test_sigterm_during_a_long_query_stops_within_the_shutdown_grace(tmp_path: Path) -> None:
    running = start(tmp_path, timeout_ms=120_000)          # the query would run for two minutes
    try:
        query = await running.connect(QUERY)
        long = asyncio.create_task(ask(query, CPU, timeout=130))
        await asyncio.sleep(1.0)
        assert not long.done()
        started = time.monotonic()
        code = await asyncio.to_thread(running.terminate, GRACE_SECS + 10)
        took = time.monotonic() - started
        print(f"\ncase 5: SIGTERM during a query: exit code {code} after {took:.2f}s "
              f"(shutdown grace {GRACE_SECS}s)")
        assert code == 0 and took < GRACE_SECS + 2
        long.cancel()
        await asyncio.gather(long, return_exceptions=True)
        await query.close()
    finally:
        running.stop()
