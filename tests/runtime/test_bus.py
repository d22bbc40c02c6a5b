"""The bus on a real nats-server: provisioning, de-duplicated publishing, KV claims."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import msgspec
import pytest
from nats.aio.msg import Msg

from lanscope.config import NatsConfig, Secret
from lanscope.runtime.bus import (
    MSG_ID,
    Bus,
    BusError,
    KvClaims,
    Puller,
    _Delivered,
    _headers,
    _Parser,
    kv_key,
    servers,
    sink_feeds,
)
from lanscope.runtime.topology import STAGES, Kind
from schemas import subjects as subj
from tests.runtime.stages import seen, spec, subject_count

pytestmark = pytest.mark.nats

FACTS = subj.FACTS.name


async def test_provision_is_idempotent(bus: Bus) -> None:
    first = await bus.provision(STAGES.values())
    assert {p.action for p in first if p.kind == "consumer"} == {"created"}
    # host_state reads two streams: one consumer (same durable name) in each.
    assert {p.name for p in first if p.name.endswith("/host_state")} == {
        "LANSCOPE_FACTS/host_state", "LANSCOPE_CHANGES/host_state"}
    second = await bus.provision(STAGES.values())
    assert [(p.kind, p.name, p.action) for p in second] == [
        (p.kind, p.name, "unchanged") for p in first]


def test_sinks_of_one_process_share_a_feed_per_stream() -> None:
    feeds = {(f.stream, f.spec.durable): f for f in sink_feeds(STAGES.values())}
    # Producers and enrichers have no feed; host_state and findings share the facts,
    # all three sinks the changes, each message of which one of them wants at least.
    assert set(feeds) == {(FACTS, "findings+host_state"),
                          (subj.CHANGES.name, "findings+host_state+registry")}
    facts = feeds[FACTS, "findings+host_state"]
    assert facts.members == ("findings", "host_state") and facts.shared
    assert list(facts.spec.consumes) == [subj.HOST_SEEN, subj.HOST_PORTS, subj.HOST_ANNOTATED,
                                         subj.SWEEP_COMPLETED]   # the union, each once
    assert facts.spec.batch_size == STAGES["host_state"].batch_size and facts.spec.max_replicas == 1
    # A sink alone on its streams reads through its own durable, as before.
    alone = sink_feeds([STAGES["host_state"], STAGES["port_probe"]])
    assert [(f.stream, f.spec, f.shared) for f in alone] == [
        (FACTS, STAGES["host_state"], False), (subj.CHANGES.name, STAGES["host_state"], False)]


async def test_provision_gives_a_shared_feed_one_consumer_instead_of_its_sinks(bus: Bus) -> None:
    sinks = [STAGES["host_state"], STAGES["findings"]]
    made = await bus.provision([*sinks, STAGES["port_probe"]], feeds=sink_feeds(sinks))
    consumers = {p.name for p in made if p.kind == "consumer"}
    assert consumers == {f"{FACTS}/port_probe", f"{subj.REQUESTS.name}/port_probe",
                         f"{FACTS}/findings+host_state", f"{subj.CHANGES.name}/findings+host_state"}
    info = await bus.js.consumer_info(FACTS, "findings+host_state")
    assert sorted(info.config.filter_subjects or []) == sorted(
        [subj.HOST_SEEN, subj.HOST_PORTS, subj.HOST_ANNOTATED, subj.SWEEP_COMPLETED])


async def test_provision_updates_a_changed_config(bus: Bus) -> None:
    stage = spec("probe_like", Kind.ENRICHER, consumes=(subj.HOST_SEEN,))
    await bus.provision([stage])
    bus.config = msgspec.structs.replace(bus.config, ack_wait_secs=9.0, max_age_days=1.0)
    wider = spec("probe_like", Kind.ENRICHER, consumes=(subj.HOST_SEEN, subj.HOST_PORTS))
    results = {p.name: p for p in await bus.provision([wider])}
    assert results[FACTS].action == "updated" and "max_age" in results[FACTS].detail
    consumer = results[f"{FACTS}/probe_like"]
    assert consumer.action == "updated"
    assert "filter_subjects" in consumer.detail and "ack_wait" in consumer.detail
    info = await bus.js.consumer_info(FACTS, "probe_like")
    assert sorted(info.config.filter_subjects or []) == sorted([subj.HOST_SEEN, subj.HOST_PORTS])
    assert info.config.ack_wait == pytest.approx(9.0)


async def test_publish_fills_a_deterministic_id_and_dedupes(bus: Bus) -> None:
    first, again = seen(1), seen(1)
    ack1 = await bus.publish(first)
    ack2 = await bus.publish(again)
    assert first.id and first.id == again.id
    assert not ack1.duplicate and ack2.duplicate
    assert await subject_count(bus, FACTS, "lanscope.host.seen.>") == 1
    other = seen(2)
    await bus.publish(other)
    assert other.id != first.id


async def test_pipelined_publishes_keep_order_and_dedupe(bus: Bus) -> None:
    events = [seen(i) for i in range(300)]
    acks = await bus.publish_events(events)
    assert [a.seq for a in acks] == list(range(1, 301))          # stored in the order sent
    assert all(e.id for e in events) and not any(a.duplicate for a in acks)
    again = await bus.publish_events([seen(i) for i in range(290, 310)])
    assert [bool(a.duplicate) for a in again] == [True] * 10 + [False] * 10
    stored = await bus.js.get_msg(FACTS, 300)
    assert stored.headers and stored.headers["Nats-Msg-Id"] == events[-1].id
    assert await subject_count(bus, FACTS, "lanscope.host.seen.>") == 310


async def test_pipelined_publish_retries_until_the_stream_exists(bus: Bus) -> None:
    await bus.js.delete_stream(FACTS)
    bus._publish_timeout = 0.3          # a short wait for the missing stream

    async def create_later() -> None:
        await asyncio.sleep(0.5)
        await bus.provision([])
    creating = asyncio.create_task(create_later())
    acks = await bus.publish_events([seen(i) for i in range(5)])
    await creating
    assert sorted(a.seq for a in acks) == [1, 2, 3, 4, 5]
    assert await subject_count(bus, FACTS, "lanscope.host.seen.>") == 5


async def test_puller_prefetches_and_hands_back_what_was_not_taken(bus: Bus) -> None:
    stage = spec("pulled", Kind.SINK, batch_size=8)
    await bus.provision([stage])
    await bus.publish_events([seen(i) for i in range(20)])
    puller = Puller(bus, FACTS, "pulled", prefetch=8, expires_secs=0.3)
    await puller.start()
    # fill_secs: the five may come in more than one read from the socket.
    first = await puller.fetch(5, timeout=5, fill_secs=5)
    assert [m.metadata.sequence.stream for m in first] == [1, 2, 3, 4, 5]
    for msg in first:
        await msg.ack()

    async def buffered() -> bool:
        await puller.fetch(0, timeout=0.05)   # lets it ask for more
        return puller.buffered >= 8
    for _ in range(100):
        if await buffered():
            break
    left = await puller.close()
    assert [m.metadata.sequence.stream for m in left] == list(range(6, 6 + len(left)))
    assert len(left) >= 8
    for msg in left:
        await msg.nak()
    # Handed back: another puller gets them at once, not after ack_wait (5 s here).
    taker = Puller(bus, FACTS, "pulled", prefetch=20, expires_secs=0.3)
    await taker.start()
    again: list[int] = []
    while len(again) < 15:
        msgs = await taker.fetch(20, timeout=2)
        assert msgs, f"only {again} came back"
        again += [m.metadata.sequence.stream for m in msgs]
    assert sorted(again) == list(range(6, 21))
    await taker.close()


async def test_puller_data_messages_skip_the_subscription_queue(bus: Bus) -> None:
    """The read loop hands a pull inbox's data messages straight to the puller, headers
    included; status replies (the 408 of an expired request) still take nats-py's way."""
    assert isinstance(bus.nc._ps, _Parser)      # what the read loop parses with
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


