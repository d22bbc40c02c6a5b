"""End to end: `lanscope run` as real processes on the lab, a real nats-server, a real DuckDB file.

Two processes, as a user would split them: one runs the producers, enrichers (presence_check too),
findings and registry; the other runs ``sinks.host_state`` (the DuckDB owner),
so it can be SIGKILLed and restarted on its own. The config shrinks every
schedule and threshold (sweeps every 2 s, checked after 2 missed sweeps and 3 s)
so the whole module finishes in well under a minute.

The tests run in file order against the one pipeline: hosts appear; a stopped
service is a `changed` event with a history row; findings open, resolve when their
service stops and open again, and every host gets a registry entry; an unplugged
host goes and comes back; finally the sink is killed mid-stream and restarted, the producers
stopped, and rows are counted against stream messages. Every lab change is
undone in a ``finally``. Waits poll with deadlines; nothing sleeps.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest

from lanscope.config import NatsConfig
from lanscope.runtime.bus import Bus
from lanscope.runtime.embedded import EmbeddedNats
from schemas import ChangeKind, HostChanged
from schemas import subjects as subj
from tests.e2e.harness import (
    KILLABLE,
    ChangeLog,
    Pipeline,
    history_disagreements,
    lab_config,
    sql,
    started_pipeline,
)
from tests.lab import Lab
from tests.runtime.stages import eventually, subject_count

pytestmark = [pytest.mark.lab, pytest.mark.nats, pytest.mark.slow]
SERVICE_PORTS = "21,22,25,80,1883,3306,5432,6379"
PRODUCERS_AND_ENRICHERS = ("arp_sweep", "ping_sweep", "port_probe", "dns_names", "mac_vendor",
                           "presence_check", "findings", "registry")
UNPLUGGED = "f01"          # a filler host: nothing else in these tests depends on it


def config_text(lab: Lab, data_dir: Path, url: str) -> str:
    return lab_config(lab, data_dir, url, nats=KILLABLE) + f"""
producers:
  arp_sweep: {{interval_secs: 2}}
  ping_sweep: {{interval_secs: 2, tcp_ports: [80], tcp_timeout_ms: 500}}
  neighbours: {{enabled: false}}
  dhcp_leases: {{enabled: false}}
  proxmox_guests: {{enabled: false}}
enrichers:
  port_probe:
    tcp: "{SERVICE_PORTS}"
    udp: ""
    connect_timeout_ms: 500
    banner_timeout_ms: 1000
    reprobe_secs: 2
sinks:
  host_state:
    flush_ms: 300              # batches stay open a while: the kill lands mid-batch
    compact_secs: 0.5          # background compactions all along: the kill may land in one
    presence: {{missed_sweeps: 2, grace_secs: 3}}
"""


@pytest.fixture(scope="module")
def pipeline(lab: Lab, natsd: EmbeddedNats, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with started_pipeline(lab, natsd.start(), tmp_path_factory.mktemp("e2e"),
                          lambda data_dir, url: config_text(lab, data_dir, url),
                          PRODUCERS_AND_ENRICHERS) as started:
        started.sink.start()
        started.main.start()
        yield started


@pytest.fixture
async def bus(pipeline: Pipeline) -> AsyncIterator[Bus]:
    """A connection of the test's own (the shared `bus` fixture would wipe the streams)."""
    async with await Bus.connect(NatsConfig(url=pipeline.url), name="lanscope-e2e") as connected:
        yield connected


@pytest.fixture
async def changes(bus: Bus) -> ChangeLog:
    log = ChangeLog()
    await log.follow(bus)
    return log


async def until(pipeline: Pipeline, condition: Callable[[], Any], *, timeout: float, what: str) -> Any:
    """``eventually``, with the pipeline's logs when it times out."""
    return await eventually(condition, timeout=timeout, what=what, interval=0.05, context=pipeline.logs)


# ------------------------------------------------------------------------------ the tests


