"""Reverse DNS: lab names from the lab's DNS server; the TTL cache; timeouts lose nothing."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from enrichers.dns_names import Config, DnsNames, build
from enrichers.dns_names._io import make_reverse_lookup
from lanscope.errors import UnusableEvent
from lanscope.runtime.stage import StageContext
from lanscope.settings import DnsConfig
from schemas import HostAnnotated
from tests.factories import T0, host_seen, scope_guard


@pytest.mark.lab
async def test_lab_names_from_the_lab_dns_server(lab: Any, tmp_path: Any) -> None:
    # Built as the pipeline builds it: the stage's section, the shared `dns:` resolver.
    stage = build(Config(), StageContext(data_dir=tmp_path, dns=DnsConfig(servers=[lab.DNS_IP])))
    for name in ("ssh", "nginx", "noicmp", "dns"):
        host = lab.host(name)
        [event] = await stage.handle(host_seen(ip=host.ip, mac=host.mac))
        assert isinstance(event, HostAnnotated)
        assert (event.source, event.hostname, event.mac) == ("dns", host.fqdn, host.mac)
    assert await stage.handle(host_seen(ip=lab.DOWN_IP, mac=None)) == []   # no PTR record


@pytest.mark.lab
async def test_unreachable_server_times_out_quietly(lab: Any) -> None:
    lookup = make_reverse_lookup([lab.DOWN_IP], timeout_ms=200)
    stage = DnsNames(Config(), lookup=lookup, scope=scope_guard())
    assert await stage.handle(host_seen(ip=lab.host("ssh").ip)) == []


class FakeLookup:
    def __init__(self, answers: dict[str, tuple[str | None, int | None]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    async def __call__(self, ip: str) -> tuple[str | None, int | None]:
        self.calls.append(ip)
        answer = self.answers.get(ip)
        if answer is None:
            raise TimeoutError(ip)
        return answer


def _stage(lookup: FakeLookup, **config: Any) -> tuple[DnsNames, list[datetime]]:
    now = [T0]
    return DnsNames(Config(**config), lookup=lookup, scope=scope_guard(), clock=lambda: now[0]), now


async def test_cache_hits_emit_nothing_until_expiry() -> None:
    lookup = FakeLookup({"198.18.0.10": ("ssh.lab.test", 3600)})
    stage, now = _stage(lookup, cache_secs=600)
    [event] = await stage.handle(host_seen(ip="198.18.0.10"))
    assert isinstance(event, HostAnnotated) and event.hostname == "ssh.lab.test"
    assert await stage.handle(host_seen(ip="198.18.0.10")) == []
    assert lookup.calls == ["198.18.0.10"]
    now[0] = T0 + timedelta(seconds=601)
    assert len(await stage.handle(host_seen(ip="198.18.0.10"))) == 1
    assert len(lookup.calls) == 2


async def test_short_record_ttl_shortens_the_cache() -> None:
    lookup = FakeLookup({"198.18.0.10": ("ssh.lab.test", 60)})
    stage, now = _stage(lookup, cache_secs=3600)
    await stage.handle(host_seen(ip="198.18.0.10"))
    now[0] = T0 + timedelta(seconds=61)
    assert len(await stage.handle(host_seen(ip="198.18.0.10"))) == 1


async def test_misses_are_cached_and_timeouts_are_not() -> None:
    lookup = FakeLookup({"198.18.0.99": (None, None)})
    stage, _ = _stage(lookup)
    assert await stage.handle(host_seen(ip="198.18.0.99")) == []
    assert await stage.handle(host_seen(ip="198.18.0.99")) == []
    assert lookup.calls == ["198.18.0.99"]
    assert await stage.handle(host_seen(ip="198.18.0.77")) == []     # timeout
    assert await stage.handle(host_seen(ip="198.18.0.77")) == []
    assert lookup.calls.count("198.18.0.77") == 2


async def test_an_address_out_of_scope_is_not_looked_up() -> None:
    lookup = FakeLookup({"203.0.113.5": ("leak.example", 60)})
    stage, _ = _stage(lookup)
    with pytest.raises(UnusableEvent, match=r"203\.0\.113\.5 is out of scope: a public address"):
        await stage.handle(host_seen(ip="203.0.113.5", mac=None))
    assert lookup.calls == []          # the resolver never heard of it
