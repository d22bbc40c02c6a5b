"""The scan engines themselves (SYN and connect) on the lab: every port's state against the
lab's truth, many hosts at once, retransmission, unreachable hosts, stop and progress."""

from __future__ import annotations

import threading
import time

import pytest

from enrichers.port_probe import _connect, _syn
from lanscope.net.ports import top_ports
from tests.lab import Lab

pytestmark = pytest.mark.lab


Results = dict[tuple[str, int], _connect.Outcome]


def _scan(kind: str, targets: dict[str, list[int]], **kwargs: object) -> Results:
    if kind == "syn":
        return _syn.syn_scan(targets, **kwargs)  # type: ignore[arg-type]
    return _connect.connect_scan(targets, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["syn", "connect"])
def test_top_ports_of_every_live_host_agree_with_the_lab(lab: Lab, kind: str) -> None:
    hosts = lab.live_hosts(lab.LIVE_24)
    ports = sorted(set(top_ports(1000)) | {8081, 8082})
    results = _scan(kind, {h.ip: ports for h in hosts}, timeout_s=0.3, retries=1)
    assert len(results) == len(hosts) * len(ports)
    for h in hosts:
        opened = {p for p in ports if results[(h.ip, p)].state == "open"}
        assert opened >= set(h.tcp_open) & set(ports), h.name
        assert opened - set(h.tcp_open) <= {199}, h.name          # snmpd's smux is not declared
        for p in h.tcp_filtered:
            assert results[(h.ip, p)] == ("filtered", "no-response", None, None)
        for p in h.tcp_closed:
            if p in ports:
                assert results[(h.ip, p)].state == "closed"
    if kind == "syn":
        assert {results[(h.ip, p)].ttl for h in hosts for p in h.tcp_open if p in ports} == {64}


@pytest.mark.parametrize("senders", [1, 2])
def test_syn_every_port_of_one_host(lab: Lab, senders: int) -> None:
    host = lab.host("filtered")
    results = _syn.syn_scan({host.ip: list(range(1, 65536))}, timeout_s=0.3, senders=senders)
    states = {port: o.state for (_ip, port), o in results.items()}
    assert len(states) == 65535
    assert {p for p, s in states.items() if s == "open"} == set(host.tcp_open)
    assert {p for p, s in states.items() if s == "filtered"} == set(host.tcp_filtered)


def test_syn_ignores_duplicate_and_out_of_range_ports(lab: Lab) -> None:
    host = lab.host("ssh")
    results = _syn.syn_scan({host.ip: [22, 22, 23, 0, 70000]}, timeout_s=0.3)
    assert {port: o.state for (_ip, port), o in results.items()} == {22: "open", 23: "closed"}


@pytest.mark.parametrize("kind", ["syn", "connect"])
def test_a_down_host_is_filtered_and_the_others_still_answer(lab: Lab, kind: str) -> None:
    ssh = lab.host("ssh")
    results = _scan(kind, {ssh.ip: [22, 23], lab.DOWN_IP: [22, 23]}, timeout_s=0.3, retries=0)
    assert results[(ssh.ip, 22)].state == "open" and results[(ssh.ip, 23)].state == "closed"
    assert {results[(lab.DOWN_IP, p)].state for p in (22, 23)} == {"filtered"}


@pytest.mark.parametrize("kind", ["syn", "connect"])
def test_stop_returns_early_and_progress_reaches_the_total(lab: Lab, kind: str) -> None:
    host = lab.host("ssh")
    seen: list[tuple[int, int]] = []
    results = _scan(kind, {host.ip: list(range(1, 2001))}, timeout_s=0.3,
                    progress=lambda done, total: seen.append((done, total)))
    assert len(results) == 2000
    assert seen and seen[-1] == (2000, 2000)
    stop = threading.Event()
    stop.set()
    start = time.monotonic()
    stopped = _scan(kind, {lab.DOWN_IP: list(range(1, 2001))}, timeout_s=5.0, stop=stop)
    assert time.monotonic() - start < 2.0
    assert all(o.state == "filtered" for o in stopped.values())


def test_syn_rate_limit_paces_the_sends(lab: Lab) -> None:
    host = lab.host("ssh")
    start = time.monotonic()
    results = _syn.syn_scan({host.ip: list(range(1, 401))}, timeout_s=0.3, packets_per_sec=2000)
    assert time.monotonic() - start >= 0.15             # 400 SYNs at 2000/s: at least 0.2 s
    assert sum(o.state == "open" for o in results.values()) == 1


@pytest.mark.parametrize("workers", [1, 2])
def test_connect_every_port_of_one_host_and_the_budget_comes_back(lab: Lab, workers: int) -> None:
    host = lab.host("filtered")
    budget = _connect.SocketBudget(64)
    results = _connect.connect_scan({host.ip: list(range(1, 65536))}, timeout_s=0.3, budget=budget,
                                    workers=workers)
    states = {port: o for (_ip, port), o in results.items()}
    assert len(states) == 65535
    assert {p for p, o in states.items() if o.state == "open"} == set(host.tcp_open)
    assert {p for p, o in states.items() if o.state == "filtered"} == set(host.tcp_filtered)
    assert states[8082] == ("closed", "conn-refused", None, None)
    assert budget.take(1000) == 64                       # every socket given back


def test_connect_times_out_a_dropped_port_from_the_measured_rtt(lab: Lab) -> None:
    host = lab.host("filtered")
    start = time.monotonic()
    # The host answers port 80 and 8082 first, so 8081's timeout is the floor (0.1 s), not 3 s.
    results = _connect.connect_scan({host.ip: [80, 8082, 8081]}, timeout_s=3.0, retries=1, per_host=2)
    assert time.monotonic() - start < 1.5
    assert results[(host.ip, 8081)] == ("filtered", "no-response", None, None)
    assert results[(host.ip, 80)].state == "open"
