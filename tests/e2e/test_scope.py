"""Issue 20, case 2: an event is not a licence to scan.

`lanscope run --stage port_probe --stage dns_names` runs in the lab (embedded,
closed NATS). A producer's credentials publish sightings of 127.0.0.1 (a TCP
listener waits there on a probed port), of a public address (203.0.113.5) and
of a lab host the scope excludes (nginx, 198.18.0.12, port 80 open). Nothing
may leave: the listener accepts nothing, the scanner's lab interface sends no
packet and the excluded host receives none, and every event is in the DLQ of
both stages with the reason. A sighting in scope afterwards is probed and
named, so the stages were running all along.

Before: port_probe connected to the listener (3 connections) and tried the
public address; dns_names asked the resolver about all three.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lanscope.runtime.auth import ADMIN
from lanscope.runtime.delivery import H_REASON
from schemas import subjects as subj
from tests.e2e.running import Running
from tests.factories import host_seen
from tests.lab import Lab
from tests.runtime.stages import eventually, subject_count

pytestmark = [pytest.mark.lab, pytest.mark.slow]
LISTENER_PORT = 18080
EXCLUDED = "nginx"


class Listener:
    """A TCP listener on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_server(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def packets(lab: Lab, namespace: str | None = None) -> dict[str, tuple[int, int]]:
    """(rx, tx) packets per interface but loopback, of this namespace or ``namespace``."""
    text = (lab.run(namespace, "cat", "/proc/net/dev").stdout if namespace
            else Path("/proc/net/dev").read_text())
    out: dict[str, tuple[int, int]] = {}
    for line in text.splitlines()[2:]:
        name, fields = line.split(":", 1)
        values = fields.split()
        if name.strip() != "lo":
            out[name.strip()] = (int(values[1]), int(values[9]))
    return out


@pytest.fixture
def pipeline(lab: Lab, tmp_path: Path) -> Iterator[Running]:
    config = tmp_path / "config.yaml"
    config.write_text(f"""
data_dir: {tmp_path / "var"}
scope:
  exclude: [{lab.host(EXCLUDED).ip}]
dns:
  servers: [{lab.DNS_IP}]
  timeout_ms: 500
enrichers:
  port_probe: {{tcp: "80,{LISTENER_PORT}", udp: "", scan_type: connect, connect_timeout_ms: 500}}
""")
    running = Running(config, tmp_path / "var", ("port_probe", "dns_names"), tmp_path / "run.log").start()
    try:
        running.wait_serving()
        yield running
    finally:
        running.stop()


async def test_out_of_scope_sightings_send_nothing_and_are_dead_lettered_with_the_reason(
        lab: Lab, pipeline: Running) -> None:
    listener = Listener(LISTENER_PORT)
    producer = await pipeline.connect("arp_sweep")          # what any producer may publish
    admin = await pipeline.connect(ADMIN)
    try:
        async def pulling() -> bool:
            infos = [await admin.js.consumer_info(subj.FACTS.name, name)
                     for name in ("port_probe", "dns_names")]
            return all((info.num_waiting or 0) > 0 for info in infos)
        await eventually(pulling, what="both stages pulling", context=pipeline.tail)
        excluded = lab.host(EXCLUDED)
        before, excluded_before = packets(lab), packets(lab, excluded.ns)
        sightings = [host_seen("127.0.0.1", None), host_seen("203.0.113.5", None),
                     host_seen(excluded.ip, excluded.mac)]
        for event in sightings:
            await producer.publish(event)

        async def dead() -> int:
            return await subject_count(admin, subj.DEAD_LETTERS.name, "lanscope.dlq.>")
        await eventually(lambda: _at_least(dead, 6), timeout=20, what="6 dead letters", context=pipeline.tail)
        await asyncio.sleep(0)
        after, excluded_after = packets(lab), packets(lab, excluded.ns)
        sent = {name: after[name][1] - before[name][1] for name in before}
        received = {name: excluded_after[name][0] - excluded_before[name][0] for name in excluded_before}
        reasons = []
        for seq in range(1, await dead() + 1):
            msg = await admin.js.get_msg(subj.DEAD_LETTERS.name, seq=seq)
            reasons.append((msg.subject.removeprefix("lanscope.dlq."), (msg.headers or {})[H_REASON]))
        print(f"\ncase 2: listener on 127.0.0.1:{LISTENER_PORT} accepted {listener.accepted}; packets sent "
              f"by the scanner on its {len(sent)} lab interfaces: {sum(sent.values())}; received by "
              f"{EXCLUDED}: {sum(received.values())}; {len(reasons)} dead letters")
        for stage, reason in reasons:
            print(f"  {stage}: {reason}")
        assert listener.accepted == 0
        assert sum(sent.values()) == 0 and sum(received.values()) == 0
        for address in ("127.0.0.1", "203.0.113.5", excluded.ip):
            for stage in ("port_probe", "dns_names"):
                assert any(s == stage and reason.startswith(f"unusable: {address} is out of scope")
                           for s, reason in reasons), (stage, address, reasons)

        # The stages were running all along: a sighting in scope is probed and named.
        ssh = lab.host("ssh")
        await producer.publish(host_seen(ssh.ip, ssh.mac))

        async def enriched() -> bool:
            ports = await subject_count(admin, subj.FACTS.name, subj.HOST_PORTS)
            names = await subject_count(admin, subj.FACTS.name, "lanscope.host.annotated.dns")
            return ports == 1 and names == 1
        await eventually(enriched, timeout=30, what="the in-scope host probed and named",
                         context=pipeline.tail)
    finally:
        listener.close()
        await producer.close()
        await admin.close()


async def _at_least(count: object, wanted: int) -> bool:
    return await count() >= wanted  # type: ignore[operator,no-any-return]
