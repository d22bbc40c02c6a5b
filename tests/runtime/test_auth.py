"""Connecting with user/password, a token, and mutual TLS to a real nats-server; the embedded
server closed by default, each role allowed its job only (issue 20, case 1)."""

from __future__ import annotations

import asyncio
import logging
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import nats
import nats.errors
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from lanscope.config import NatsConfig, Secret, TlsConfig
from lanscope.errors import UnusableEvent
from lanscope.runtime.auth import (
    ADMIN,
    PIPELINE,
    QUERY,
    WATCH,
    WEB,
    client_config,
    role_for,
    roles,
    stage_role,
)
from lanscope.runtime.bus import Bus, BusError
from lanscope.runtime.embedded import EmbeddedNats
from lanscope.runtime.layout import Layout
from lanscope.runtime.runner import Runner, RunnerOptions
from lanscope.runtime.topology import STAGES
from schemas import STREAMS, encode, subject_for
from schemas import subjects as subj
from sinks.host_state import Config as HostStateConfig
from sinks.host_state import HostState
from tests.factories import at, host_seen
from tests.runtime.stages import eventually, subject_count

pytestmark = pytest.mark.nats

PASSWORD = "s3cret-Pa55"


def _openssl(*argv: str, cwd: Path) -> None:
    subprocess.run(["openssl", *argv], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    d = Path(tmp_path_factory.mktemp("pki"))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
             "-subj", "/CN=lanscope test CA", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
                      ("client", "extendedKeyUsage=clientAuth\n")):
        (d / f"{name}.ext").write_text(ext)
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext", cwd=d)
    return d


def _server(tmp_path: Path, extra: str) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path / "store", extra_config=extra)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tls_server(tmp_path: Path, pki: Path) -> Iterator[EmbeddedNats]:
    yield from _server(tmp_path, f"""
authorization {{ user: lanscope, password: "{PASSWORD}" }}
tls {{ cert_file: "{pki}/server.pem", key_file: "{pki}/server.key", ca_file: "{pki}/ca.pem", verify: true }}
""")


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    yield from _server(tmp_path, 'authorization { token: "t0ken-value" }')


async def test_user_password_over_mutual_tls(tls_server: EmbeddedNats, pki: Path) -> None:
    config = NatsConfig(url=f"tls://127.0.0.1:{tls_server.port}", user="lanscope", password=Secret(PASSWORD),
                        tls=TlsConfig(ca_file=str(pki / "ca.pem"), cert_file=str(pki / "client.pem"),
                                      key_file=str(pki / "client.key")))
    async with await Bus.connect(config) as bus:
        await bus.provision([])
        assert (await bus.js.account_info()).streams == len(STREAMS)


async def test_a_wrong_password_fails_without_showing_it(tls_server: EmbeddedNats, pki: Path) -> None:
    config = NatsConfig(url=f"tls://127.0.0.1:{tls_server.port}", user="lanscope",
                        password=Secret("not-" + PASSWORD), connect_timeout_secs=2,
                        tls=TlsConfig(ca_file=str(pki / "ca.pem"), cert_file=str(pki / "client.pem"),
                                      key_file=str(pki / "client.key")))
    with pytest.raises(BusError) as error:
        await Bus.connect(config)
    assert "user lanscope" in str(error.value) and PASSWORD not in str(error.value)


async def test_tls_without_the_ca_is_refused(tls_server: EmbeddedNats, pki: Path) -> None:
    config = NatsConfig(url=f"tls://127.0.0.1:{tls_server.port}", user="lanscope", password=Secret(PASSWORD),
                        connect_timeout_secs=2, tls=TlsConfig(cert_file=str(pki / "client.pem"),
                                                              key_file=str(pki / "client.key")))
    with pytest.raises(BusError, match=r"CERTIFICATE_VERIFY_FAILED|SSL"):
        await Bus.connect(config)


async def test_token(token_server: EmbeddedNats) -> None:
    config = NatsConfig(url=token_server.url, token=Secret("t0ken-value"))
    async with await Bus.connect(config) as bus:
        assert bus.nc.is_connected


# ------------------------------------------------- issue 20, case 1: a closed bus by default

@pytest.fixture
def closed(tmp_path: Path) -> Iterator[tuple[EmbeddedNats, Path]]:
    """The embedded server as `lanscope run` starts it: credentials generated in data_dir."""
    data_dir = tmp_path / "var"
    server = EmbeddedNats.from_config(NatsConfig(), data_dir)
    server.start()
    try:
        yield server, data_dir
    finally:
        server.stop()


async def _as(server: EmbeddedNats, data_dir: Path, role: str) -> Bus:
    config = client_config(NatsConfig(connect_timeout_secs=2), data_dir, role)
    return await Bus.connect(config, url=server.url, name=f"test-{role}", role=role)


