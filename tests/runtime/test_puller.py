"""The puller on a real nats-server: read-ahead, hand-back, and no read-ahead for enrichers."""

from __future__ import annotations

import pytest

from lanscope.runtime.bus import Bus
from lanscope.runtime.puller import Puller
from lanscope.runtime.topology import Kind
from schemas import subjects as subj
from tests.runtime.stages import seen, spec

pytestmark = pytest.mark.nats

FACTS = subj.FACTS.name


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


async def test_without_read_ahead_only_what_fetch_asked_for_is_delivered(bus: Bus) -> None:
    """An enricher's puller: a message never waits in the client for a handler slot."""
    stage = spec("exact", Kind.ENRICHER, batch_size=16)
    await bus.provision([stage])
    await bus.publish_events([seen(i) for i in range(20)])
    puller = Puller(bus, FACTS, "exact", prefetch=16, expires_secs=0.3, ahead=False)
    await puller.start()
    taken = []
    for limit in (3, 2, 4):
        msgs = await puller.fetch(limit, timeout=5, fill_secs=5)
        assert len(msgs) == limit
        taken += msgs
        info = await bus.js.consumer_info(FACTS, "exact")
        assert info.delivered.consumer_seq == len(taken) and puller.buffered == 0
    await bus.nc.ack_all(taken)
    assert await puller.close() == []
    assert [m.metadata.sequence.stream for m in taken] == list(range(1, 10))
