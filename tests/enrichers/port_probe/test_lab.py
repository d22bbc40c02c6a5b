"""port_probe against the lab's real servers, on the wire (no mocks).

Each server must be identified with the product and the upstream version that
dpkg reports for its package (PostgreSQL and Postfix do not reveal a version
to an unauthenticated client, so only the product is checked for them).
"""

from __future__ import annotations

import pytest

from enrichers.port_probe.stage import Config, PortProbe, Prober
from lanscope.net.ports import PortSpec
from schemas import PortsProbed, PortState
from tests.factories import host_seen, scope_guard
from tests.lab import SERVED, Lab, Served

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def reports(lab: Lab) -> dict[str, object]:
    import asyncio

    prober = Prober(Config(connect_timeout_ms=500, udp=""))
    ips = [lab.host(s.host).ip for s in SERVED]
    ports = tuple(sorted({s.port for s in SERVED}))
    return asyncio.run(prober.probe(ips, PortSpec(tcp=ports), scan_type="connect"))  # type: ignore[return-value]


@pytest.mark.parametrize("served", SERVED, ids=[s.host for s in SERVED])
def test_real_server_is_identified(lab: Lab, reports: dict[str, object], served: Served) -> None:
    report = reports[lab.host(served.host).ip]
    result = next(p for p in report.ports if p.port == served.port)      # type: ignore[attr-defined]
    assert result.state == PortState.OPEN and result.reason == "syn-ack"
    assert (result.service, result.product) == (served.service, served.product)
    if served.versioned:
        assert result.version == lab.upstream_version(served.kind)
    assert result.confidence is not None and result.confidence >= 9
    assert result.banner


def test_openssh_gives_a_debian_os_hint(lab: Lab, reports: dict[str, object]) -> None:
    report = reports[lab.host("ssh").ip]
    assert report.os is not None and report.os.name.startswith("Debian")   # type: ignore[attr-defined]


@pytest.mark.parametrize("scan_type", ["connect", "syn"])
async def test_open_closed_filtered(lab: Lab, scan_type: str) -> None:
    host = lab.host("filtered")
    prober = Prober(Config(connect_timeout_ms=300, udp=""))
    reports = await prober.probe([host.ip], PortSpec(tcp=(80, 8081, 8082)), scan_type=scan_type,
                                 fingerprint=False)
    states = {p.port: (p.state.value, p.reason) for p in reports[host.ip].ports}
    assert states[80][0] == "open" and states[80][1] == "syn-ack"
    assert states[8081] == ("filtered", "no-response")
    assert states[8082] == ("closed", "conn-refused" if scan_type == "connect" else "reset")
    assert reports[host.ip].scan_type == scan_type


async def test_syn_scan_records_ttl_and_agrees_with_connect(lab: Lab) -> None:
    host = lab.host("ssh")
    ports = PortSpec(tcp=tuple(range(1, 1025)))
    prober = Prober(Config(connect_timeout_ms=300, udp=""))
    syn = (await prober.probe([host.ip], ports, scan_type="syn", fingerprint=False))[host.ip]
    connect = (await prober.probe([host.ip], ports, scan_type="connect", fingerprint=False))[host.ip]
    open_syn = [p.port for p in syn.ports if p.state == PortState.OPEN]
    assert open_syn == [p.port for p in connect.ports if p.state == PortState.OPEN] == list(host.tcp_open)
    assert all(p.reason_ttl == 64 for p in syn.ports if p.state == PortState.OPEN)
    assert syn.os is not None and syn.os.family == "linux"


async def test_udp_dns_is_open_and_closed_port_is_closed(lab: Lab) -> None:
    prober = Prober(Config(connect_timeout_ms=500))
    reports = await prober.probe([lab.DNS_IP], PortSpec(udp=(53, 54)))
    states = {p.port: p for p in reports[lab.DNS_IP].ports}
    assert states[53].state == PortState.OPEN and states[53].reason == "udp-response"
    assert states[53].product == "dnsmasq"
    assert states[54].state == PortState.CLOSED and states[54].reason == "port-unreach"


# 15 UDP ports nothing in the lab listens on but the snmp host's 161.
UDP_PORTS = (53, 67, 68, 69, 123, 137, 138, 161, 162, 500, 514, 520, 1900, 4500, 5353)


async def test_udp_closed_ports_outlast_the_icmp_rate_limit(lab: Lab) -> None:
    """Linux answers a burst of 6 UDP probes to closed ports with port-unreachables, then one
    per second (net.ipv4.icmp_ratelimit): 9 of 15 closed ports came back open|filtered. Paced
    and retried per host as nmap does, every closed port is closed (two hosts at once, each
    with its own rate limit; f05 and f06 are probed by no other test, so their buckets are full)."""
    hosts = [lab.host("f05"), lab.host("f06"), lab.host("snmp")]
    reports = await Prober(Config(connect_timeout_ms=1000)).probe([h.ip for h in hosts],
                                                                  PortSpec(udp=UDP_PORTS))
    for host in hosts:
        states = {p.port: (p.state.value, p.reason) for p in reports[host.ip].ports}
        expected = {port: ("open", "udp-response") if port in host.udp_open else ("closed", "port-unreach")
                    for port in UDP_PORTS}
        assert states == expected, host.name


async def test_snmp_sysdescr(lab: Lab) -> None:
    host = lab.host("snmp")
    reports = await Prober(Config()).probe([host.ip], PortSpec(udp=(161,)))
    [result] = reports[host.ip].ports
    assert result.state == PortState.OPEN
    assert result.product == "net-snmp"
    assert result.extra_info and "sysDescr:" in result.extra_info


async def test_enricher_publishes_ports_probed(lab: Lab) -> None:
    host = lab.host("ssh")
    stage = PortProbe(Config(tcp="20-30", udp="", connect_timeout_ms=300), scope=scope_guard())
    [event] = await stage.handle(host_seen(host.ip, host.mac))
    assert isinstance(event, PortsProbed)
    opened = [(p.port, p.product) for p in event.ports if p.state == PortState.OPEN]
    assert opened == [(22, "OpenSSH")]
    assert {p.state for p in event.ports} == {PortState.OPEN, PortState.CLOSED}   # 10 closed: listed
    assert event.scanned == ["tcp:20-30"]
    assert event.os is not None