async def test_a_client_without_credentials_is_refused(closed: tuple[EmbeddedNats, Path]) -> None:
    server, _ = closed
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(server.url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2)
    with pytest.raises(BusError, match="Authorization Violation"):
        await Bus.connect(NatsConfig(connect_timeout_secs=2), url=server.url)
    print("\ncase 1: a plain nats-py connect to the embedded server: Authorization Violation")


async def test_each_role_is_refused_what_is_not_its_job(closed: tuple[EmbeddedNats, Path],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    server, data_dir = closed
    admin = await _as(server, data_dir, ADMIN)
    query = await _as(server, data_dir, QUERY)
    producer = await _as(server, data_dir, "arp_sweep")
    try:
        await admin.provision(STAGES.values())
        event = host_seen()
        with caplog.at_level(logging.WARNING, logger="lanscope.runtime.bus"):
            # A query client cannot publish a sighting: the server drops it, no PubAck comes.
            with pytest.raises(nats.errors.TimeoutError):
                await query.js.publish(subject_for(event), encode(event), timeout=1.0)
            # A producer cannot ask the DuckDB owner anything.
            with pytest.raises(nats.errors.Error):
                await producer.nc.request(subj.QUERY, b'{"sql": "SELECT 1"}', timeout=1.0)
            # Nor read another role's replies, nor the stream through a consumer of its own.
            with pytest.raises(nats.errors.Error):
                await producer.js.add_consumer(subj.FACTS.name, ConsumerConfig(durable_name="spy"), timeout=1)
        assert (await admin.js.stream_info(subj.FACTS.name)).state.messages == 0
        refused = "\n".join(r.getMessage() for r in caplog.records)
        assert 'nkey of role query): permissions violation for publish to "lanscope.host.seen.arp"' in refused
        assert 'nkey of role arp_sweep): permissions violation for publish to "lanscope.query"' in refused
        # What a producer is for, it may do.
        ack = await producer.publish(event)
        assert ack.stream == subj.FACTS.name and ack.seq == 1
        print("\ncase 1: query role publishing host_seen: refused; producer requesting lanscope.query: "
              "refused; producer publishing host_seen: stored")
    finally:
        for bus in (admin, query, producer):
            await bus.close()


async def test_every_role_can_do_its_job_with_its_own_rights(closed: tuple[EmbeddedNats, Path],
                                                             tmp_path: Path) -> None:
    """One stage per role, as `lanscope run --stage X` runs them: a producer's sightings reach
    host_state (consumer, acks, outputs), whose changes a watcher sees and which answers a
    query; port_probe's role uses the claims bucket; mac_vendor's dead-letters."""
    server, data_dir = closed
    admin = await _as(server, data_dir, ADMIN)
    await admin.provision(STAGES.values())
    await admin.claims()
    buses = {role: await _as(server, data_dir, role)
             for role in ("arp_sweep", "host_state", "mac_vendor", "port_probe", QUERY, WATCH)}
    changes: list[bytes] = []
    try:
        watcher = buses[WATCH]

        async def saw(msg: Any) -> None:
            changes.append(msg.data)
        await watcher.js.subscribe(subj.HOST_CHANGED, stream=subj.CHANGES.name, cb=saw,
                                   ordered_consumer=True, deliver_policy=DeliverPolicy.NEW)
        claims = await buses["port_probe"].claims()
        assert await claims.claim("port_probe.198.18.0.10", 30)
        await claims.mark_done("port_probe.198.18.0.10", at(0))
        runner = Runner(buses["host_state"], RunnerOptions(fetch_timeout_secs=0.2))
        sink = HostState(HostStateConfig(path=str(tmp_path / "lanscope.duckdb")), clock=lambda: at(1))
        runner.add(STAGES["host_state"], sink, flush_ms=50)
        vendor_runner = Runner(buses["mac_vendor"], RunnerOptions(fetch_timeout_secs=0.2))
        vendor_runner.add(STAGES["mac_vendor"], _Refuses())
        tasks = [asyncio.create_task(runner.run()), asyncio.create_task(vendor_runner.run())]
        try:
            await buses["arp_sweep"].publish(host_seen())
            await eventually(lambda: changes, what="the watcher seeing the new host")
            reply = await buses[QUERY].nc.request(subj.QUERY, b'{"sql": "SELECT count(*) FROM hosts"}',
                                                  timeout=5)
            assert msgspec.json.decode(reply.data)["rows"] == [[1]]
            await eventually(lambda: subject_count(admin, subj.DEAD_LETTERS.name, "lanscope.dlq.mac_vendor"),
                             what="mac_vendor's dead letter")
        finally:
            runner.stop()
            vendor_runner.stop()
            await asyncio.wait_for(asyncio.gather(*tasks), 20)
    finally:
        for bus in (admin, *buses.values()):
            await bus.close()


class _Refuses:
    async def handle(self, event: Any) -> list[Any]:
        raise UnusableEvent("refused on purpose")


def test_credentials_are_private_and_the_server_config_holds_no_secret(
        closed: tuple[EmbeddedNats, Path]) -> None:
    server, data_dir = closed
    store = data_dir / "credentials"
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    seeds = sorted(store.iterdir())
    assert {p.stem for p in seeds} == set(roles())
    conf = (server.store_dir / "nats-server.conf").read_text()
    for seed in seeds:
        assert stat.S_IMODE(seed.stat().st_mode) == 0o600
        assert seed.read_text().startswith("SU") and seed.read_text().strip() not in conf
    assert stat.S_IMODE((server.store_dir / "nats-server.conf").stat().st_mode) == 0o600


def test_a_role_has_only_what_its_stage_needs() -> None:
    producer = stage_role(STAGES["arp_sweep"])
    # Standalone (and a hub): the default site's subjects and every named site's (issue 24).
    assert producer.publish == ("lanscope.host.seen.>", "lanscope.*.host.seen.>",
                                "lanscope.sweep.completed.>", "lanscope.*.sweep.completed.>")
    assert producer.permissions()["subscribe"] == {"allow": ["_INBOX_arp_sweep.>"]}
    enricher = stage_role(STAGES["dns_names"])
    assert set(enricher.publish) == {
        "lanscope.host.annotated.>", "lanscope.*.host.annotated.>",
        "$JS.API.CONSUMER.MSG.NEXT.LANSCOPE_FACTS.dns_names",
        "$JS.API.CONSUMER.INFO.LANSCOPE_FACTS.dns_names", "$JS.ACK.LANSCOPE_FACTS.dns_names.>",
        "lanscope.dlq.dns_names", "lanscope.*.dlq.dns_names"}
    owner = stage_role(STAGES["host_state"])
    assert owner.subscribe == (subj.QUERY,) and owner.responses
    assert roles()[QUERY].publish == (subj.QUERY,)
    assert not any(p.startswith("lanscope.") and p != subj.QUERY for p in roles()[WATCH].publish)
    assert set(roles()[WATCH].subscribe) == {"lanscope.host.changed.>", "lanscope.*.host.changed.>",
                                             "lanscope.finding.*", "lanscope.*.finding.*"}


def test_a_sensors_roles_are_pinned_to_its_site_and_its_streams() -> None:
    sensor = Layout(site="paris", role="sensor")
    all_roles = roles(layout=sensor)
    # Only the stages a sensor runs (and the fixed roles): no sink, no hub enricher.
    assert set(all_roles) == {ADMIN, PIPELINE, QUERY, WATCH, WEB,
                              *(name for name, spec in STAGES.items() if sensor.runs(spec))}
    assert "host_state" not in all_roles and "dns_names" not in all_roles
    assert all_roles["arp_sweep"].publish == ("lanscope.paris.host.seen.>",
                                              "lanscope.paris.sweep.completed.>")
    probe = all_roles["port_probe"]
    assert "lanscope.paris.host.ports" in probe.publish and "lanscope.paris.dlq.port_probe" in probe.publish
    assert "$JS.API.CONSUMER.MSG.NEXT.LANSCOPE_FACTS-paris.port_probe" in probe.publish
    assert "$JS.API.CONSUMER.MSG.NEXT.LANSCOPE_REQUESTS-paris.port_probe" in probe.publish
    for role in all_roles.values():
        if role.name == ADMIN:
            continue
        for subject in (*role.publish, *role.subscribe):
            # Nothing of the default site, of any other site, or of the hub's streams.
            if subject.startswith("lanscope.") and subject != subj.QUERY:
                assert subject.startswith("lanscope.paris."), (role.name, subject)
            assert not any(f"{name}." in subject for name in ("LANSCOPE_FACTS", "LANSCOPE_REQUESTS")), \
                (role.name, subject)
    hub = roles(layout=Layout(role="hub", sites=("paris",)))
    assert "arp_sweep" not in hub and "port_probe" not in hub and "host_state" in hub


def test_a_process_connects_as_its_stage_or_as_the_pipeline() -> None:
    assert role_for([STAGES["host_state"]]) == "host_state"          # run --stage host_state
    assert role_for([STAGES["port_probe"], STAGES["dns_names"]]) == PIPELINE
    assert role_for(STAGES.values()) == PIPELINE                     # lanscope run
