"""The nats-py fast path: the internals it needs, direct delivery, and the public-API fallback."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from lanscope.config import NatsConfig
from lanscope.runtime import fastpath
from lanscope.runtime.bus import Bus
from lanscope.runtime.fastpath import MSG_ID, Delivered, FastClient, FastParser, parse_headers
from lanscope.runtime.puller import Puller
from lanscope.runtime.runner import Runner, RunnerOptions
from lanscope.runtime.topology import Kind
from schemas import subjects as subj
from tests.runtime.stages import EchoEnricher, MemorySink, eventually, seen, spec, subject_count

FACTS = subj.FACTS.name


def test_this_nats_py_has_every_internal_the_fast_path_needs() -> None:
    """Fails (never skips) on a nats-py whose private names the fast path no longer fits:
    check the new release's internals, adapt fastpath.py, and widen the pin in pyproject.toml."""
    assert fastpath.missing_internals() == []
    assert fastpath.MISSING == []
    assert FastClient().fast
    assert type(FastClient()._ps) is FastParser


def test_a_changed_internal_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    async def process(self: object, sid: int, subject: bytes, reply: bytes, data: bytes) -> None: ...

    monkeypatch.setattr(NatsClient, "_process_msg", process)
    monkeypatch.delattr(NatsClient, "_flush_pending")
    missing = fastpath.missing_internals()
    assert missing == ["Client._process_msg(sid, subject, reply, data, headers)", "Client._flush_pending()"]


@pytest.mark.nats
async def test_puller_data_messages_skip_the_subscription_queue(bus: Bus) -> None:
    """The read loop hands a pull inbox's data messages straight to the puller, headers
    included; status replies (the 408 of an expired request) still take nats-py's way."""
    assert isinstance(bus.nc._ps, FastParser)      # what the read loop parses with
    stage = spec("direct", Kind.SINK, batch_size=8)
    await bus.provision([stage])
    events = [seen(i) for i in range(3)]
    await bus.publish_events(events)
    puller = Puller(bus, FACTS, "direct", prefetch=8, expires_secs=0.2)
    await puller.start()
    assert puller._sub is not None and puller._sub._id in bus.nc._direct
    msgs = await puller.fetch(3, timeout=5)
    assert [m.headers for m in msgs] == [{MSG_ID: e.id} for e in events]
    assert puller._sub.delivered == 0          # nothing went through the subscription's queue
    for msg in msgs:
        await msg.ack()
    assert await puller.fetch(3, timeout=0.5) == []   # requests expire (408) and are renewed
    assert puller._sub.delivered > 0
    await puller.close()


