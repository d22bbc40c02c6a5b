"""Issue 20, case 4: a bad value is refused where the message is decoded.

On a real nats-server with the real host_state sink: an event whose ``ip`` does
not parse is dead-lettered on its first delivery and the valid events of its
batch are written at once (before: it passed the schema, failed inside
host_state, held back its batch of 8 and reached the DLQ after 5 deliveries,
~15 s). A 1 MB poison message read by five stages is dead-lettered once, as a
capped prefix with its size and hash (before: five full copies).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from lanscope.runtime.bus import Bus
from lanscope.runtime.delivery import (
    DLQ_PAYLOAD_MAX,
    H_DELIVERIES,
    H_REASON,
    H_SHA256,
    H_SIZE,
    H_TRUNCATED,
    RunnerOptions,
)
from lanscope.runtime.runner import Runner
from lanscope.runtime.topology import STAGES, Kind
from schemas import encode, subject_for
from schemas import subjects as subj
from sinks.host_state import Config, HostState
from tests.runtime.stages import EchoEnricher, eventually, seen, spec, subject_count

pytestmark = pytest.mark.nats
DLQ = subj.DEAD_LETTERS.name


def _runner(bus: Bus) -> Runner:
    return Runner(bus, dataclasses.replace(RunnerOptions.from_config(bus.config), fetch_timeout_secs=0.2))


async def test_an_ip_that_does_not_parse_is_dead_lettered_at_once_and_its_batch_goes_through(
        bus: Bus, tmp_path: Path) -> None:
    host_state = STAGES["host_state"]
    sink = HostState(Config(path=str(tmp_path / "lanscope.duckdb")), clock=lambda: datetime.now(UTC))
    await bus.provision([host_state])
    good = [seen(i) for i in range(8)]
    bad = seen(8)
    wire = msgspec.json.decode(encode(bad))
    wire["ip"] = "999.1.1.1"
    started = time.monotonic()
    await bus.publish_events(good[:4])
    await bus.publish_bytes(subject_for(bad), msgspec.json.encode(wire), msg_id="bad-ip")
    await bus.publish_events(good[4:])
    runner = _runner(bus)
    runner.add(host_state, sink, flush_ms=300)           # one batch: all nine arrive within it
    task = asyncio.create_task(runner.run())
    try:
        await eventually(lambda: all(e.host_key in sink.book.hosts for e in good),
                         what="the 8 valid sightings written")
        written_after = time.monotonic() - started
        await eventually(lambda: subject_count(bus, DLQ, "lanscope.dlq.host_state"), what="the DLQ copy")
        copy = await bus.js.get_last_msg(DLQ, "lanscope.dlq.host_state")
        headers = copy.headers or {}
        assert headers[H_REASON] == "undecodable: ip: '999.1.1.1' is not an IP address"
        assert headers[H_DELIVERIES] == "1"
        print(f"\ncase 4: 8 valid events written {written_after:.2f}s after publishing, "
              f"the bad one dead-lettered on delivery {headers[H_DELIVERIES]}")
        assert written_after < 5.0          # before: held back until the 5th delivery, ~15 s
    finally:
        runner.stop()
        await asyncio.wait_for(task, 20)


async def test_a_huge_poison_message_is_dead_lettered_once_capped_with_its_size_and_hash(bus: Bus) -> None:
    readers = [spec(f"reader{i}", Kind.ENRICHER) for i in range(5)]
    await bus.provision(readers)
    poison = msgspec.json.decode(encode(seen(1)))
    poison["hostname"] = "x" * (1024 * 1024 - 2048)       # ~1 MB: over the 255-character cap
    payload = msgspec.json.encode(poison)
    fine = seen(2)
    await bus.publish_bytes(subject_for(seen(1)), payload, msg_id="huge-poison")
    await bus.publish(fine)
    enrichers = [EchoEnricher() for _ in readers]
    runner = _runner(bus)
    for reader, enricher in zip(readers, enrichers, strict=True):
        runner.add(reader, enricher)
    task = asyncio.create_task(runner.run())
    try:
        await eventually(lambda: all(fine.id in e.seen for e in enrichers), what="every reader's good event")
        await eventually(lambda: all(c.events_failed_total == 1 for c in runner.counters().values()),
                         what="every reader refusing the poison")
        info = await bus.js.stream_info(DLQ)
        assert info.state.messages == 1                    # before: one full copy per reader (5)
        assert info.state.bytes < DLQ_PAYLOAD_MAX + 4096
        copy = await bus.js.get_last_msg(DLQ, "lanscope.dlq.>")
        headers = copy.headers or {}
        assert headers[H_SIZE] == str(len(payload))
        assert headers[H_SHA256] == hashlib.sha256(payload).hexdigest()
        assert headers[H_TRUNCATED] == "true"
        assert copy.data == payload[:DLQ_PAYLOAD_MAX]
        assert headers[H_REASON] == "undecodable: Expected `str` of length <= 255 - at `$.hostname`"
        print(f"\ncase 4: a {len(payload):,}-byte poison read by 5 stages: {info.state.messages} DLQ "
              f"entry of {info.state.bytes:,} bytes")
    finally:
        runner.stop()
        await asyncio.wait_for(task, 20)
