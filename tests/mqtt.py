"""pytest plugin: a real Mosquitto broker on loopback, and a test client that collects messages.

The broker (the Debian package the lab uses, /usr/sbin/mosquitto) listens on a
free 127.0.0.1 port, anonymous, without persistence; one per test session. Tests
keep apart by topic prefix. ``Collector`` subscribes (retained messages included)
and keeps the last payload per topic and every payload in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import pytest

MOSQUITTO = "/usr/sbin/mosquitto"


@dataclass(frozen=True)
class Broker:
    host: str
    port: int


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    if not Path(MOSQUITTO).exists() and not shutil.which("mosquitto"):
        pytest.fail("mosquitto is not installed (tests/lab/packages.txt lists it)")
    port = _free_port()
    conf = tmp_path_factory.mktemp("mosquitto") / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n")
    log = conf.with_name("mosquitto.log").open("wb")
    process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            break
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"mosquitto did not start: {conf.with_name('mosquitto.log').read_text()}")
        time.sleep(0.02)   # polling a port that is not open yet: there is nothing to wait on
    try:
        yield Broker("127.0.0.1", port)
    finally:
        process.terminate()
        process.wait(10)
        log.close()


@dataclass
class Collector:
    """What a test client subscribed to ``topics`` has received."""

    last: dict[str, bytes] = field(default_factory=dict)        # topic -> last payload
    retained: dict[str, bool] = field(default_factory=dict)     # topic -> was the last one retained
    messages: list[tuple[str, bytes]] = field(default_factory=list)

    def on(self, topic: str) -> list[bytes]:
        return [payload for t, payload in self.messages if t == topic]


@contextlib.asynccontextmanager
async def collecting(broker: Broker, *topics: str) -> AsyncIterator[Collector]:
    seen = Collector()
    async with aiomqtt.Client(broker.host, broker.port, identifier=f"test-{time.monotonic_ns()}") as client:
        for topic in topics:
            await client.subscribe(topic, qos=1)

        async def listen() -> None:
            async for message in client.messages:
                payload = message.payload
                if not isinstance(payload, bytes):
                    payload = str(payload).encode()
                seen.last[str(message.topic)] = payload
                seen.retained[str(message.topic)] = message.retain
                seen.messages.append((str(message.topic), payload))

        task = asyncio.create_task(listen())
        try:
            yield seen
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task