async def test_the_lab_appears_with_macs_ports_and_fingerprints(pipeline: Pipeline, bus: Bus) -> None:
    lab = pipeline.lab
    expected = lab.live_hosts(lab.LIVE_24) + lab.live_hosts(lab.OFFLINK)
    services = [h for h in expected if h.services and h.tcp_open]

    async def complete() -> dict[str, dict[str, Any]] | None:
        rows = await sql(bus, "SELECT ip, mac, hostname, open_ports, active FROM hosts")
        by_ip = {r["ip"]: r for r in rows or []}
        if not {h.ip for h in expected} <= set(by_ip):
            return None
        if any(f"tcp/{p}" not in by_ip[h.ip]["open_ports"] for h in services for p in h.tcp_open
               if str(p) in SERVICE_PORTS.split(",")):
            return None
        return by_ip

    hosts = await until(pipeline, complete, timeout=45, what="every live lab host with its open ports")
    for host in expected:
        row = hosts[host.ip]
        assert row["active"] is True
        assert row["mac"] == (host.mac if host.on_link else None), host.name
    assert hosts[lab.host("ssh").ip]["hostname"] == lab.host("ssh").fqdn
    assert lab.DOWN_IP not in hosts

    async def fingerprinted() -> list[dict[str, Any]] | None:
        rows = await sql(bus, "SELECT ip, port, product, version FROM host_ports WHERE state = 'open' "
                              f"AND ip IN ('{lab.host('ssh').ip}', '{lab.host('nginx').ip}')")
        return rows if rows and len(rows) == 2 and all(r["version"] for r in rows) else None

    ports = {r["ip"]: r for r in await until(pipeline, fingerprinted, timeout=20, what="fingerprints")}
    ssh, nginx = ports[lab.host("ssh").ip], ports[lab.host("nginx").ip]
    assert (ssh["port"], ssh["product"]) == (22, "OpenSSH")
    assert ssh["version"] in lab.package_version("openssh")          # 9.2p1 in 1:9.2p1-2+deb12u…
    assert (nginx["port"], nginx["product"]) == (80, "nginx")
    assert nginx["version"] in lab.package_version("nginx")


async def test_a_stopped_service_is_a_changed_event_and_a_history_row(
        pipeline: Pipeline, bus: Bus, changes: ChangeLog) -> None:
    lab = pipeline.lab
    nginx = lab.host("nginx")

    def closed(e: HostChanged) -> bool:
        return any(c.field == "open_ports" and "tcp/80" in (c.old or []) and "tcp/80" not in (c.new or [])
                   for c in e.changes)

    lab.stop_service("nginx")
    try:
        event = await until(pipeline, lambda: changes.find(ChangeKind.CHANGED, nginx.mac, closed),
                            timeout=30, what="a `changed` event for nginx's port 80")
    finally:
        lab.start_service("nginx")
    assert changes.subjects[event.id] == "lanscope.host.changed.changed"
    by_field = {c.field: c for c in event.changes}
    assert by_field["open_ports"].old == ["tcp/80"] and by_field["open_ports"].new == []
    assert by_field["services"].old[0].startswith("tcp/80 http nginx") and by_field["services"].new == []
    assert event.host.ip == nginx.ip and event.host.open_ports == []

    rows = await until(pipeline, lambda: sql(
        bus, f"SELECT old, new FROM history WHERE host_key = '{nginx.mac}' AND field = 'open_ports' "
             "ORDER BY observed_at"), timeout=10, what="open_ports history")
    pairs = [(msgspec.json.decode(r["old"]) if r["old"] else None, msgspec.json.decode(r["new"]))
             for r in rows]
    assert (["tcp/80"], []) in pairs
    # Restarted, it is seen again: the next change puts the port back.
    def reopened(e: HostChanged) -> bool:
        return e.observed_at > event.observed_at and any(
            c.field == "open_ports" and c.new == ["tcp/80"] for c in e.changes)

    await until(pipeline, lambda: changes.find(ChangeKind.CHANGED, nginx.mac, reopened), timeout=30,
                what="nginx's port 80 open again")


async def test_findings_open_and_resolve_and_the_hosts_are_registered(pipeline: Pipeline, bus: Bus) -> None:
    lab = pipeline.lab
    ftp, redis = lab.host("ftp"), lab.host("redis")
    expected = {("ftp-open", ftp.ip, 21), ("redis-no-auth", redis.ip, 6379)}

    async def ftp_finding(state: str) -> bool:
        rows = await sql(bus, f"SELECT state FROM findings WHERE rule = 'ftp-open' AND ip = '{ftp.ip}'")
        return bool(rows) and rows[0]["state"] == state

    async def opened() -> set[tuple[str, str, int]] | None:
        rows = await sql(bus, "SELECT rule, ip, port FROM findings WHERE state = 'opened'")
        found = {(r["rule"], r["ip"], r["port"]) for r in rows or []}
        return found if expected <= found else None

    await until(pipeline, opened, timeout=30, what="ftp-open and redis-no-auth findings opened")
    lab.stop_service("vsftpd")
    try:
        await until(pipeline, lambda: ftp_finding("resolved"), timeout=30,
                    what="ftp-open resolved once vsftpd is stopped")
    finally:
        lab.start_service("vsftpd")
    await until(pipeline, lambda: ftp_finding("opened"), timeout=30, what="ftp-open opened again")

    live = lab.live_hosts(lab.LIVE_24) + lab.live_hosts(lab.OFFLINK)

    async def registered() -> dict[str, dict[str, Any]] | None:
        rows = await sql(bus, "SELECT entry_id, ip, mac, action FROM registry")
        by_ip = {r["ip"]: r for r in rows or []}
        return by_ip if {h.ip for h in live} <= set(by_ip) else None

    entries = await until(pipeline, registered, timeout=30, what="a registry entry for every live host")
    ssh = lab.host("ssh")
    assert entries[ssh.ip]["entry_id"] == ssh.mac and entries[ssh.ip]["mac"] == ssh.mac


