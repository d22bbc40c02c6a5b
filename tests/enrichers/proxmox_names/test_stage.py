"""The proxmox_names enricher: MAC-then-IP join, cache refresh, backoff while Proxmox is down."""

from __future__ import annotations

import logging

import pytest

from enrichers.proxmox_names import Config, ProxmoxNames
from enrichers.proxmox_names._io import ProxmoxClient
from lanscope.settings import ProxmoxConfig, TlsConfig
from schemas import HostAnnotated
from tests.factories import host_annotated, host_seen
from tests.fakes.fixtures import PROXMOX_TOKEN
from tests.fakes.proxmox import FakeProxmox
from tests.fakes.tls import SelfSigned


class Clock:
    def __init__(self) -> None:
        self.t = 5000.0

    def __call__(self) -> float:
        return self.t


def make(pve: FakeProxmox, cert: SelfSigned, clock: Clock, port: int | None = None) -> ProxmoxNames:
    settings = ProxmoxConfig(host="127.0.0.1", port=port or pve.port, user=PROXMOX_TOKEN[0],
                             token_name=PROXMOX_TOKEN[1], token_value=PROXMOX_TOKEN[2],
                             tls=TlsConfig(fingerprint_sha256=cert.sha256), timeout_secs=2)
    config = Config(refresh_secs=300, backoff_initial_secs=30, backoff_max_secs=120)
    return ProxmoxNames(config, fetch_guests=ProxmoxClient(settings).fetch_guests, host="127.0.0.1",
                        clock=clock)


@pytest.mark.parametrize(("ip", "mac", "name", "vm_id"), [
    ("198.18.0.99", "bc:24:11:2e:c5:4a", "web-01", 100),     # by MAC (the IP is someone else's)
    ("198.18.0.10", "02:00:00:00:00:10", "web-01", 100),     # by IP (agent address)
    ("198.18.0.53", None, "ct-dns", 200),                    # LXC interfaces
    ("10.0.0.50", "aa:bb:cc:dd:ee:ff", "ct-static", 201),    # stopped container, static ip=
])
async def test_join(proxmox: FakeProxmox, tls_cert: SelfSigned, ip: str, mac: str | None,
                    name: str, vm_id: int) -> None:
    stage = make(proxmox, tls_cert, Clock())
    event = host_seen(ip, mac, source="arp")
    [out] = await stage.handle(event)
    assert isinstance(out, HostAnnotated) and out.source == "proxmox"
    assert out.host_key == event.host_key and out.observed_at == event.observed_at
    assert out.hostname == name and out.guest is not None
    assert (out.guest.vm_id, out.guest.name) == (vm_id, name)
    assert out.guest.vm_type and out.guest.node == "pve1" and out.guest.status


async def test_no_match_and_other_events(proxmox: FakeProxmox, tls_cert: SelfSigned) -> None:
    stage = make(proxmox, tls_cert, Clock())
    assert await stage.handle(host_seen("198.18.0.200", "02:00:00:00:00:c8")) == []
    assert await stage.handle(host_annotated()) == []


async def test_cache_refreshes_on_interval(proxmox: FakeProxmox, tls_cert: SelfSigned) -> None:
    clock = Clock()
    stage = make(proxmox, tls_cert, clock)
    for _ in range(20):
        await stage.handle(host_seen("198.18.0.10", None))
    assert proxmox.count("/cluster/resources") == 1
    proxmox.guest(100).name = "web-01-renamed"
    clock.t += 299
    [out] = await stage.handle(host_seen("198.18.0.10", None))
    assert out.hostname == "web-01"
    clock.t += 1
    [out] = await stage.handle(host_seen("198.18.0.10", None))
    assert out.hostname == "web-01-renamed" and proxmox.count("/cluster/resources") == 2


async def test_unreachable_returns_nothing_and_backs_off(
        tls_cert: SelfSigned, caplog: pytest.LogCaptureFixture) -> None:
    with FakeProxmox(tls=(str(tls_cert.cert_file), str(tls_cert.key_file))) as gone:
        port = gone.port
    clock = Clock()
    stage = make(gone, tls_cert, clock, port=port)
    for _ in range(10):
        assert await stage.handle(host_seen()) == []      # no exception per event
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "retrying in 30s" in errors[0].getMessage()
    clock.t += 30
    await stage.handle(host_seen())
    assert stage.cache.failures == 2 and stage.cache.next_attempt == clock.t + 60


async def test_serves_the_last_good_list_while_proxmox_fails(
        proxmox: FakeProxmox, tls_cert: SelfSigned) -> None:
    clock = Clock()
    stage = make(proxmox, tls_cert, clock)
    assert await stage.handle(host_seen("198.18.0.10", None))
    proxmox.fail = (500, "Internal Server Error")
    clock.t += 300
    [out] = await stage.handle(host_seen("198.18.0.10", None))
    assert out.hostname == "web-01" and stage.cache.failures == 1
    proxmox.fail = None
    clock.t += 30
    await stage.handle(host_seen("198.18.0.10", None))
    assert stage.cache.failures == 0