@pytest.mark.nats
async def test_without_the_fast_path_the_public_api_does_the_same(
        nats_config: NatsConfig, bus: Bus, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A nats-py the fast path does not fit: one warning naming what is missing, then
    every message through nats-py's own client, acks and PubAcks alike."""
    monkeypatch.setattr(fastpath, "MISSING", ["Client._ps"])
    monkeypatch.setattr(fastpath, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="lanscope.runtime.fastpath"):
        slow = await Bus.connect(nats_config, name="slow")
        again = await Bus.connect(nats_config, name="slow-again")
    try:
        warnings = [r.getMessage() for r in caplog.records if "fast receive path" in r.getMessage()]
        assert len(warnings) == 1 and "Client._ps" in warnings[0]
        assert not slow.nc.fast and type(slow.nc._ps) is not FastParser
        stage = spec("slow", Kind.SINK, batch_size=8)
        await slow.provision([stage])
        events = [seen(i) for i in range(5)]
        acks = await slow.publish_events(events)              # PubAcks through the callback
        assert [a.seq for a in acks] == [1, 2, 3, 4, 5]
        puller = Puller(slow, FACTS, "slow", prefetch=8, expires_secs=0.3)
        await puller.start()
        msgs = await puller.fetch(5, timeout=5, fill_secs=5)
        assert [m.headers for m in msgs] == [{MSG_ID: e.id} for e in events]
        assert not any(isinstance(m, Delivered) for m in msgs)
        await slow.nc.ack_all(msgs)
        assert all(m.is_acked for m in msgs)
        assert await puller.close() == []
        info = await slow.js.consumer_info(FACTS, "slow")
        assert info.ack_floor.stream_seq == 5 and info.num_ack_pending == 0
        assert await subject_count(slow, FACTS, "lanscope.host.seen.>") == 5
    finally:
        await slow.close()
        await again.close()


def test_a_directly_delivered_message_is_a_msg_with_headers_parsed_on_first_use() -> None:
    reply = "$JS.ACK.LANSCOPE_FACTS.host_state.2.17.9.1732123456789012345.4"
    block = b"NATS/1.0\r\nNats-Msg-Id: abc\r\n\r\n"
    msg = Delivered(None, "lanscope.facts.x", reply, b"{}", block, 7)   # type: ignore[arg-type]
    like = Msg(_client=None, subject="lanscope.facts.x", reply=reply, data=b"{}",  # type: ignore[arg-type]
               headers={MSG_ID: "abc"}, _sid=7)
    assert msg._block is block                  # nothing parsed yet
    assert (msg.subject, msg.reply, msg.data, msg.sid, msg.is_acked) == \
        (like.subject, like.reply, like.data, like.sid, like.is_acked)
    assert msg.headers == msg.header == like.headers
    assert msg.metadata == like.metadata
    msg.headers = {"X": "1"}
    assert msg.headers == {"X": "1"}
    assert Delivered(None, "s", reply, b"", None, 1).headers is None   # type: ignore[arg-type]


def test_header_blocks_parse_into_names_and_values() -> None:
    block = b"NATS/1.0\r\nNats-Msg-Id: abc\r\nX-Two:  spaced value \r\nbad line\r\n\r\n"
    assert parse_headers(block) == {"Nats-Msg-Id": "abc", "X-Two": "spaced value"}
    # The block of a lanscope message (the id alone) takes a shortcut to the same result.
    assert parse_headers(b"NATS/1.0\r\nNats-Msg-Id: abc \r\n\r\n") == {"Nats-Msg-Id": "abc"}
    assert parse_headers(b"NATS/1.0\r\nNats-Msg-Id:abc\r\nX: 1\r\n\r\n") == {"Nats-Msg-Id": "abc", "X": "1"}
    assert parse_headers(b"NATS/1.0\r\nNats-Msg-Id-2: abc\r\n\r\n") == {"Nats-Msg-Id-2": "abc"}


@pytest.mark.nats
async def test_the_runner_works_the_same_on_nats_pys_own_client(nats_config: NatsConfig, bus: Bus) -> None:
    """An enricher and a sink through the runner, every message the public way."""
    slow = await Bus.connect(nats_config, name="slow-runner", fast=False)
    enricher, sink = EchoEnricher(), MemorySink()
    stages = [(spec("slow_echo", Kind.ENRICHER), enricher),
              (spec("slow_sink", Kind.SINK, consumes=(subj.HOST_ANNOTATED,)), sink)]
    try:
        assert not slow.nc.fast
        await slow.provision([s for s, _ in stages])
        runner = Runner(slow, dataclasses.replace(RunnerOptions.from_config(nats_config),
                                                  fetch_timeout_secs=0.2))
        for stage_spec, stage in stages:
            runner.add(stage_spec, stage)
        task = asyncio.create_task(runner.run())
        events = [seen(i) for i in range(20)]
        await slow.publish_events(events)
        await eventually(lambda: len(sink.rows) == 20, what="20 annotations in the sink")
        assert sorted(enricher.seen) == sorted(e.id for e in events)
        runner.stop()
        await asyncio.wait_for(task, 20)
        for name in ("slow_echo", "slow_sink"):
            info = await slow.js.consumer_info(FACTS, name)
            assert info.num_ack_pending == 0 and info.num_redelivered == 0, name
    finally:
        await slow.close()
