"""The bus on a real nats-server: provisioning, de-duplicated publishing, KV claims."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import msgspec
import pytest

from lanscope.config import NatsConfig, Secret
from lanscope.runtime.bus import Bus, BusError, KvClaims, kv_key, servers
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
