"""The dhcp_leases producer against a real fake RouterOS over the network stack."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from lanscope.config import parse
from lanscope.settings import TlsConfig
from producers.dhcp_leases import (
    Config,
    DhcpLeases,
    GatewayConfig,
    GatewayError,
    LeaseFileReader,
    build,
)
from producers.dhcp_leases._http import RouterOsClient, default_scheme
from schemas import HostSeen, SweepCompleted, encode
from tests.factories import T0
from tests.fakes.fixtures import ROUTER_PASSWORD
from tests.fakes.mikrotik import FakeRouterOS
from tests.fakes.tls import SelfSigned

DNSMASQ = "0 aa:bb:cc:11:22:99 192.168.10.2 printer *\n"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def settings(router: FakeRouterOS, **overrides: object) -> GatewayConfig:
    fields: dict[str, object] = {"host": "127.0.0.1", "user": "admin", "password": ROUTER_PASSWORD,
                                 "scheme": "https" if router.tls else "http", "port": router.port,
                                 "timeout_secs": 2.0}
    fields.update(overrides)
    return GatewayConfig(**fields)  # type: ignore[arg-type]


def stage_for(router: FakeRouterOS, tmp_path: Path, clock: Clock | None = None,
              **overrides: object) -> DhcpLeases:
    leases = tmp_path / "dnsmasq.leases"
    leases.write_text(DNSMASQ)
    config = Config(gateway=settings(router, **overrides), lease_files=[str(leases)],
                    backoff_initial_secs=30, backoff_max_secs=120)
    g = config.gateway
    assert g.host is not None
    client = RouterOsClient(g.host, user=g.user, password=g.password, scheme=g.scheme, port=g.port,
                            tls=g.tls, timeout_secs=g.timeout_secs)
    return DhcpLeases(config, gateway=client, files=LeaseFileReader(config.lease_files),
                      clock=clock or Clock(), now=lambda: T0)


def seen(events: list, source: str) -> dict[str, HostSeen]:
    return {e.ip: e for e in events if isinstance(e, HostSeen) and e.source == source}


async def test_leases_and_arp_become_sightings(router: FakeRouterOS, tmp_path: Path) -> None:
    events = await stage_for(router, tmp_path).sweep()
    dhcp = seen(events, "dhcp")
    bound = dhcp["10.70.0.2"]
    assert bound.mac == "e0:d9:e3:c2:ed:c0" and bound.host_key == bound.mac
    assert bound.alive and bound.evidence == "lease:bound" and bound.hostname == "10.70.0.2"
    assert bound.lease is not None and bound.lease.dynamic is False
    assert bound.lease.expires_after_secs == 1443 and bound.lease.last_seen_secs == 357
    assert bound.lease.gateway == "127.0.0.1" and bound.lease.origin == "mikrotik"
    waiting = dhcp["192.168.88.20"]
    assert not waiting.alive and waiting.evidence == "lease:waiting"
    assert waiting.lease is not None and waiting.lease.comment == "NAS"
    assert dhcp["192.168.64.113"].lease.dynamic is True  # type: ignore[union-attr]
    assert dhcp["192.168.10.2"].lease.origin == "dnsmasq"  # type: ignore[union-attr]
    arp = seen(events, "router_arp")
    assert set(arp) == {"192.168.9.10", "192.168.64.113", "192.168.9.1"}   # failed row dropped
    assert arp["192.168.9.10"].alive and arp["192.168.9.10"].evidence == "router_arp:reachable"
    assert not arp["192.168.64.113"].alive and arp["192.168.64.113"].neighbour_state == "stale"
    sweeps = {e.source: e for e in events if isinstance(e, SweepCompleted)}
    assert set(sweeps) == {"dhcp", "router_arp"} and sweeps["dhcp"].hosts_found == 3
    # Reading the router sends nothing to the hosts it names: no address is covered.
    assert sweeps["dhcp"].covered == [] and sweeps["router_arp"].covered == []
    for event in events:                                   # every event survives the wire codec
        encode(event)


async def test_one_pooled_connection_for_every_poll(router: FakeRouterOS, tmp_path: Path) -> None:
    stage = stage_for(router, tmp_path)
    for _ in range(3):
        await stage.sweep()
    assert [p for _, p, _ in router.requests].count("/rest/ip/arp") == 3
    assert router.connections == 1        # RouterOS logs a login per connection


@pytest.mark.parametrize(("setup", "user", "reason"), [
    ({}, "admin-typo", r"HTTP 401 \(Unauthorized\): wrong user or password"),
    ({}, "norest", r"HTTP 401 .*rest-api policy"),
    ({}, "noapi", r"HTTP 500 \(Internal Server Error: std failure: not allowed \(9\)\).*policy"),
    ({}, "noread", r"HTTP 500 .*not enough permissions.*lacks the read/api policy"),
    ({"*": "notfound"}, "admin", r"HTTP 404 .*older than 7.1"),
    ({"*": "nosuch"}, "admin", r"HTTP 400 .*no such command or directory \(ip\)"),
    ({"*": "timeout"}, "admin", r"HTTP 400 \(Bad Request: Session closed\)"),
    ({"*": "slow"}, "admin", r"within 0.5s \(timeout\)"),
    ({"*": "garbage"}, "admin", r"reply is not JSON"),
    ({"*": "html"}, "admin", r"reply is not JSON"),
    ({"*": "object"}, "admin", r"expected a JSON array of records, got a JSON object"),
])
async def test_gateway_failures_are_clear_and_keep_the_files(
        router: FakeRouterOS, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        setup: dict[str, str], user: str, reason: str) -> None:
    router.behaviour.update(setup)
    if user in router.users:                   # policy-restricted users log in fine
        router.users[user] = ROUTER_PASSWORD
    caplog.set_level(logging.DEBUG)
    stage = stage_for(router, tmp_path, user=user, timeout_secs=0.5)
    snapshot = await stage.collect()
    assert len(snapshot.errors) == 1
    assert snapshot.errors[0].startswith("gateway 127.0.0.1: ")
    assert re.search(reason, snapshot.errors[0]), snapshot.errors[0]
    assert [lease.lease.address for lease in snapshot.leases] == ["192.168.10.2"]
    events = await stage_for(router, tmp_path, user=user, timeout_secs=0.5).sweep()
    assert [e.ip for e in events if isinstance(e, HostSeen)] == ["192.168.10.2"]
    # No SweepCompleted: a gateway outage must not count as every DHCP host missing a sweep.
    assert not [e for e in events if isinstance(e, SweepCompleted)]
    everything = caplog.text + "".join(snapshot.errors) + "".join(encode(e).decode() for e in events)
    assert ROUTER_PASSWORD not in everything
    assert "gateway 127.0.0.1" in caplog.text


async def test_wrong_password_backs_off_instead_of_hammering(
        router: FakeRouterOS, tmp_path: Path) -> None:
    clock = Clock()
    stage = stage_for(router, tmp_path, clock, password="wrong")
    for _ in range(5):                         # the runtime calls sweep() on schedule
        assert [e.ip for e in await stage.sweep()] == ["192.168.10.2"]   # the lease file
    assert router.login_failures == 1          # backing off for 30 s
    clock.t += 30
    await stage.sweep()
    assert router.login_failures == 2          # next wait 60 s
    clock.t += 59
    await stage.sweep()
    assert router.login_failures == 2
    clock.t += 1
    router.users["admin"] = "wrong"            # the admin fixed the password on the router
    events = await stage.sweep()
    assert router.login_failures == 2 and stage.backoff.failures == 0
    assert "10.70.0.2" in seen(events, "dhcp")


async def test_pinned_fingerprint(router_tls: FakeRouterOS, tls_cert: SelfSigned,
                                  tmp_path: Path) -> None:
    good = stage_for(router_tls, tmp_path, tls=TlsConfig(fingerprint_sha256=tls_cert.sha256))
    assert "10.70.0.2" in seen(await good.sweep(), "dhcp")
    requests_before = len(router_tls.requests)
    wrong = "AB:" * 31 + "CD"
    bad = stage_for(router_tls, tmp_path, tls=TlsConfig(fingerprint_sha256=wrong))
    snapshot = await bad.collect()
    assert "does not match the pinned" in snapshot.errors[0]
    assert "AB:AB:AB" in snapshot.errors[0] and tls_cert.sha256 in snapshot.errors[0]
    # The handshake was refused before any request (and its Basic credentials) was sent.
    assert len(router_tls.requests) == requests_before


@pytest.mark.parametrize(("tls", "works", "message"), [
    ("ca", True, ""),
    ("system", False, "certificate verification failed: self-signed certificate"),
    ("off", True, ""),
])
async def test_tls_verification_modes(router_tls: FakeRouterOS, tls_cert: SelfSigned,
                                      tmp_path: Path, tls: str, works: bool, message: str) -> None:
    settings_for = {"ca": TlsConfig(ca_file=str(tls_cert.cert_file)), "system": TlsConfig(),
                    "off": TlsConfig(verify=False)}
    snapshot = await stage_for(router_tls, tmp_path, tls=settings_for[tls]).collect()
    assert snapshot.gateway_read is works
    if message:
        assert message in snapshot.errors[0]


async def test_unusable_records_are_skipped_with_a_reason(router: FakeRouterOS,
                                                          tmp_path: Path) -> None:
    router.leases.append({".id": "*9", "address": "not-an-ip", "mac-address": "AA:BB:CC:DD:EE:01"})
    router.leases.append({".id": "*A", "status": "offered"})
    snapshot = await stage_for(router, tmp_path).collect()
    assert snapshot.gateway_read
    assert {lease.lease.address for lease in snapshot.leases} >= {"10.70.0.2", "192.168.64.113"}
    assert any("lease record 3 skipped" in e for e in snapshot.errors)
    assert any("lease record 4 skipped: lease record has neither" in e for e in snapshot.errors)


async def test_leases_are_keyed_by_router_mac_address_not_id(router: FakeRouterOS,
                                                             tmp_path: Path) -> None:
    duplicate = {**router.leases[1], ".id": "*99", "status": "offered"}
    router.leases.append(duplicate)              # same (mac, address) under another .id
    snapshot = await stage_for(router, tmp_path).collect()
    same = [lease for lease in snapshot.leases if lease.lease.address == "192.168.64.113"]
    assert len(same) == 1 and same[0].alive


@pytest.mark.parametrize(("host", "scheme"), [
    ("10.0.0.1", "http"), ("172.16.5.1", "http"), ("172.31.255.254", "http"),
    ("192.168.88.1", "http"), ("172.32.0.1", "https"), ("8.8.8.8", "https"),
    ("router.example", "https"), ("fd00::1", "https"), ("127.0.0.1", "https"),
])
def test_default_scheme(host: str, scheme: str) -> None:
    assert default_scheme(host) == scheme


async def test_build_makes_real_io(router: FakeRouterOS, tmp_path: Path) -> None:
    (tmp_path / "dnsmasq.leases").write_text(DNSMASQ)
    config = parse({"producers": {"dhcp_leases": {
        "gateway": {"host": "127.0.0.1", "port": router.port, "scheme": "http", "pass": ROUTER_PASSWORD},
        "lease_files": [str(tmp_path / "*.leases")]}}}, env={})
    stage = build(config.producers.dhcp_leases, config.stage_context())
    snapshot = await stage.collect()
    assert snapshot.gateway_read and len(snapshot.leases) == 4


async def test_client_error_type(router: FakeRouterOS) -> None:
    client = RouterOsClient("127.0.0.1", user="admin", password="nope", scheme="http",
                            port=router.port)
    with pytest.raises(GatewayError) as caught:
        await client.get("ip/arp")
    assert caught.value.gateway == "127.0.0.1" and "nope" not in str(caught.value)
    await client.aclose()
