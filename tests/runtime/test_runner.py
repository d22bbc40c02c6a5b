"""The runner's delivery contract on a real nats-server (in-process stages)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest
from nats.aio.msg import Msg
from nats.errors import NoRespondersError

from lanscope.config import NatsConfig
from lanscope.errors import UnusableEvent
from lanscope.runtime.bus import Bus
from lanscope.runtime.delivery import H_DELIVERIES, H_REASON, H_SEQ, H_SUBJECT, deliveries, first_delivery
from lanscope.runtime.runner import Runner, RunnerOptions
from lanscope.runtime.stagerun import H_QUERY_ERROR
from lanscope.runtime.topology import Kind, StageSpec, sink_feeds
from schemas import dlq_subject
from schemas import subjects as subj
from tests.runtime.stages import (
    EchoEnricher,
    MemorySink,
    annotation_for,
    eventually,
    seen,
    spec,
    subject_count,
)

pytestmark = pytest.mark.nats

FACTS = subj.FACTS.name
DLQ = subj.DEAD_LETTERS.name


def options(config: NatsConfig, **overrides: Any) -> RunnerOptions:
    base = RunnerOptions.from_config(config)
    return dataclasses.replace(base, fetch_timeout_secs=0.2, **overrides)


@asynccontextmanager
async def running(bus: Bus, *stages: tuple[StageSpec, Any], **overrides: Any) -> AsyncIterator[Runner]:
    await bus.provision([s for s, _ in stages], feeds=sink_feeds(s for s, _ in stages))  # as `run` does
    runner = Runner(bus, options(bus.config, **overrides))
    for stage_spec, stage in stages:
        runner.add(stage_spec, stage)
    task = asyncio.create_task(runner.run())
    try:
        yield runner
    finally:
        runner.stop()
        await asyncio.wait_for(task, 20)


async def consumer(bus: Bus, name: str) -> Any:
    return await bus.js.consumer_info(FACTS, name)


async def test_sink_acks_only_after_write_and_outputs(bus: Bus) -> None:
    gate = asyncio.Event()
    sink = MemorySink(gate=gate, emit=True)
    stage = spec("sink_gate", Kind.SINK, batch_size=10)
    async with running(bus, (stage, sink)):
        for i in range(3):
            await bus.publish(seen(i))
        await asyncio.wait_for(sink.writing.wait(), 10)
        info = await consumer(bus, "sink_gate")
        assert info.num_ack_pending == 3 and info.ack_floor.stream_seq == 0
        gate.set()
        await eventually(lambda: sink.rows and len(sink.rows) == 3, what="3 rows")

        async def settled() -> bool:
            return (await consumer(bus, "sink_gate")).num_ack_pending == 0
        await eventually(settled, what="acks")
        assert await subject_count(bus, FACTS, "lanscope.host.annotated.>") == 3
    assert sink.opened and sink.closed


async def test_a_sink_writes_on_while_outputs_publish_in_batch_order(
        bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    sink = MemorySink(emit=True)
    stage = spec("sink_order", Kind.SINK, batch_size=3)
    held = asyncio.Event()
    publish_events = bus.publish_events
    calls = 0

    async def slow_first(events: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:                        # the first batch's outputs wait
            await held.wait()
        return await publish_events(events)

    monkeypatch.setattr(bus, "publish_events", slow_first)
    async with running(bus, (stage, sink), sink_flush_ms=50):
        for i in range(3):
            await bus.publish(seen(i))
        await eventually(lambda: len(sink.batches) == 1, what="the first batch written")
        for i in range(3, 6):
            await bus.publish(seen(i))
        await eventually(lambda: len(sink.batches) == 2, what="the second batch written")
        for i in range(6, 9):
            await bus.publish(seen(i))
        # Later batches are written while the first one's outputs are held back ...
        await eventually(lambda: len(sink.batches) == 3, what="the third batch written")
        assert await subject_count(bus, FACTS, "lanscope.host.annotated.>") == 0
        held.set()

        async def published() -> bool:
            return await subject_count(bus, FACTS, "lanscope.host.annotated.>") == 9
        await eventually(published, what="9 outputs")
        # ... and their outputs still go out after the first batch's.
        order = []
        for seq in range(1, 19):
            msg = await bus.js.get_msg(FACTS, seq)
            if msg.subject.startswith("lanscope.host.annotated."):
                order.append(msg.data)
        first = {sink.rows[i].host_key for i in sink.batches[0]}
        hosts = [msgspec.json.decode(data)["host_key"] for data in order]
        assert set(hosts[:3]) == first


async def test_enricher_acks_after_publishing_outputs(bus: Bus) -> None:
    gate = asyncio.Event()
    enricher = EchoEnricher(gate=gate)
    stage = spec("echo_gate", Kind.ENRICHER)
    async with running(bus, (stage, enricher)):
        first = seen(1)
        await bus.publish(first)
        await asyncio.wait_for(enricher.started.wait(), 10)
        assert (await consumer(bus, "echo_gate")).num_ack_pending == 1
        assert await subject_count(bus, FACTS, "lanscope.host.annotated.>") == 0
        gate.set()

        async def acked() -> bool:
            return (await consumer(bus, "echo_gate")).num_ack_pending == 0
        await eventually(acked, what="the ack")
        assert await subject_count(bus, FACTS, "lanscope.host.annotated.>") == 1
        assert enricher.seen == [first.id]


async def test_malformed_message_goes_to_the_dlq_and_the_stage_goes_on(bus: Bus) -> None:
    sink = MemorySink()
    stage = spec("sink_dlq", Kind.SINK, batch_size=4)
    async with running(bus, (stage, sink)):
        bad = await bus.publish_bytes("lanscope.host.seen.arp", b'{"type": "host_seen", "ip": 5}',
                                      msg_id="bad-1")
        good = seen(7)
        await bus.publish(good)
        await eventually(lambda: good.id in sink.rows, what="the good event after the bad one")

        async def dead() -> int:
            return await subject_count(bus, DLQ, dlq_subject("sink_dlq"))
        await eventually(dead, what="a DLQ copy")
        copy = await bus.js.get_last_msg(DLQ, dlq_subject("sink_dlq"))
        assert copy.data == b'{"type": "host_seen", "ip": 5}'
        headers = copy.headers or {}
        assert headers[H_REASON].startswith("undecodable:")
        assert headers[H_SUBJECT] == "lanscope.host.seen.arp"
        assert headers[H_SEQ] == str(bad.seq) and headers[H_DELIVERIES] == "1"
        info = await consumer(bus, "sink_dlq")
        assert info.num_ack_pending == 0 and info.num_pending == 0   # terminated, not redelivered


async def test_always_failing_handler_ends_in_the_dlq(bus: Bus) -> None:
    enricher = EchoEnricher(fail=lambda event: event.host_key.endswith("01"))
    stage = spec("echo_fail", Kind.ENRICHER)
    poison, fine = seen(1), seen(2)
    async with running(bus, (stage, enricher)):
        await bus.publish(poison)
        await bus.publish(fine)

        async def dead() -> int:
            return await subject_count(bus, DLQ, dlq_subject("echo_fail"))
        await eventually(dead, what="the DLQ copy")
        copy = await bus.js.get_last_msg(DLQ, dlq_subject("echo_fail"))
        assert (copy.headers or {})[H_REASON].startswith("failed 3 times, last: RuntimeError: cannot handle")
        assert enricher.seen.count(poison.id) == bus.config.max_deliver == 3
        assert enricher.seen.count(fine.id) == 1
        assert await subject_count(bus, FACTS, "lanscope.host.annotated.>") == 1


async def test_two_copies_share_the_work(bus: Bus, nats_config: NatsConfig) -> None:
    class Slow(EchoEnricher):
        async def handle(self, event: Any) -> list[Any]:
            await asyncio.sleep(0.005)
            return await super().handle(event)

    stage = spec("echo_shared", Kind.ENRICHER, batch_size=4, concurrency=2)
    other_bus = await Bus.connect(nats_config, name="second-copy")
    one, two = Slow(), Slow()
    total = 200
    try:
        await bus.provision([stage])
        second = Runner(other_bus, options(nats_config))
        second.add(stage, two)
        second_task = asyncio.create_task(second.run())
        async with running(bus, (stage, one)):
            for i in range(total):
                await bus.publish(seen(i))
            done: Callable[[], bool] = lambda: len(set(one.seen) | set(two.seen)) == total  # noqa: E731
            await eventually(done, timeout=30, what="every event handled")
            second.stop()
            await asyncio.wait_for(second_task, 20)
    finally:
        await other_bus.close()
    assert one.seen and two.seen
    assert len(one.seen) + len(two.seen) == total          # nobody handled an event twice
    assert await subject_count(bus, FACTS, "lanscope.host.annotated.>") == total


async def test_graceful_stop_finishes_or_hands_back(bus: Bus) -> None:
    # Finishes: the handler completes inside the grace period and its message is acked.
    gate = asyncio.Event()
    finishing = EchoEnricher(gate=gate)
    stage = spec("echo_stop", Kind.ENRICHER, ack_wait_secs=30)
    await bus.provision([stage])
    runner = Runner(bus, options(bus.config))
    runner.add(stage, finishing)
    task = asyncio.create_task(runner.run())
    await bus.publish(seen(1))
    await asyncio.wait_for(finishing.started.wait(), 10)
    runner.stop()
    gate.set()
    await asyncio.wait_for(task, 10)

    async def finished() -> bool:
        info = await consumer(bus, "echo_stop")
        return info.num_ack_pending == 0 and info.num_pending == 0
    await eventually(finished, timeout=3, what="the finished event's ack")
    assert await subject_count(bus, FACTS, "lanscope.host.annotated.>") == 1

    # Hands back: the handler never finishes; after the grace period the message is nak'd
    # and immediately available to another copy.
    stuck = EchoEnricher(gate=asyncio.Event())
    runner = Runner(bus, options(bus.config, grace_secs=0.5))
    runner.add(stage, stuck)
    task = asyncio.create_task(runner.run())
    await bus.publish(seen(2))
    await asyncio.wait_for(stuck.started.wait(), 10)
    runner.stop()
    await asyncio.wait_for(task, 10)

    # Another copy gets it at once: ack_wait (30 s) has not expired, so it was nak'd.
    taker = EchoEnricher()
    async with running(bus, (stage, taker)):
        await eventually(lambda: len(taker.seen) == 1, timeout=3, what="the handed-back event")


class Sweeper:
    """A producer: two sightings per sweep; the second sweep fails, later ones work."""

    interval_secs = 0.05

    def __init__(self) -> None:
        self.sweeps = 0

    async def sweep(self) -> list[Any]:
        self.sweeps += 1
        if self.sweeps == 2:
            raise OSError("interface went away")
        return [seen(1), seen(2)]


async def test_producer_sweeps_on_schedule_and_survives_a_failed_sweep(bus: Bus) -> None:
    producer = Sweeper()
    stage = StageSpec("sweeper", Kind.PRODUCER)
    async with running(bus, (stage, producer)) as runner:
        await eventually(lambda: producer.sweeps >= 4, what="four sweeps")
    counters = runner.counters()["sweeper"]
    assert counters.events_failed_total == 1
    assert counters.events_emitted_total >= 6
    # The same sightings every sweep: deterministic ids, stored once (duplicate window).
    assert await subject_count(bus, FACTS, "lanscope.host.seen.>") == 2


class Listening:
    """A streaming producer: yields a batch whenever the test feeds one; its first life
    fails after one batch, the second runs until the runtime closes it."""

    restart_secs = 0.05

    def __init__(self) -> None:
        self.lives = 0
        self.closed = 0
        self.feed: asyncio.Queue[list[Any]] = asyncio.Queue()

    async def listen(self) -> AsyncIterator[list[Any]]:
        self.lives += 1
        try:
            while True:
                batch = await self.feed.get()
                yield batch
                if self.lives == 1:
                    raise OSError("interface went away")
        finally:
            self.closed += 1


async def test_a_listener_publishes_each_batch_at_once_and_is_restarted_after_a_failure(bus: Bus) -> None:
    listener = Listening()
    stage = StageSpec("listener", Kind.PRODUCER)
    async with running(bus, (stage, listener)) as runner:
        listener.feed.put_nowait([seen(1)])
        await eventually(lambda: listener.lives == 2, what="a second life after the failure")
        listener.feed.put_nowait([seen(2), seen(3)])

        async def published() -> bool:
            return await subject_count(bus, FACTS, "lanscope.host.seen.>") == 3
        await eventually(published, what="three sightings on the bus")
    # Stopping closed the second life's generator (its sockets would be released there).
    assert listener.closed == 2
    counters = runner.counters()["listener"]
    assert counters.events_failed_total == 1 and counters.events_emitted_total == 3


async def test_once_is_not_held_up_by_a_listener(bus: Bus) -> None:
    listener = Listening()
    runner = Runner(bus, options(bus.config, once=True))
    runner.add(StageSpec("listener_once", Kind.PRODUCER), listener)
    await asyncio.wait_for(runner.run(), 20)
    assert listener.closed == listener.lives == 1


class QueryingSink(MemorySink):
    async def query(self, request: bytes) -> bytes:
        if request == b"boom":
            raise ValueError("no such table")
        return b"rows:" + str(len(self.rows)).encode()


async def test_a_stage_with_query_answers_on_the_query_subject(bus: Bus) -> None:
    stage = spec("queried", Kind.SINK)
    async with running(bus, (stage, QueryingSink())):
        replies: list[bytes] = []

        async def answered() -> bool:
            try:
                replies.append((await bus.nc.request(subj.QUERY, b"count", timeout=5)).data)
            except NoRespondersError:   # the runner has not subscribed yet
                return False
            return True
        await eventually(answered, what="a reply")
        assert replies == [b"rows:0"]
        failed = await bus.nc.request(subj.QUERY, b"boom", timeout=5)
        assert (failed.headers or {})[H_QUERY_ERROR] == "ValueError: no such table"


async def test_once_stops_when_everything_is_consumed(bus: Bus) -> None:
    sink = MemorySink()
    stage = spec("once_sink", Kind.SINK)
    await bus.provision([stage])
    for i in range(20):
        await bus.publish(seen(i))
    runner = Runner(bus, options(bus.config, once=True))
    runner.add(stage, sink)
    await asyncio.wait_for(runner.run(), 20)
    assert len(sink.rows) == 20


class PoisonSink(MemorySink):
    """Refuses any batch that holds the poison host; writes everything else. ``unusable``:
    names the poison's events unusable (as host_state does an unreadable coverage)."""

    def __init__(self, poison: str, *, unusable: bool = False) -> None:
        super().__init__()
        self.poison = poison
        self.unusable = unusable
        self.attempts = 0

    async def write(self, batch: list[Any], redelivered: Any = None) -> list[Any]:
        self.attempts += 1
        bad = [event.id for event in batch if event.host_key == self.poison]
        if bad and self.unusable:
            raise UnusableEvent(f"{self.poison}: cannot read it", bad)
        if bad:
            raise RuntimeError("constraint violated")
        return await super().write(batch, redelivered)


