"""A hub and a sensor's embedded servers on loopback: copying, least privilege, the site check.

Real nats-servers (the embedded ones, configured by lanscope.runtime.leafnodes)
on 127.0.0.1; events are published at the sensor the way its producers publish.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import nats
import nats.errors
import nats.js.errors
import pytest
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy, StreamConfig

from lanscope.config import Config, NatsConfig, parse
from lanscope.runtime.auth import ADMIN, WATCH, WEB, client_config
from lanscope.runtime.bus import Bus, BusError
from lanscope.runtime.delivery import decode_event
from lanscope.runtime.embedded import EmbeddedNats, free_port
from lanscope.runtime.leafnodes import public_key, sensor_seed, server_role, site_permissions
from lanscope.runtime.observe import Follower, last_sweeps, pipeline_health
from schemas import (
    ChangeKind,
    Finding,
    FindingState,
    HostChanged,
    HostRecord,
    ProbeRequested,
    Severity,
    SweepCompleted,
    encode,
    site_key,
    subject_for,
)
from schemas import subjects as subj
from tests.factories import at, host_seen

pytestmark = pytest.mark.timeout(60)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("not within the timeout")
        await asyncio.sleep(0.1)


def sensor_config(tmp: Path, site: str, leaf_port: int) -> Config:
    return parse({"data_dir": str(tmp / f"sensor-{site}"), "site": site, "role": "sensor",
                  "sensor": {"hub": [f"nats-leaf://127.0.0.1:{leaf_port}"]}})


@dataclass
class Sites:
    hub: Bus
    paris: Bus
    servers: dict[str, EmbeddedNats]
    tmp: Path
    leaf_port: int

    def start_sensor(self, site: str, config: Config | None = None) -> EmbeddedNats:
        config = config or sensor_config(self.tmp, site, self.leaf_port)
        server = EmbeddedNats.from_config(config.nats, config.data_dir, role=server_role(config))
        server.start()
        self.servers[site] = server
        return server


async def connect_as(config: Config, server: EmbeddedNats, role: str) -> Bus:
    """A client of ``server`` as a local command of ``config`` connects: as ``role``, with its
    credentials from the data_dir (lanscope.runtime.auth)."""
    bus = await Bus.connect(client_config(config.nats, config.data_dir, role), url=server.url, role=role)
    bus.layout = config.layout()
    return bus


@pytest.fixture
def leaf_port() -> int:
    return free_port("127.0.0.1")


@pytest.fixture
def hub_config(tmp_path: Path, leaf_port: int) -> Config:
    key = public_key(sensor_seed(sensor_config(tmp_path, "paris", leaf_port)))
    berlin = public_key(sensor_seed(sensor_config(tmp_path, "berlin", leaf_port)))
    return parse({"data_dir": str(tmp_path / "hub"), "role": "hub",
                  "hub": {"leaf_host": "127.0.0.1", "leaf_port": leaf_port,
                          "sites": {"paris": {"nkey": key}, "berlin": {"nkey": berlin}}}})


@pytest.fixture
async def sites(tmp_path: Path, hub_config: Config, leaf_port: int) -> AsyncIterator[Sites]:
    hub_server = EmbeddedNats.from_config(hub_config.nats, hub_config.data_dir, role=server_role(hub_config))
    hub_server.start()
    servers = {"hub": hub_server}
    made = Sites(None, None, servers, tmp_path, leaf_port)  # type: ignore[arg-type]
    try:
        paris_server = made.start_sensor("paris")
        made.hub = await connect_as(hub_config, hub_server, ADMIN)
        await made.hub.provision([])
        made.paris = await connect_as(sensor_config(tmp_path, "paris", leaf_port), paris_server, ADMIN)
        await made.paris.provision([])
        yield made
    finally:
        for bus in (made.hub, made.paris):
            if bus is not None:
                await bus.close()
        for server in servers.values():
            server.stop()


async def stored(bus: Bus, stream: str, subject: str) -> int:
    info = await bus.js.stream_info(stream, subjects_filter=subject)
    return sum((info.state.subjects or {}).values())


async def test_a_sensors_events_reach_the_hub_and_probe_requests_reach_the_sensor(sites: Sites) -> None:
    seen = [msgspec.structs.replace(host_seen("10.20.0.5", t=i), site="paris") for i in range(5)]
    await sites.paris.publish_events(seen)
    assert await stored(sites.paris, "LANSCOPE_FACTS-paris", ">") == 5

    async def copied() -> bool:
        return await stored(sites.hub, subj.FACTS.name, "lanscope.paris.host.seen.>") == 5
    await eventually(copied)
    # The dashboard's pipeline health says how far each site's copy got.
    copies = {(c.stream, c.site): c for c in (await pipeline_health(sites.hub)).sites}
    assert set(copies) == {(s, site) for s in (subj.FACTS.name, subj.DEAD_LETTERS.name)
                           for site in ("paris", "berlin")}
    paris = copies[subj.FACTS.name, "paris"]
    assert paris.lag == 0 and paris.active_secs is not None and paris.active_secs < 30
    assert copies[subj.FACTS.name, "berlin"].active_secs is None        # its sensor never came
    # The hub asks paris's sensor to probe a host; berlin's request stays at the hub.
    for site in ("paris", "berlin"):
        await sites.hub.publish(ProbeRequested(host_key="10.20.0.5", observed_at=at(0), source="web",
                                               ip="10.20.0.5", site=site))

    async def requested() -> bool:
        return await stored(sites.paris, "LANSCOPE_REQUESTS-paris", ">") == 1
    await eventually(requested)
    assert await stored(sites.paris, "LANSCOPE_REQUESTS-paris", "lanscope.paris.host.probe.requested") == 1


async def test_a_sensor_cannot_publish_another_sites_subjects(sites: Sites) -> None:
    berlin = msgspec.structs.replace(host_seen("10.20.0.5"), site="berlin")
    # At the sensor: no stream of its own takes another site's subject, and its leaf node may
    # not carry it to the hub: refused (no stream answers).
    with pytest.raises((nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError,
                        nats.errors.TimeoutError)):
        await sites.paris.js.publish(subject_for(berlin), encode(berlin), timeout=2)
    # A plain message crosses to the hub neither: only the deliveries of its streams do (a
    # plain message of its own site goes into its stream, and so to the hub, once).
    got: list[str] = []

    async def record(msg: Msg) -> None:
        got.append(msg.subject)
    watcher = await sites.hub.nc.subscribe("lanscope.>", cb=record)
    await sites.hub.nc.flush()
    paris = msgspec.structs.replace(host_seen("10.20.0.6"), site="paris")
    for event in (berlin, paris):
        await sites.paris.nc.publish(subject_for(event), encode(event))
    await sites.paris.nc.flush()
    probe = msgspec.structs.replace(host_seen("10.20.0.7"), site="paris")   # a marker that does cross
    await sites.paris.publish(probe)

    async def marker_arrived() -> bool:
        return await stored(sites.hub, subj.FACTS.name, "lanscope.paris.host.seen.>") == 2
    await eventually(marker_arrived)
    await watcher.unsubscribe()
    assert "lanscope.berlin.host.seen.arp" not in got
    assert await stored(sites.hub, subj.FACTS.name, "lanscope.berlin.>") == 0


async def test_a_rogue_sensor_that_stores_another_sites_events_is_refused_at_the_hub(sites: Sites) -> None:
    # A sensor server under someone else's control: its paris stream also holds berlin's subjects.
    await sites.paris.js.update_stream(StreamConfig(
        name="LANSCOPE_FACTS-paris",
        subjects=["lanscope.paris.host.seen.>", "lanscope.paris.sweep.completed.>",
                  "lanscope.paris.host.ports", "lanscope.berlin.host.seen.>"]))
    forged = msgspec.structs.replace(host_seen("10.20.0.5", "02:00:00:00:00:66"), site="berlin")
    honest = msgspec.structs.replace(host_seen("10.20.0.5"), site="paris")
    await sites.paris.publish_events([forged, honest])

    async def copied() -> bool:
        return await stored(sites.hub, subj.FACTS.name, ">") == 2
    await eventually(copied)
    # NATS copied both (the subject rides inside the delivery); the hub's decoding refuses the
    # forged one for every stage, so no berlin host comes from paris's sensor.
    sub = await sites.hub.js.pull_subscribe("", durable="check", stream=subj.FACTS.name,
                                            config=ConsumerConfig(filter_subjects=list(subj.FACTS.subjects)))
    verdicts = {}
    for msg in await sub.fetch(2, timeout=5):
        verdicts[msg.subject] = decode_event(msg, 1, 5)
    assert isinstance(verdicts["lanscope.paris.host.seen.arp"], msgspec.Struct)
    refusal = verdicts["lanscope.berlin.host.seen.arp"]
    assert isinstance(refusal, str) and "copied from the sensor of site 'paris'" in refusal


async def test_a_leaf_without_its_sites_key_is_refused(sites: Sites, tmp_path: Path) -> None:
    # A sensor whose key the hub does not list (another seed file) never gets its events in.
    stranger = parse({"data_dir": str(tmp_path / "stranger"), "site": "oslo", "role": "sensor",
                      "sensor": {"hub": [f"nats-leaf://127.0.0.1:{sites.leaf_port}"]}})
    server = sites.start_sensor("oslo", stranger)
    log = server.log_file

    def refused() -> bool:
        return "Authorization Violation" in log.read_text(errors="replace") or \
            "authorization violation" in log.read_text(errors="replace").lower()
    deadline = time.monotonic() + 15
    while not refused():
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        await asyncio.sleep(0.1)


def test_a_sites_permissions_name_only_that_site() -> None:
    perms = site_permissions("paris", "lanscope-hub")
    subjects = perms["publish"]["allow"] + perms["subscribe"]["allow"]
    assert not any("berlin" in s for s in subjects)
    assert "lanscope.paris.sourced.>" in perms["publish"]["allow"]
    assert not any(s.startswith("lanscope.paris.host") for s in perms["publish"]["allow"])
    assert "$JS.lanscope-paris.API.CONSUMER.CREATE.LANSCOPE_FACTS-paris" in perms["subscribe"]["allow"]




# ---- the closed bus (issue 20) on a hub and a sensor: no anonymous clients, roles per site ----


async def test_a_client_without_credentials_is_refused_by_the_hub_and_the_sensor(sites: Sites) -> None:
    """A hub holds site users in its authorization, and neither it nor a sensor has a user for
    clients without credentials (no no_auth_user): a plain connect is refused by both, and so
    is a leaf node that presents no key."""
    for name in ("hub", "paris"):
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await nats.connect(sites.servers[name].url, allow_reconnect=False, max_reconnect_attempts=0,
                               connect_timeout=2)
        with pytest.raises(BusError, match="Authorization Violation"):
            await Bus.connect(NatsConfig(connect_timeout_secs=2), url=sites.servers[name].url)
    bare = EmbeddedNats(sites.tmp / "bare", extra_config=(
        f'leafnodes {{ remotes: [{{ urls: ["nats-leaf://127.0.0.1:{sites.leaf_port}"] }}] }}'))
    bare.start()
    sites.servers["bare"] = bare
    await eventually(lambda: _said(bare, "authorization violation"))


async def _said(server: EmbeddedNats, text: str) -> bool:
    return text in server.log_file.read_text(errors="replace").lower()


async def test_a_sensors_stage_role_cannot_publish_another_sites_subjects(
        sites: Sites, caplog: pytest.LogCaptureFixture) -> None:
    paris = sensor_config(sites.tmp, "paris", sites.leaf_port)
    producer = await connect_as(paris, sites.servers["paris"], "arp_sweep")
    try:
        with caplog.at_level(logging.WARNING, logger="lanscope.runtime.bus"):
            for site in ("berlin", ""):            # another site's subject; the default site's
                other = msgspec.structs.replace(host_seen("10.20.0.5"), site=site)
                with pytest.raises(nats.errors.TimeoutError):   # dropped by the server: no PubAck
                    await producer.js.publish(subject_for(other), encode(other), timeout=1.0)
        refused = "\n".join(r.getMessage() for r in caplog.records)
        assert 'permissions violation for publish to "lanscope.berlin.host.seen.arp"' in refused
        assert 'permissions violation for publish to "lanscope.host.seen.arp"' in refused
        # Its own site's sighting is what it is for: stored at the sensor, copied to the hub.
        ack = await producer.publish(msgspec.structs.replace(host_seen("10.20.0.5"), site="paris"))
        assert ack.stream == "LANSCOPE_FACTS-paris"

        async def copied() -> bool:
            return await stored(sites.hub, subj.FACTS.name, "lanscope.paris.host.seen.>") == 1
        await eventually(copied)
        assert await stored(sites.hub, subj.FACTS.name, "lanscope.berlin.>") == 0
        assert await stored(sites.hub, subj.FACTS.name, "lanscope.host.>") == 0
    finally:
        await producer.close()


async def test_watch_and_web_roles_see_the_named_sites_changes(sites: Sites, hub_config: Config) -> None:
    """At the hub, `lanscope watch` (its subscriptions) and the dashboard (its Follower, its
    pipeline health and last sweeps, its probe requests) work with their own roles for every
    site's events."""
    hub = sites.servers["hub"]
    watcher = await connect_as(hub_config, hub, WATCH)
    web = await connect_as(hub_config, hub, WEB)
    owner = await connect_as(hub_config, hub, "host_state")
    findings = await connect_as(hub_config, hub, "findings")
    watched: list[str] = []
    followed: list[str] = []

    async def saw(msg: Msg) -> None:
        watched.append(msg.subject)

    async def follow(event: object, subject: str) -> None:
        followed.append(subject)
    follower = Follower(web, subj.CHANGES.name, list(subj.everywhere(subj.HOST_CHANGED, subj.FINDING)),
                        follow)
    try:
        for subject in subj.everywhere(subj.HOST_CHANGED, subj.FINDING):   # as `lanscope watch`
            await watcher.js.subscribe(subject, stream=subj.CHANGES.name, cb=saw, ordered_consumer=True,
                                       deliver_policy=DeliverPolicy.NEW)
        await follower.start()
        for site in ("paris", "berlin", ""):
            key = site_key(site, "02:00:00:00:00:10")
            await owner.publish(HostChanged(host_key=key, observed_at=at(0), source="host_state", site=site,
                                            kind=ChangeKind.NEW, host=HostRecord(host_key=key, site=site)))
            await findings.publish(Finding(
                host_key=key, observed_at=at(0), source="findings", site=site, finding_id=f"f-{site}",
                state=FindingState.OPENED, rule="telnet", severity=Severity.HIGH, category="service",
                title="telnet open", first_seen=at(0), last_seen=at(0)))
        wanted = {"lanscope.paris.host.changed.new", "lanscope.berlin.host.changed.new",
                  "lanscope.host.changed.new", "lanscope.paris.finding.opened",
                  "lanscope.berlin.finding.opened", "lanscope.finding.opened"}
        await eventually(lambda: _all_of(wanted, watched))
        await eventually(lambda: _all_of(wanted, followed))
        # The dashboard's other asks: each site's copy, and a probe request for a site's host.
        await sites.paris.publish(SweepCompleted(host_key="", observed_at=at(1), source="arp",
                                                 site="paris", hosts_found=3))
        await eventually(lambda: _has_sweep(web))
        health = await pipeline_health(web)
        assert {(c.stream, c.site) for c in health.sites} >= {(subj.FACTS.name, "paris")}
        await web.publish(ProbeRequested(host_key="paris/10.20.0.5", observed_at=at(2), source="web",
                                         ip="10.20.0.5", site="paris"))

        async def requested() -> bool:
            return await stored(sites.paris, "LANSCOPE_REQUESTS-paris", ">") == 1
        await eventually(requested)
    finally:
        await follower.close()
        for bus in (watcher, web, owner, findings):
            await bus.close()


async def _all_of(wanted: set[str], got: list[str]) -> bool:
    return wanted <= set(got)


async def _has_sweep(web: Bus) -> bool:
    return any(s.source == "arp" for s in await last_sweeps(web))
