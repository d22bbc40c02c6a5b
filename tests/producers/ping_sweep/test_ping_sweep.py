"""ICMP sweep and TCP ping against the lab; the seed's ping helpers."""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any

import pytest

from lanscope.net.coverage import covered_cidrs
from lanscope.net.interfaces import interfaces_async
from lanscope.net.targets import parse_targets
from producers.ping_sweep import Config, PingSweep, is_alive, ping
from producers.ping_sweep._io import icmp_sweep_async, tcp_connect
from schemas import HostSeen, SweepCompleted

pytestmark = pytest.mark.lab


def _stage(specs: list[str], **config: Any) -> PingSweep:
    return PingSweep(Config(**config), icmp=icmp_sweep_async, tcp_connect=tcp_connect,
                     interfaces=interfaces_async, targets=parse_targets(specs))


async def test_echo_replies_carry_rtt_and_ttl(lab: Any) -> None:
    events = await _stage([lab.LIVE_24], tcp_ports=[]).sweep()
    seen = {e.ip: e for e in events if isinstance(e, HostSeen)}
    # The scanner's own address answers too (nmap -sn lists it as well).
    answering = {h.ip for h in lab.live_hosts(lab.LIVE_24) if not h.drops_icmp} | {lab.SCANNER_IP}
    assert set(seen) == answering
    assert lab.DOWN_IP not in seen and lab.host("noicmp").ip not in seen
    for event in seen.values():
        assert event.source == "icmp" and event.evidence == "echo-reply"
        assert event.ttl == 64 and event.rtt_ms is not None and event.rtt_ms >= 0
    assert isinstance(events[-1], SweepCompleted) and events[-1].targets == [lab.LIVE_24]
    # Covered: every address an echo request went to (the silent ones too), not .0/.255, and
    # not the scanner's own (it answers, but must never count as missing itself).
    assert events[-1].covered == covered_cidrs(ip_address(f"198.18.0.{i}") for i in range(2, 255))


async def test_excluded_addresses_are_not_covered(lab: Any) -> None:
    events = await PingSweep(Config(tcp_ports=[]), icmp=icmp_sweep_async, tcp_connect=tcp_connect,
                             interfaces=interfaces_async,
                             targets=parse_targets(["198.18.0.96-99"], exclude=["198.18.0.98"])).sweep()
    assert isinstance(events[-1], SweepCompleted)
    assert events[-1].covered == ["198.18.0.96/31", "198.18.0.99/32"]


async def test_off_link_icmp_dropper_found_by_tcp_ping(lab: Any) -> None:
    off1, off2 = lab.host("off1"), lab.host("off2")
    events = await _stage([off1.ip, off2.ip, "198.19.0.99"], tcp_timeout_ms=500).sweep()
    seen = {e.ip: e for e in events if isinstance(e, HostSeen)}
    assert set(seen) == {off1.ip, off2.ip}
    assert seen[off2.ip].source == "icmp" and seen[off2.ip].ttl == 63     # one router hop
    assert seen[off1.ip].source == "tcp_ping"
    assert seen[off1.ip].evidence in {"syn-ack:80", "rst:22", "rst:443", "rst:445", "rst:3389"}
    assert seen[off1.ip].rtt_ms is not None


async def test_ipv6_echo(lab: Any) -> None:
    ssh = lab.host("ssh")
    events = await _stage([ssh.ip6], tcp_ports=[]).sweep()
    seen = [e for e in events if isinstance(e, HostSeen)]
    assert [(e.ip, e.ttl) for e in seen] == [(ssh.ip6, 64)]


def test_seed_helpers(lab: Any) -> None:
    reachable, times = ping(lab.host("ssh").ip, count=4, interval_secs=0.01)
    assert reachable and len(times) == 4 and all(t >= 0 for t in times)
    assert ping(lab.DOWN_IP, count=1, timeout_secs=0.3) == (False, [])
    assert is_alive(lab.host("nginx").ip)
    assert not is_alive(lab.host("noicmp").ip, timeout_secs=0.3)
