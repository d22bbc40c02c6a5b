"""The local composer runs stages exactly as the bus would, ids included."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lanscope.runtime.bus import Bus
from lanscope.runtime.local import LocalPipeline
from lanscope.runtime.runner import Runner
from lanscope.runtime.topology import Kind
from schemas import HostAnnotated, HostSeen
from schemas import subjects as subj
from tests.runtime.stages import EchoEnricher, MemorySink, eventually, seen, spec
from tests.runtime.test_runner import options

pytestmark = pytest.mark.nats

ENRICH = spec("local_echo", Kind.ENRICHER, concurrency=2)
STORE = spec("local_store", Kind.SINK, consumes=(subj.HOST_SEEN, subj.HOST_ANNOTATED), batch_size=3)


async def test_local_pipeline_feeds_enricher_outputs_to_sinks() -> None:
    sink = MemorySink(emit=False)
    produced = [seen(i) for i in range(5)]
    async with LocalPipeline([(ENRICH, EchoEnricher()), (STORE, sink)]) as pipeline:
        events = await pipeline.run(produced)
    assert sink.opened and sink.closed
    assert sum(isinstance(e, HostSeen) for e in events) == 5
    assert sum(isinstance(e, HostAnnotated) for e in events) == 5
    assert len(sink.rows) == 10 and all(len(batch) <= 3 for batch in sink.batches)
    assert all(e.id for e in events)


async def test_local_pipeline_reports_an_enricher_failure_and_goes_on() -> None:
    failing = EchoEnricher(fail=lambda e: e.host_key.endswith("01"))
    sink = MemorySink()
    async with LocalPipeline([(ENRICH, failing), (STORE, sink)]) as pipeline:
        await pipeline.run([seen(1), seen(2)])
    assert pipeline.failures() == {"local_echo": 1}
    assert len(sink.rows) == 3


async def test_local_and_bus_give_the_same_ids(bus: Bus) -> None:
    produced = [seen(i) for i in range(6)]
    local_sink = MemorySink()
    async with LocalPipeline([(ENRICH, EchoEnricher()), (STORE, local_sink)]) as pipeline:
        await pipeline.run([e.__copy__() for e in produced])

    bus_sink = MemorySink()
    await bus.provision([ENRICH, STORE])
    runner = Runner(bus, options(bus.config))
    runner.add(ENRICH, EchoEnricher())
    runner.add(STORE, bus_sink)
    task: asyncio.Task[Any] = asyncio.create_task(runner.run())
    try:
        for event in produced:
            await bus.publish(event)
        await eventually(lambda: len(bus_sink.rows) == 12, what="12 rows on the bus")
    finally:
        runner.stop()
        await asyncio.wait_for(task, 20)
    assert set(bus_sink.rows) == set(local_sink.rows)
