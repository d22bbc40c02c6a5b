"""Soak: the real pipeline on a quiet lab reports what happened and nothing else.

`lanscope run` as two processes (producers, enrichers with presence_check, findings
and registry; and sinks.host_state, so it can be SIGKILLed) with short schedules:
an ARP sweep every 2 s, ICMP sweep and neighbour table every 3 s (so the ARP sweep's
"reply" and the neighbour table's "REACHABLE" land in different batches, as at the
default schedules), a direct check after 2 missed sweeps and 3 s. Once the lab is
known and probed, nothing on it changes but one host, unplugged and plugged back in,
and the sink is killed mid-stream and restarted.
Asserted, on every HostChanged a subscriber received:

- no `changed` event: nothing changed but presence (`gone`/`back`), and no event
  without a change or with a change to the same value (issue 18 measured 317
  `changed` events in 6 quiet minutes, arp_state flipping between sources);
- no `gone` of a host that stayed plugged in, the scanner's own address never gone;
- exactly one `gone` and one `back` for the unplugged host, the gone naming what
  the direct check tried;
- the history table holds exactly one row per published change, with its event's
  id, across the kill -9 and restart.

About two and a half minutes. Waits poll with deadlines; the quiet minute is a
wait for nothing to happen, so it is timed.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from lanscope.config import NatsConfig
from lanscope.runtime.bus import Bus
from lanscope.runtime.embedded import EmbeddedNats
from schemas import ChangeKind
from schemas import subjects as subj
from tests.e2e.harness import (
    KILLABLE,
    ChangeLog,
    Outage,
    Pipeline,
    history_disagreements,
    judge,
    lab_config,
    sql,
    started_pipeline,
)
from tests.lab import Lab
from tests.runtime.stages import eventually

pytestmark = [pytest.mark.lab, pytest.mark.nats, pytest.mark.slow]
MAIN = ("arp_sweep", "ping_sweep", "neighbours", "port_probe", "dns_names", "mac_vendor", "presence_check",
        "findings", "registry")
UNPLUGGED = "f03"
QUIET_SECS = 45
TCP_PORTS = (21, 22, 25, 80, 1883, 3306, 5432, 6379)


def config_text(lab: Lab, data_dir: Path, url: str) -> str:
    return lab_config(lab, data_dir, url, nats=KILLABLE) + f"""
producers:
  arp_sweep: {{interval_secs: 2}}
  ping_sweep: {{interval_secs: 3, tcp_ports: [80], tcp_timeout_ms: 500}}
  neighbours: {{interval_secs: 3}}
  dhcp_leases: {{enabled: false}}
  proxmox_guests: {{enabled: false}}
enrichers:
  port_probe:
    tcp: "{",".join(map(str, TCP_PORTS))}"
    udp: ""
    connect_timeout_ms: 500
    banner_timeout_ms: 1000
    reprobe_secs: 20
sinks:
  host_state:
    flush_ms: 300
    compact_secs: 0.5          # background compactions all along: the kill may land in one
    presence: {{missed_sweeps: 2, grace_secs: 3, recheck_secs: 5}}
