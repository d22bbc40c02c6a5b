"""Crashes and restarts: a stage SIGKILLed mid-batch, SIGTERM, a NATS restart under load.

The stage runs as a real subprocess (tests/runtime/stage_proc.py) with a
sqlite sink keyed by event id; "nothing lost, nothing doubled" means: every
published event has exactly one row, and the sink's outputs are in the stream
exactly once (the Nats-Msg-Id of a re-written batch is the same, so JetStream
drops the second copy).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lanscope.runtime.bus import Bus
from lanscope.runtime.embedded import EmbeddedNats
from lanscope.runtime.runner import Runner
from lanscope.runtime.topology import Kind
from schemas import subjects as subj
from tests.runtime.stages import SqliteSink, count_rows, eventually, seen, spec, subject_count
from tests.runtime.test_runner import options

FACTS = subj.FACTS.name
ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.nats]


class StageProcess:
    def __init__(self, url: str, db: Path, name: str, *extra: str) -> None:
        self.argv = [sys.executable, "-m", "tests.runtime.stage_proc", url, str(db), name, *extra]
        self.log = db.with_suffix(f".{name}.log")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self.argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float = 20) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def procs() -> Iterator[list[StageProcess]]:
    started: list[StageProcess] = []
    yield started
    for proc in started:
        proc.stop()


async def publish_many(bus: Bus, count: int, *, ids: list[str] | None = None,
                       pause_secs: float = 0.0) -> list[str]:
    ids = [] if ids is None else ids
    for i in range(count):
        event = seen(i)
        await bus.publish(event)
        ids.append(event.id)
        if pause_secs:
            await asyncio.sleep(pause_secs)   # pacing the load, not waiting for anything
    return ids


async def test_sigkill_mid_batch_then_restart_loses_and_doubles_nothing(
        bus: Bus, tmp_path: Path, procs: list[StageProcess]) -> None:
    total = 300
    db = tmp_path / "sink.sqlite"
    await publish_many(bus, total)
    # Slow batches (50 ms each) so the kill lands mid-stream; short ack_wait so the
    # batch the killed process held comes back quickly.
    proc = StageProcess(bus.config.url, db, "crashy", "--batch", "10", "--delay", "0.05", "--ack-wait", "2")
    procs.append(proc)
    proc.start()
    await eventually(lambda: count_rows(db) >= 60, timeout=30, what="the first batches")
    proc.signal(signal.SIGKILL)
    proc.wait()
    assert count_rows(db) < total
    again = StageProcess(bus.config.url, db, "crashy", "--batch", "10", "--ack-wait", "2")
    procs.append(again)
    again.start()
    await eventually(lambda: count_rows(db) == total, timeout=60, what=f"{total} rows")

    async def settled() -> bool:
        info = await bus.js.consumer_info(FACTS, "crashy")
        return info.num_pending == 0 and info.num_ack_pending == 0
    await eventually(settled, timeout=30, what="every message acked")
    again.signal(signal.SIGTERM)
    assert again.wait() == 0
    assert count_rows(db) == total
    assert count_rows(db, "deliveries") >= total
    assert await subject_count(bus, FACTS, "lanscope.host.annotated.>") == total


async def test_sigterm_finishes_or_hands_back_in_flight_work(
        bus: Bus, tmp_path: Path, procs: list[StageProcess]) -> None:
    total = 200
    db = tmp_path / "sink.sqlite"
    await publish_many(bus, total)
    # ack_wait 60 s: if the stopping process held anything back without a nak, the
    # restarted one could not finish within the deadline below.
    first = StageProcess(bus.config.url, db, "polite", "--batch", "10", "--delay", "0.05", "--ack-wait", "60")
    procs.append(first)
    first.start()
    await eventually(lambda: count_rows(db) >= 30, timeout=30, what="the first batches")
    first.signal(signal.SIGTERM)
    assert first.wait() == 0
    assert "final counters" in first.log.read_text()
    written = count_rows(db)
    assert written < total
    second = StageProcess(bus.config.url, db, "polite", "--batch", "10", "--ack-wait", "60")
    procs.append(second)
    second.start()
    await eventually(lambda: count_rows(db) == total, timeout=20, what=f"{total} rows well before ack_wait")
    second.signal(signal.SIGTERM)
    assert second.wait() == 0
    assert count_rows(db, "deliveries") == total     # graceful: nothing was written twice
    assert await subject_count(bus, FACTS, "lanscope.host.annotated.>") == total


async def test_nats_restart_under_load_delivers_every_event_once(
        bus: Bus, natsd: EmbeddedNats, tmp_path: Path) -> None:
    total = 400
    db = tmp_path / "sink.sqlite"
    stage = spec("through_restart", Kind.SINK, batch_size=20, ack_wait_secs=5)
    await bus.provision([stage])
    stage_bus = await Bus.connect(bus.config, name="restart-stage")
    runner = Runner(stage_bus, options(bus.config))
    runner.add(stage, SqliteSink(db), flush_ms=20)
    running = asyncio.create_task(runner.run())
    published: list[str] = []
    publisher = asyncio.create_task(publish_many(bus, total, ids=published, pause_secs=0.005))
    try:
        await eventually(lambda: count_rows(db) >= 50, timeout=30, what="the sink to start")
        # Kill the server while the publisher is mid-way, keep it down until both clients
        # noticed, then start it again on the same port and store.
        assert len(published) < total / 2
        natsd.kill()
        await eventually(lambda: bus.nc.is_reconnecting and stage_bus.nc.is_reconnecting,
                         timeout=30, what="both clients to notice the outage")
        natsd.start()
        ids = await asyncio.wait_for(publisher, 90)
        assert len(set(ids)) == total
        await eventually(lambda: count_rows(db) == total, timeout=60, what=f"{total} rows")
        assert await subject_count(bus, FACTS, "lanscope.host.seen.>") == total

        async def outputs() -> bool:  # the last batch's outputs follow its commit
            return await subject_count(bus, FACTS, "lanscope.host.annotated.>") >= total
        await eventually(outputs, timeout=30, what="the sink's outputs")
        assert await subject_count(bus, FACTS, "lanscope.host.annotated.>") == total
    finally:
        publisher.cancel()
        runner.stop()
        await asyncio.wait_for(running, 30)
        await stage_bus.close()
        if not natsd.running:
            natsd.start()
    assert count_rows(db) == total

