"""Claims in a NATS KV bucket, shared by every replica (on a real nats-server)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from lanscope.runtime.bus import Bus
from lanscope.runtime.claims import KvClaims, kv_key

pytestmark = pytest.mark.nats


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