async def test_an_unplugged_host_goes_and_comes_back(pipeline: Pipeline, changes: ChangeLog) -> None:
    lab = pipeline.lab
    host = lab.host(UNPLUGGED)
    await until(pipeline, lambda: changes.find(ChangeKind.NEW, host.mac), timeout=30,
                what=f"{UNPLUGGED} known")
    lab.set_link(UNPLUGGED, False)
    try:
        gone = await until(pipeline, lambda: changes.find(ChangeKind.GONE, host.mac), timeout=30,
                           what=f"{UNPLUGGED} gone")
    finally:
        lab.set_link(UNPLUGGED, True)
    assert changes.subjects[gone.id] == "lanscope.host.changed.gone"
    assert gone.host.active is False and gone.evidence and "missed" in gone.evidence
    assert [(c.field, c.old, c.new) for c in gone.changes] == [("active", True, False)]
    back = await until(pipeline, lambda: changes.find(
        ChangeKind.BACK, host.mac, lambda e: e.observed_at > gone.observed_at), timeout=30,
        what=f"{UNPLUGGED} back")
    assert back.host.active is True and back.evidence
    assert ("active", False, True) in [(c.field, c.old, c.new) for c in back.changes]


async def test_the_sink_killed_mid_stream_loses_and_doubles_nothing(
        pipeline: Pipeline, bus: Bus, changes: ChangeLog) -> None:
    facts = subj.FACTS.name

    async def batch_in_flight() -> bool:
        info = await bus.js.consumer_info(facts, "host_state")
        return info.num_ack_pending > 0

    await until(pipeline, batch_in_flight, timeout=20, what="host_state holding a batch")
    pipeline.sink.kill()
    killed_at = await bus.js.consumer_info(facts, "host_state")
    assert killed_at.num_ack_pending > 0 or killed_at.num_pending > 0   # work left behind
    pipeline.sink.start()
    # Let the restarted sink take part in a few sweeps, then stop the producers and drain.
    count = "SELECT count(*) AS n FROM processed_events"
    first = await until(pipeline, lambda: sql(bus, count), timeout=30, what="the sink answering again")

    async def committing() -> bool:
        rows = await sql(bus, count)
        return bool(rows and rows[0]["n"] > first[0]["n"])

    await until(pipeline, committing, timeout=20, what="the restarted sink committing new batches")
    assert pipeline.main.terminate() == 0, pipeline.logs()

    async def drained() -> bool:
        for stream in (facts, subj.CHANGES.name):
            info = await bus.js.consumer_info(stream, "host_state")
            if info.num_pending or info.num_ack_pending:
                return False
        return True

    await until(pipeline, drained, timeout=30, what="host_state caught up with both streams")
    assert pipeline.sink.terminate() == 0, pipeline.logs()

    fact_msgs = (await bus.js.stream_info(facts)).state.messages
    sunk = subj.CHANGES.name
    concluded = sum([await subject_count(bus, sunk, subject) for subject in (subj.FINDING, subj.REGISTRY)])
    changed_msgs = await subject_count(bus, sunk, subj.HOST_CHANGED)
    await until(pipeline, lambda: len(changes.events) >= changed_msgs, timeout=10,
                what="every HostChanged delivered to the test")

    con = duckdb.connect(str(pipeline.db), read_only=True)
    try:
        [(processed,)] = con.execute("SELECT count(*) FROM processed_events").fetchall()
        outbox_ids = {i for (i,) in con.execute(   # its HostChanged (it holds presence checks too)
            "SELECT DISTINCT output_id FROM outbox WHERE payload->>'type' = 'host_changed'").fetchall()}
        [(dup_history,)] = con.execute(
            "SELECT count(*) FROM (SELECT host_key, field, event_id FROM history "
            "GROUP BY ALL HAVING count(*) > 1)").fetchall()
        [(history,)] = con.execute("SELECT count(*) FROM history").fetchall()
        [(journaled,)] = con.execute("SELECT count(*) FROM host_journal").fetchall()
    finally:
        con.close()
    assert journaled == 0          # the clean stop compacted everything the restart replayed
    # Nothing lost: every message host_state consumes was committed exactly once.
    assert processed == fact_msgs + concluded
    # Nothing doubled: one history row per (host, field, input event); every committed
    # HostChanged published once, nothing published that was not committed.
    assert history > 0 and dup_history == 0
    # History is what was published: one row per published field change, with its event's id.
    assert history_disagreements(pipeline.db, changes.events) == []
    ids = [e.id for e in changes.events]
    assert len(ids) == len(set(ids)) == changed_msgs
    assert set(ids) == outbox_ids
    new_per_host = Counter(e.host_key for e in changes.events if e.kind == ChangeKind.NEW)
    assert max(new_per_host.values()) == 1
