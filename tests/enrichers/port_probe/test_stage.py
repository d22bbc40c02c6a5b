"""The port_probe enricher: when it probes, claims across replicas, the event it publishes."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime

import pytest

from enrichers.port_probe._connect import Outcome
from enrichers.port_probe.stage import Config, HostReport, PortProbe, Prober, shown_ports
from lanscope.config import parse
from lanscope.errors import UnusableEvent
from lanscope.net.ports import PortSpec
from lanscope.runtime.claims import MemoryClaims
from lanscope.runtime.topology import STAGES
from schemas import OsGuess, PortsProbed, PortState, ProbeRequested
from tests.factories import T0, at, host_seen, port, scope_guard


class FakeProber(Prober):
    """Counts probes and returns a fixed report: the enricher logic without the network."""

    def __init__(self, config: Config, delay: float = 0.0) -> None:
        super().__init__(config, syn_available=lambda: False)
        self.calls: list[list[str]] = []
        self.delay = delay

    async def probe(self, ips: list[str], spec: PortSpec | None = None,
                    **kwargs: object) -> dict[str, HostReport]:
        self.calls.append(list(ips))
        await asyncio.sleep(self.delay)
        ports = [port(22, service="ssh", product="OpenSSH")] + [port(p, "closed") for p in range(100, 140)]
        return {ip: HostReport(ip=ip, ports=ports, os=OsGuess(name="Linux", confidence=4)) for ip in ips}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def make(config: Config | None = None, *, claims: MemoryClaims | None = None,
         delay: float = 0.0) -> tuple[PortProbe, FakeProber, Clock]:
    config = config or Config(reprobe_secs=3600)
    prober = FakeProber(config, delay)
    clock = Clock()
    return (PortProbe(config, scope=scope_guard(), claims=claims or MemoryClaims(), prober=prober,
                      clock=clock), prober, clock)


async def test_probes_a_new_host_and_publishes_a_snapshot() -> None:
    stage, prober, _ = make()
    [event] = await stage.handle(host_seen("198.18.0.10"))
    assert isinstance(event, PortsProbed)
    assert event.ip == "198.18.0.10" and event.host_key == "02:00:00:00:00:10"
    assert event.source == "port_probe" and event.mac == "02:00:00:00:00:10"
    assert [p.port for p in event.ports] == [22]           # 40 closed ports are summarised
    assert event.scanned == ["tcp:20-1024", "udp:53,123,137,161,1900,5353"]
    assert event.os is not None and event.os.name == "Linux"
    assert prober.calls == [["198.18.0.10"]]


async def test_reprobes_only_after_the_interval() -> None:
    stage, prober, clock = make()
    await stage.handle(host_seen("198.18.0.10"))
    clock.now = at(3000)
    assert await stage.handle(host_seen("198.18.0.10", t=3000)) == []
    clock.now = at(3601)
    assert len(await stage.handle(host_seen("198.18.0.10", t=3601))) == 1
    assert len(prober.calls) == 2


@pytest.mark.parametrize("event", [
    host_seen("198.18.0.10", alive=False),
    host_seen(None, "02:00:00:00:00:10"),
])
async def test_ignores_dead_sightings_and_hosts_without_ip(event: object) -> None:
    stage, prober, _ = make()
    assert await stage.handle(event) == []                  # type: ignore[arg-type]
    assert prober.calls == []


async def test_two_replicas_never_probe_one_host_at_once() -> None:
    claims = MemoryClaims()                                 # shared, as the NATS KV bucket would be
    first, p1, _ = make(claims=claims, delay=0.2)
    second, p2, _ = make(claims=claims, delay=0.2)
    a, b = await asyncio.gather(first.handle(host_seen("198.18.0.10")),
                                second.handle(host_seen("198.18.0.10")))
    assert len(a) + len(b) == 1
    assert len(p1.calls) + len(p2.calls) == 1


def test_builder_takes_the_stage_section() -> None:
    config = parse({"enrichers": {"port_probe": {"connect_timeout_ms": 700, "reprobe_secs": 60}}}, env={})
    stage = STAGES["port_probe"].instantiate(config.enrichers.port_probe, config.stage_context())
    assert isinstance(stage, PortProbe)
    assert stage.config.tcp == "20-1024"
    assert (stage.config.connect_timeout_ms, stage.config.reprobe_secs) == (700, 60)


def test_shown_ports_summarises_large_states() -> None:
    ports = [port(22)] + [port(p, "closed") for p in range(1, 30)] + [port(99, "filtered")]
    shown = shown_ports(ports)
    assert [p.port for p in shown] == [22, 99]
    assert all(p.state != PortState.CLOSED for p in shown)


def test_scan_type_choice() -> None:
    prober = Prober(Config(), syn_available=lambda: True)
    assert prober.choose_scan_type(["10.0.0.1"], 1000) == "syn"
    assert prober.choose_scan_type(["10.0.0.1"], 10) == "connect"
    assert prober.choose_scan_type(["fd00::1"], 1000) == "connect"
    assert prober.choose_scan_type(["10.0.0.1"], 10, "syn") == "syn"
    no_root = Prober(Config(), syn_available=lambda: False)
    assert no_root.choose_scan_type(["10.0.0.1"], 1000, "syn") == "connect"


def test_compact_report_summaries_match_the_full_port_list() -> None:
    # 40 closed (kept compact), 29 filtered (compact too, two reasons), one open: the summaries
    # must be what the full list gives, and ``ports`` must rebuild it in port order.
    outcomes = {p: Outcome("closed", "reset", 64, 0) for p in range(100, 140)}
    outcomes |= {p: Outcome("filtered", "no-response" if p % 2 else "admin-prohibited") for p in range(1, 31)}
    outcomes[22] = Outcome("open", "syn-ack", 64, 64240)
    ports = sorted(outcomes)
    compact = HostReport(ip="10.0.0.1")
    compact._add_tcp(ports, [outcomes[p] for p in ports], frozenset({"closed", "filtered"}))
    assert [p.port for p in compact.shown()] == [22]
    summaries = (compact.not_shown(), compact.hidden_reasons(), compact.state_counts())
    full = HostReport(ip="10.0.0.1", ports=list(compact.ports))
    assert [p.port for p in full.ports] == ports
    assert [p.state for p in full.ports if p.port in (1, 22, 100)] == [
        PortState.FILTERED, PortState.OPEN, PortState.CLOSED]
    assert (full.not_shown(), full.hidden_reasons(), full.state_counts()) == summaries
    assert summaries[0] == {"filtered": 29, "closed": 40}
    assert summaries[1]["filtered"] == {"admin-prohibited": 14, "no-response": 15}


def probe_request(ip: str = "198.18.0.10", *, t: float = 0) -> ProbeRequested:
    return ProbeRequested(host_key="02:00:00:00:00:10", observed_at=at(t), source="web", ip=ip,
                          mac="02:00:00:00:00:10", requested_by="web 127.0.0.1")


async def test_a_probe_request_probes_now_whatever_the_interval() -> None:
    stage, prober, clock = make()
    await stage.handle(host_seen("198.18.0.10"))
    clock.now = at(60)                                      # the interval (3600 s) is far off
    assert await stage.handle(host_seen("198.18.0.10", t=60)) == []
    [event] = await stage.handle(probe_request(t=59))
    assert isinstance(event, PortsProbed) and event.ip == "198.18.0.10"
    assert event.host_key == "02:00:00:00:00:10" and event.observed_at == at(60)
    assert prober.calls == [["198.18.0.10"], ["198.18.0.10"]]


async def test_a_probe_request_out_of_scope_is_unusable_and_sends_nothing() -> None:
    stage, prober, _clock = make()
    with pytest.raises(UnusableEvent, match=r"probe request by web 127.0.0.1: 8.8.8.8 is out of scope: "
                                            r"a public address"):
        await stage.handle(probe_request("8.8.8.8"))
    assert prober.calls == []


async def test_a_stale_probe_request_is_dropped() -> None:
    stage, prober, clock = make(Config(reprobe_secs=3600, request_max_age_secs=300))
    clock.now = at(301)
    assert await stage.handle(probe_request(t=0)) == []
    assert prober.calls == []


def test_the_pipeline_builds_port_probe_with_the_config_scope() -> None:
    config = parse({}, env={})
    stage = STAGES["port_probe"].instantiate(config.enrichers.port_probe, config.stage_context())
    assert "a public address" in (stage.scope.refusal("203.0.113.5") or "")


@pytest.mark.parametrize(("ip", "why"), [
    ("127.0.0.1", "127.0.0.1 is out of scope: loopback, this machine itself"),
    ("203.0.113.5", "203.0.113.5 is out of scope: a public address (set scope.allow_public"),
    ("10.9.8.7", "10.9.8.7 is out of scope: private but not attached"),
])
async def test_an_address_out_of_scope_is_unusable_and_never_probed(ip: str, why: str) -> None:
    stage, prober, _ = make()
    with pytest.raises(UnusableEvent, match=re.escape(why)):
        await stage.handle(host_seen(ip, None))
    assert prober.calls == []
    assert await stage.claims.last_done("port_probe." + ip) is None
