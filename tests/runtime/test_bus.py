"""The bus on a real nats-server: provisioning and de-duplicated publishing."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from lanscope.config import NatsConfig, Secret
from lanscope.runtime.bus import Bus, BusError, servers
from lanscope.runtime.topology import STAGES, Kind, sink_feeds
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


async def test_provision_gives_a_shared_feed_one_consumer_instead_of_its_sinks(bus: Bus) -> None:
    sinks = [STAGES["host_state"], STAGES["findings"]]
    made = await bus.provision([*sinks, STAGES["port_probe"]], feeds=sink_feeds(sinks))
    consumers = {p.name for p in made if p.kind == "consumer"}
    assert consumers == {f"{FACTS}/port_probe", f"{subj.REQUESTS.name}/port_probe",
                         f"{FACTS}/findings+host_state", f"{subj.CHANGES.name}/findings+host_state"}
    info = await bus.js.consumer_info(FACTS, "findings+host_state")
    assert sorted(info.config.filter_subjects or []) == sorted(
        subj.everywhere(subj.HOST_SEEN, subj.HOST_PORTS, subj.HOST_ANNOTATED, subj.SWEEP_COMPLETED,
                        subj.HOST_UNREACHABLE))


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