@pytest.mark.parametrize(("unusable", "reason", "deliveries"), [
    (False, "failed 3 times, last: RuntimeError: constraint violated", "3"),
    # The sink says no retry can help: dead-lettered at once, the rest written again.
    (True, "unusable: {poison}: cannot read it", "1"),
])
async def test_a_poison_message_cannot_hold_back_its_batch(bus: Bus, unusable: bool, reason: str,
                                                           deliveries: str) -> None:
    events = [seen(i) for i in range(6)]
    sink = PoisonSink(poison=events[3].host_key, unusable=unusable)
    stage = spec("sink_poison", Kind.SINK, batch_size=10)
    for event in events:
        await bus.publish(event)
    async with running(bus, (stage, sink)):
        good = {e.id for e in events} - {events[3].id}
        await eventually(lambda: set(sink.rows) == good, what="the five good events")

        async def dead() -> int:
            return await subject_count(bus, DLQ, dlq_subject("sink_poison"))
        await eventually(dead, what="the poison in the DLQ")
        copy = await bus.js.get_last_msg(DLQ, dlq_subject("sink_poison"))
        headers = copy.headers or {}
        assert headers[H_REASON] == reason.format(poison=events[3].host_key)
        assert headers[H_DELIVERIES] == deliveries
        if unusable:
            assert sink.attempts == 2                    # the batch, then the rest of it

        async def settled() -> bool:
            info = await consumer(bus, "sink_poison")
            return info.num_ack_pending == 0 and info.num_pending == 0
        await eventually(settled, what="everything settled")
    assert events[3].id not in sink.rows