"""


@pytest.fixture(scope="module")
def soak(lab: Lab, natsd: EmbeddedNats, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with started_pipeline(lab, natsd.start(), tmp_path_factory.mktemp("soak"),
                          lambda data_dir, url: config_text(lab, data_dir, url), MAIN) as prepared:
        yield prepared


@pytest.fixture
async def bus(soak: Pipeline) -> AsyncIterator[Bus]:
    async with await Bus.connect(NatsConfig(url=soak.url), name="lanscope-soak") as connected:
        yield connected


@pytest.mark.timeout(300)
async def test_a_quiet_lab_reports_only_the_host_that_was_unplugged(soak: Pipeline, bus: Bus) -> None:
    lab = soak.lab
    log = ChangeLog()
    await log.follow(bus)
    soak.sink.start()
    soak.main.start()

    async def until(condition: Any, timeout: float, what: str) -> Any:
        return await eventually(condition, timeout=timeout, what=what, interval=0.1, context=soak.logs)

    live = lab.live_hosts(lab.LIVE_24) + lab.live_hosts(lab.OFFLINK)
    keys = {(h.mac if h.on_link else h.ip) for h in live} | {lab.SCANNER_IP}
    await until(lambda: keys <= {e.host_key for e in log.events if e.kind is ChangeKind.NEW}, 45,
                "every live host and the scanner known")
    probed = [h for h in live if set(h.tcp_open) & set(TCP_PORTS)]

    async def ports_known() -> bool:
        rows = await sql(bus, "SELECT ip FROM hosts WHERE len(open_ports) > 0")
        return {h.ip for h in probed} <= {r["ip"] for r in rows or []}

    await until(ports_known, 45, "the service hosts' open ports")
    await asyncio.sleep(5)                   # names and vendors of the last probed hosts
    warm_at = time.time()

    # A quiet LAN: nothing to report.
    await asyncio.sleep(QUIET_SECS)
    quiet = judge(log, [], warm_at=warm_at, own_keys={lab.SCANNER_IP})
    assert (quiet.noise, quiet.empty, quiet.false_gone, quiet.own_gone, quiet.new_after_warmup) == (
        [], [], [], [], []), quiet.line()

    # One host unplugged: exactly one gone, once the direct check failed; one back.
    host = lab.host(UNPLUGGED)
    outage = Outage(UNPLUGGED, host.mac, time.time())
    lab.set_link(UNPLUGGED, False)
    try:
        gone = await until(lambda: log.find(ChangeKind.GONE, host.mac), 40, f"{UNPLUGGED} gone")
        await asyncio.sleep(4)               # two more sweeps: no second gone
    finally:
        lab.set_link(UNPLUGGED, True)
        outage.up_at = time.time()
    assert gone.evidence and gone.evidence.startswith(f"no answer to arp {host.ip} on br0 to {host.mac}")
    assert re.search(r"; missed \d+ sweeps covering ", gone.evidence), gone.evidence
    await until(lambda: log.find(ChangeKind.BACK, host.mac), 30, f"{UNPLUGGED} back")

    # The sink killed mid-stream (kill -9) and restarted, then a few more quiet sweeps.
    async def batch_in_flight() -> bool:
        info = await bus.js.consumer_info(subj.FACTS.name, "host_state")
        return info.num_ack_pending > 0

    await until(batch_in_flight, 20, "host_state holding a batch")
    soak.sink.kill()
    soak.sink.start()
    committed = "SELECT count(*) AS n FROM processed_events"
    first = await until(lambda: sql(bus, committed), 30, "the restarted sink answering")

    async def moving() -> bool:
        rows = await sql(bus, committed)
        return bool(rows and rows[0]["n"] > first[0]["n"] + 200)

    await until(moving, 30, "the restarted sink committing new sweeps")
    assert soak.main.terminate() == 0, soak.logs()

    async def drained() -> bool:
        for stream in (subj.FACTS.name, subj.CHANGES.name):
            info = await bus.js.consumer_info(stream, "host_state")
            if info.num_pending or info.num_ack_pending:
                return False
        return True

    await until(drained, 30, "host_state caught up")
    assert soak.sink.terminate() == 0, soak.logs()
    changed = await bus.js.stream_info(subj.CHANGES.name, subjects_filter=subj.HOST_CHANGED)
    published = sum((changed.state.subjects or {}).values())
    await until(lambda: len(log.received) >= published, 10, "every HostChanged received")

    report = judge(log, [outage], warm_at=warm_at, own_keys={lab.SCANNER_IP})
    assert (report.noise, report.empty, report.false_gone, report.false_back, report.own_gone,
            report.new_after_warmup, report.missed, report.repeated) == (
        [], [], [], [], [], [], [], []), report.line()
    assert len(report.gone_delays) == len(report.back_delays) == 1
    assert history_disagreements(soak.db, log.events) == []
    scanner = [e for e in log.events if e.host_key == lab.SCANNER_IP]
    assert [e.kind for e in scanner] == [ChangeKind.NEW] and scanner[0].host.active
