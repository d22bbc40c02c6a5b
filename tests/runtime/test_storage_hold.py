"""A write that fails for want of space holds its messages until it succeeds (issue 20, case 3).

On a real nats-server: a sink whose writes fail with ENOSPC (as DuckDB, a state
file or a stream out of storage would) for several seconds — more than
max_deliver retries would last — keeps its batch unacknowledged and in
progress, says so once, fetches nothing new, and writes everything once the
"disk" has room again: nothing dead-lettered, nothing lost, each message
delivered once. An enricher does the same.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
from collections.abc import Collection

import pytest

from lanscope.errors import StorageUnavailable, storage_problem
from lanscope.runtime.bus import Bus
from lanscope.runtime.delivery import RunnerOptions
from lanscope.runtime.runner import Runner
from lanscope.runtime.topology import Kind
from schemas import Event
from schemas import subjects as subj
from tests.runtime.stages import EchoEnricher, MemorySink, eventually, seen, spec, subject_count

pytestmark = pytest.mark.nats


class Disk:
    """Full until ``free()``: every write fails as on a full disk."""

    def __init__(self) -> None:
        self.full = True
        self.failures = 0

    def write(self) -> None:
        if self.full:
            self.failures += 1
            raise OSError(errno.ENOSPC, "No space left on device", "/var/lib/lanscope/lanscope.duckdb.wal")


class FullDiskSink(MemorySink):
    def __init__(self, disk: Disk) -> None:
        super().__init__()
        self.disk = disk

    async def write(self, batch: list[Event], redelivered: Collection[str] | None = None) -> list[Event]:
        self.disk.write()
        return await super().write(batch, redelivered)


class FullDiskEnricher(EchoEnricher):
    def __init__(self, disk: Disk) -> None:
        super().__init__()
        self.disk = disk

    async def handle(self, event: Event) -> list[Event]:
        self.disk.write()
        return await super().handle(event)


def _runner(bus: Bus) -> Runner:
    # Retries would end in the DLQ after max_deliver (3) x backoff (<= 0.5 s) if they counted.
    return Runner(bus, dataclasses.replace(RunnerOptions.from_config(bus.config), fetch_timeout_secs=0.2))


@pytest.mark.parametrize("kind", [Kind.SINK, Kind.ENRICHER])
async def test_a_full_disk_holds_the_messages_and_loses_nothing_when_space_returns(
        bus: Bus, kind: Kind, caplog: pytest.LogCaptureFixture) -> None:
    stage_spec = spec(f"full_{kind.value}", kind, batch_size=8)
    await bus.provision([stage_spec])
    disk = Disk()
    stage = FullDiskSink(disk) if kind is Kind.SINK else FullDiskEnricher(disk)
    events = [seen(i) for i in range(20)]
    await bus.publish_events(events)
    runner = _runner(bus)
    runner.add(stage_spec, stage, flush_ms=50)
    task = asyncio.create_task(runner.run())
    try:
        with caplog.at_level(logging.INFO):
            await eventually(lambda: disk.failures >= 4, timeout=30, what="several failed writes")
            await asyncio.sleep(bus.config.ack_wait_secs + 1)     # longer than ack_wait: still held
            info = await bus.js.consumer_info(subj.FACTS.name, stage_spec.durable)
            assert info.num_redelivered == 0                     # in progress: never handed out again
            held = info.num_ack_pending
            assert disk.failures < 20                            # backoff, not a busy loop
            disk.full = False
            done = (lambda: len(stage.rows) == 20) if isinstance(stage, MemorySink) else \
                (lambda: len(set(stage.seen)) == 20)
            await eventually(done, timeout=30, what="every event written once space is back")
            await eventually(lambda: _settled(bus, stage_spec.durable), what="every message acked")
        assert await subject_count(bus, subj.DEAD_LETTERS.name, "lanscope.dlq.>") == 0
        lines = [r.getMessage() for r in caplog.records if r.name == "lanscope.runtime.stagerun"]
        said = [line for line in lines if line.startswith("cannot write (No space left on device")]
        assert len(said) == 1, lines                               # says so once
        assert sum(line.startswith("storage is back: resumed after") for line in lines) == 1
        print(f"\ncase 3 ({kind.value}): {disk.failures} failed writes over "
              f"{bus.config.ack_wait_secs + 1:.0f}+ s, {held} messages held, 0 dead-lettered, "
              f"20/20 written after space returned")
    finally:
        runner.stop()
        await asyncio.wait_for(task, 20)


async def _settled(bus: Bus, durable: str) -> bool:
    info = await bus.js.consumer_info(subj.FACTS.name, durable)
    return (info.num_pending or 0) + (info.num_ack_pending or 0) == 0


@pytest.mark.parametrize(("error", "problem"), [
    (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
    (OSError(errno.EROFS, "Read-only file system"), "Read-only file system"),
    (RuntimeError('TransactionContext Error: Failed to commit: Could not write file "x.wal": '
                  "No space left on device"), "Failed to commit"),
    (StorageUnavailable("the inventory file cannot be written"), "the inventory file"),
    (RuntimeError("nats: APIError: code=500 err_code=10047 description='insufficient storage "
                  "resources available'"), "insufficient storage"),
])
def test_what_counts_as_a_full_disk(error: Exception, problem: str) -> None:
    assert problem in (storage_problem(error) or "")


def test_other_errors_are_not_a_full_disk() -> None:
    assert storage_problem(ValueError("ip: not an address")) is None
    assert storage_problem(OSError(errno.ECONNREFUSED, "Connection refused")) is None