@pytest.mark.parametrize(("reply", "count"), [
    ("$JS.ACK.LANSCOPE_FACTS.host_state.1.17.17.1763745000000000000.0", 1),
    ("$JS.ACK.LANSCOPE_FACTS.host_state.12.17.9.1763745000000000000.4", 12),
    ("$JS.ACK.hub.ACCHASH.LANSCOPE_FACTS.host_state.3.17.9.1763745000000000000.4.rnd", 3),
])
def test_deliveries_come_from_the_ack_subject_alone(reply: str, count: int) -> None:
    msg = Msg(_client=None, subject="lanscope.facts.host.seen", reply=reply)  # type: ignore[arg-type]
    assert deliveries(msg) == count
    assert deliveries(msg, first_delivery("LANSCOPE_FACTS", "host_state")) == count
    assert deliveries(msg, first_delivery("LANSCOPE_FACTS", "host")) == count   # not its consumer
    assert msg.metadata.num_delivered == count      # what nats-py reads from the whole subject


class RecordingSink(PoisonSink):
    """A PoisonSink (poison "" refuses nothing) that notes which inputs came as redelivered."""

    def __init__(self, poison: str = "") -> None:
        super().__init__(poison)
        self.redelivered: set[str] = set()

    async def write(self, batch: list[Any], redelivered: Any = None) -> list[Any]:
        self.redelivered |= set(redelivered or ())
        return await super().write(batch, redelivered)