def test_a_directly_delivered_message_is_a_msg_with_headers_parsed_on_first_use() -> None:
    reply = "$JS.ACK.LANSCOPE_FACTS.host_state.2.17.9.1732123456789012345.4"
    block = b"NATS/1.0\r\nNats-Msg-Id: abc\r\n\r\n"
    msg = _Delivered(None, "lanscope.facts.x", reply, b"{}", block, 7)   # type: ignore[arg-type]
    like = Msg(_client=None, subject="lanscope.facts.x", reply=reply, data=b"{}",  # type: ignore[arg-type]
               headers={MSG_ID: "abc"}, _sid=7)
    assert msg._block is block                  # nothing parsed yet
    assert (msg.subject, msg.reply, msg.data, msg.sid, msg.is_acked) == \
        (like.subject, like.reply, like.data, like.sid, like.is_acked)
    assert msg.headers == msg.header == like.headers
    assert msg.metadata == like.metadata
    msg.headers = {"X": "1"}
    assert msg.headers == {"X": "1"}
    assert _Delivered(None, "s", reply, b"", None, 1).headers is None   # type: ignore[arg-type]


def test_header_blocks_parse_into_names_and_values() -> None:
    block = b"NATS/1.0\r\nNats-Msg-Id: abc\r\nX-Two:  spaced value \r\nbad line\r\n\r\n"
    assert _headers(block) == {"Nats-Msg-Id": "abc", "X-Two": "spaced value"}
    # The block of a lanscope message (the id alone) takes a shortcut to the same result.
    assert _headers(b"NATS/1.0\r\nNats-Msg-Id: abc \r\n\r\n") == {"Nats-Msg-Id": "abc"}
    assert _headers(b"NATS/1.0\r\nNats-Msg-Id:abc\r\nX: 1\r\n\r\n") == {"Nats-Msg-Id": "abc", "X": "1"}
    assert _headers(b"NATS/1.0\r\nNats-Msg-Id-2: abc\r\n\r\n") == {"Nats-Msg-Id-2": "abc"}


