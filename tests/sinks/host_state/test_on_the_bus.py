"""host_state behind the runner on a real nats-server: an unreadable coverage is dead-lettered
where it is decoded, on its first delivery, and the rest of the batch is written at once."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from lanscope.runtime.bus import Bus
from lanscope.runtime.delivery import H_DELIVERIES, H_REASON
from lanscope.runtime.runner import Runner, RunnerOptions
from lanscope.runtime.topology import STAGES
from schemas import SweepCompleted, dlq_subject, encode, subject_for
from schemas import subjects as subj
from sinks.host_state import Config, HostState
from tests.factories import at, host_seen
from tests.runtime.stages import eventually, subject_count

pytestmark = pytest.mark.nats


async def test_a_sweep_whose_coverage_cannot_be_read_is_dead_lettered_at_decode_the_rest_written(
        bus: Bus, tmp_path: Path) -> None:
    spec = STAGES["host_state"]
    sink = HostState(Config(path=str(tmp_path / "lanscope.duckdb")), clock=lambda: datetime.now(UTC))
    await bus.provision([spec])
    bad = SweepCompleted(host_key="s1", observed_at=at(5), source="arp", sweep_id="s1",
                         covered=["198.18.0.0/24"])
    wire = msgspec.json.decode(encode(bad))
    wire["covered"] = ["198.18.0.0/24", "198.18.0.7/24"]        # host bits: not a CIDR
    await bus.publish_bytes(subject_for(bad), msgspec.json.encode(wire), msg_id="bad-sweep")
    good = host_seen("198.18.0.10", "02:00:00:00:00:0a", t=6)
    await bus.publish(good)
    runner = Runner(bus, dataclasses.replace(RunnerOptions.from_config(bus.config), fetch_timeout_secs=0.2))
    runner.add(spec, sink, flush_ms=100)
    task = asyncio.create_task(runner.run())
    try:
        async def dead() -> int:
            return await subject_count(bus, subj.DEAD_LETTERS.name, dlq_subject("host_state"))
        await eventually(dead, what="the sweep in host_state's DLQ")
        copy = await bus.js.get_last_msg(subj.DEAD_LETTERS.name, dlq_subject("host_state"))
        headers = copy.headers or {}
        assert headers[H_REASON].startswith("undecodable: covered[1] '198.18.0.7/24' is not a CIDR")
        assert headers[H_DELIVERIES] == "1"
        await eventually(lambda: good.host_key in sink.book.hosts, what="the good sighting folded")
    finally:
        runner.stop()
        await asyncio.wait_for(task, 20)