async def test_sinks_in_one_process_share_one_delivery(bus: Bus) -> None:
    first = spec("share_a", Kind.SINK, batch_size=10)
    second = spec("share_b", Kind.SINK, consumes=(subj.HOST_SEEN, subj.HOST_ANNOTATED), batch_size=10)
    a, b = MemorySink(emit=True), MemorySink()
    events = [seen(i) for i in range(5)]
    async with running(bus, (first, a), (second, b)):
        for event in events:
            await bus.publish(event)
        # b reads what a emits, through the same feed; a does not read annotations.
        await eventually(lambda: len(b.rows) == 10, what="b: 5 sightings and a's 5 annotations")
        assert set(a.rows) == {e.id for e in events}

        async def settled() -> Any:
            info = await consumer(bus, "share_a+share_b")
            return info.num_ack_pending == 0 and info.num_pending == 0 and info
        info = await eventually(settled, what="everything acked")
        assert info.delivered.stream_seq == 10 and info.num_redelivered == 0   # each message once
    names = {c.name async for c in _consumers(bus)}
    assert "share_a" not in names and "share_b" not in names
    assert a.opened and a.closed and b.opened and b.closed


async def _consumers(bus: Bus) -> AsyncIterator[Any]:
    for info in await bus.js.consumers_info(FACTS):
        yield info