@pytest.mark.parametrize("key", ["02:00:00:00:00:10", "fe80::1", "198.18.0.10", "a.b*c>d", "=", ""])
def test_kv_keys_are_safe_and_injective(key: str) -> None:
    encoded = kv_key(key)
    assert encoded and all(c.isalnum() or c in "_-=" for c in encoded)
    assert kv_key(key + "x") != encoded


async def test_kv_claims_exclusive_expire_and_release(bus: Bus) -> None:
    a = await bus.claims()
    b = KvClaims(a.kv)
    host = "02:00:00:00:00:10"
    results = await asyncio.gather(*(claims.claim(host, 30) for claims in (a, b, a, b)))
    assert results.count(True) == 1
    assert await a.claim("other", 30)
    assert not await b.claim("other", 30)
    await b.release("other")            # not the owner: no effect
    assert not await b.claim("other", 30)
    await a.release("other")
    assert await b.claim("other", 30)
    # An expired claim (here: a zero TTL) is taken over with a compare-and-set on its revision.
    assert await a.claim("fe80::1", 0)
    assert await b.claim("fe80::1", 30)
    assert not await a.claim("fe80::1", 30)
    when = datetime(2026, 1, 1, tzinfo=UTC)
    assert await a.last_done(host) is None
    await a.mark_done(host, when)
    assert await b.last_done(host) == when


async def test_connect_failure_names_the_server_not_the_secret() -> None:
    config = NatsConfig(url="nats://127.0.0.1:9,nats://127.0.0.1:10", user="lanscope",
                        password=Secret("hunter2-secret"), connect_timeout_secs=0.5)
    with pytest.raises(BusError) as error:
        await Bus.connect(config)
    message = str(error.value)
    assert "nats://127.0.0.1:9" in message and "user lanscope" in message
    assert "hunter2" not in message


def test_servers_split_a_comma_separated_url() -> None:
    config = NatsConfig(url=" nats://n1:4222, nats://n2:4222 ,")
    assert servers(config) == ["nats://n1:4222", "nats://n2:4222"]