async def test_a_message_failing_in_one_shared_sink_goes_to_that_sinks_dlq(bus: Bus) -> None:
    events = [seen(i) for i in range(4)]
    first, second = spec("fine", Kind.SINK, batch_size=10), spec("picky", Kind.SINK, batch_size=10)
    fine, picky = RecordingSink(), RecordingSink(poison=events[2].host_key)
    for event in events:
        await bus.publish(event)
    async with running(bus, (first, fine), (second, picky)):
        async def dead() -> int:
            return await subject_count(bus, DLQ, dlq_subject("picky"))
        await eventually(dead, what="the poison in picky's DLQ")
        copy = await bus.js.get_last_msg(DLQ, dlq_subject("picky"))
        assert (copy.headers or {})[H_REASON] == "failed 3 times, last: RuntimeError: constraint violated"
        assert await subject_count(bus, DLQ, dlq_subject("fine")) == 0
    # The good ones reached both; the poison reached the sink that took it, each
    # delivery after the first marked as one (so a sink can tell what it may have
    # committed already).
    assert set(fine.rows) == {e.id for e in events}
    assert set(picky.rows) == {e.id for e in events} - {events[2].id}
    assert events[2].id in fine.redelivered


async def test_an_enricher_rejecting_an_event_as_unusable_dead_letters_it_at_once(bus: Bus) -> None:
    class Picky(EchoEnricher):
        async def handle(self, event: Any) -> list[Any]:
            self.seen.append(event.id)
            if event.host_key.endswith("01"):
                raise UnusableEvent("no use", [event.id])
            return [annotation_for(event)]

    enricher = Picky()
    stage = spec("echo_unusable", Kind.ENRICHER)
    poison, fine = seen(1), seen(2)
    async with running(bus, (stage, enricher)):
        await bus.publish(poison)
        await bus.publish(fine)

        async def dead() -> int:
            return await subject_count(bus, DLQ, dlq_subject("echo_unusable"))
        await eventually(dead, what="the DLQ copy")
        await eventually(lambda: fine.id in enricher.seen, what="the fine event")
        copy = await bus.js.get_last_msg(DLQ, dlq_subject("echo_unusable"))
        assert (copy.headers or {})[H_REASON] == "unusable: no use"
        assert enricher.seen.count(poison.id) == 1
