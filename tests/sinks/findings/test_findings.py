"""Findings: every shipped rule opens and resolves; state survives a restart; redelivery is harmless."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas import ChangeKind, DhcpLease, Finding, FindingState, HostChanged, HostRecord, TlsCert
from sinks.findings import Config, Findings, RulesError, parse_rules, version_tuple
from tests.factories import at, host_seen, port, ports_probed
from tests.sinks.disk import on_a_full_disk

GW_MAC = "02:00:00:00:00:01"


def clock() -> datetime:
    return datetime(2026, 1, 2, tzinfo=UTC)


async def opened(tmp_path: Path, **overrides: Any) -> Findings:
    overrides.setdefault("gateways", {"198.18.0.254": GW_MAC})
    overrides.setdefault("dhcp_servers", ["198.18.0.254"])
    overrides.setdefault("static_ranges", ["198.18.0.0/28"])
    sink = Findings(Config(state_file=str(tmp_path / "findings.json"), window_secs=60, **overrides),
                    clock=clock)
    await sink.open()
    return sink


def rules_of(findings: list[Any]) -> list[tuple[str, str]]:
    return sorted((f.rule, f.state.value) for f in findings if isinstance(f, Finding))


EXPIRED = TlsCert(subject="CN=x", not_after=datetime(2020, 1, 1, tzinfo=UTC), self_signed=False)
SELF_SIGNED = TlsCert(subject="CN=lab", not_after=datetime(2030, 1, 1, tzinfo=UTC), self_signed=True)


@pytest.mark.parametrize(("result", "rule"), [
    (port(23, service="telnet"), "telnet-open"),
    (port(2323, service="telnet"), "telnet-open"),
    (port(21, service="ftp", banner="220 (vsFTPd 3.0.3)"), "ftp-open"),
    (port(445, service="microsoft-ds"), "smb-exposed"),
    (port(3389), "rdp-exposed"),
    (port(5900, service="vnc"), "vnc-exposed"),
    (port(6379, service="redis", auth_required=False), "redis-no-auth"),
    (port(27017, service="mongodb", auth_required=False), "mongodb-no-auth"),
    (port(9200, service="elasticsearch", auth_required=False), "elasticsearch-no-auth"),
    (port(22, service="ssh", product="OpenSSH", version="7.4"), "openssh-outdated"),
    (port(22, service="ssh", product="OpenSSH", banner="SSH-2.0-OpenSSH_8.2p1 Ubuntu"), "openssh-outdated"),
    (port(443, service="https", tls=EXPIRED), "tls-cert-expired"),
    (port(8443, service="https", tls=SELF_SIGNED), "tls-cert-self-signed"),
])
async def test_port_rule_opens_and_resolves(tmp_path: Path, result: Any, rule: str) -> None:
    sink = await opened(tmp_path)
    first = await sink.write([ports_probed(ports=[result], t=0)])
    assert rules_of(first) == [(rule, "opened")]
    finding = first[0]
    assert finding.port == result.port and finding.first_seen == at(0) and finding.evidence
    assert await sink.write([ports_probed(ports=[result], t=10)]) == []      # still open: no event
    resolved = await sink.write([ports_probed(ports=[], t=20)])
    assert rules_of(resolved) == [(rule, "resolved")]
    assert resolved[0].first_seen == at(0) and resolved[0].last_seen == at(10)
    assert resolved[0].finding_id == finding.finding_id and resolved[0].id != finding.id


@pytest.mark.parametrize("result", [
    port(6379, service="redis", auth_required=True),
    port(6379, service="redis"),                       # unknown: not a finding
    port(22, service="ssh", product="OpenSSH", version="9.6p1"),
    port(22, service="ssh", product="OpenSSH", version="8.8"),
    port(22, service="ssh", product="Dropbear", version="2020.81"),
    port(23, "closed", service="telnet"),
    port(443, service="https", tls=TlsCert(not_after=datetime(2030, 1, 1, tzinfo=UTC), self_signed=False)),
])
async def test_port_rule_does_not_fire(tmp_path: Path, result: Any) -> None:
    sink = await opened(tmp_path)
    assert await sink.write([ports_probed(ports=[result], t=0)]) == []


async def test_the_same_ports_again_are_judged_again_when_a_certificate_can_expire(tmp_path: Path) -> None:
    sink = await opened(tmp_path)
    https = [port(443, service="https", tls=TlsCert(subject="CN=x", not_after=at(5), self_signed=False))]
    assert await sink.write([ports_probed(ports=https, t=0)]) == []
    # The same snapshot, now past the certificate's end: the last verdict does not stand.
    assert rules_of(await sink.write([ports_probed(ports=https, t=10)])) == [("tls-cert-expired", "opened")]


async def test_an_older_snapshot_does_not_resolve_a_newer_finding(tmp_path: Path) -> None:
    sink = await opened(tmp_path)
    await sink.write([ports_probed(ports=[port(23, service="telnet")], t=10)])
    assert await sink.write([ports_probed(ports=[], t=5)]) == []


async def test_open_findings_survive_a_restart(tmp_path: Path) -> None:
    sink = await opened(tmp_path)
    await sink.write([ports_probed(ports=[port(23, service="telnet")], t=0)])
    await sink.close()
    again = await opened(tmp_path)
    assert rules_of(await again.write([ports_probed(ports=[], t=10)])) == [("telnet-open", "resolved")]


async def test_a_probe_resolves_only_the_findings_of_its_ip(tmp_path: Path) -> None:
    sink = await opened(tmp_path)
    telnet = [port(23, service="telnet")]
    await sink.write([ports_probed("198.18.0.10", "02:00:00:00:00:10", telnet, t=0),
                      ports_probed("198.18.0.11", "02:00:00:00:00:11", telnet, t=0)])
    resolved = await sink.write([ports_probed("198.18.0.10", "02:00:00:00:00:10", [], t=10)])
    assert [(f.ip, f.state.value) for f in resolved] == [("198.18.0.10", "resolved")]
    await sink.close()
    again = await opened(tmp_path)        # the open findings by IP are rebuilt from the file
    assert await again.write([ports_probed("198.18.0.10", "02:00:00:00:00:10", [], t=20)]) == []
    resolved = await again.write([ports_probed("198.18.0.11", "02:00:00:00:00:11", [], t=20)])
    assert [(f.ip, f.state.value) for f in resolved] == [("198.18.0.11", "resolved")]


async def test_a_redelivered_input_returns_the_same_events(tmp_path: Path) -> None:
    sink = await opened(tmp_path)
    event = ports_probed(ports=[port(23, service="telnet")], t=0, id="in-1")
    first = await sink.write([event])
    again = await opened(tmp_path)      # crashed after saving, before the ack
    assert await again.write([event]) == first


async def test_a_failed_save_is_made_good_by_the_redelivery(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    sink = await opened(tmp_path)
    await sink.write([ports_probed(ports=[], t=0, id="in-0")])        # saved a moment ago
    event = ports_probed(ports=[port(23, service="telnet")], t=1, id="in-1")
    await on_a_full_disk(monkeypatch, "sinks.findings._io.write_atomic", lambda: sink.write([event]))
    first = sink.state.outbox["in-1"]
    assert await sink.write([event]) == first          # the redelivery: the same event, saved
    again = await opened(tmp_path)
    assert [f.rule for f in again.state.open.values()] == ["telnet-open"]
    assert again.state.outbox["in-1"] == first


async def test_rogue_dhcp_server_opens_then_resolves_after_the_window(tmp_path: Path) -> None:
    sink = await opened(tmp_path)
    lease = DhcpLease(address="198.18.0.50", server="198.18.0.66")
    assert await sink.write([host_seen(source="dhcp", lease=lease, t=0,
                                       ip="198.18.0.50", mac=None)]) != []
    assert await sink.write([host_seen(source="dhcp", lease=DhcpLease(server="198.18.0.254"), t=10)]) == []
    assert rules_of(await sink.write([host_seen(t=100)])) == [("rogue-dhcp-server", "resolved")]


async def test_arp_spoofing_of_the_gateway(tmp_path: Path) -> None:
    sink = await opened(tmp_path)
    assert await sink.write([host_seen("198.18.0.254", GW_MAC, t=0)]) == []
    spoof = await sink.write([host_seen("198.18.0.254", "02:00:00:00:00:66", t=1)])
    assert rules_of(spoof) == [("arp-spoofing", "opened"), ("duplicate-ip", "opened")]
    assert "02:00:00:00:00:66 answered for gateway" in spoof[0].evidence


async def test_duplicate_ip_needs_two_macs_within_the_window(tmp_path: Path) -> None:
    sink = await opened(tmp_path)
    await sink.write([host_seen("198.18.0.40", "02:00:00:00:00:40", t=0)])
    assert await sink.write([host_seen("198.18.0.40", "02:00:00:00:00:41", t=100)]) == []
    dup = await sink.write([host_seen("198.18.0.40", "02:00:00:00:00:40", t=110)])
    assert rules_of(dup) == [("duplicate-ip", "opened")]
    assert await sink.write([host_seen("198.18.0.40", "02:00:00:00:00:40", t=150)]) == []
    assert rules_of(await sink.write([host_seen("198.18.0.41", t=250)])) == [("duplicate-ip", "resolved")]


async def test_stale_entries_are_not_duplicate_evidence(tmp_path: Path) -> None:
    sink = await opened(tmp_path)
    await sink.write([host_seen("198.18.0.40", "02:00:00:00:00:40", t=0)])
    assert await sink.write([host_seen("198.18.0.40", "02:00:00:00:00:41", alive=False, t=1)]) == []


def changed(kind: ChangeKind, ip: str, t: float) -> HostChanged:
    return HostChanged(host_key="02:00:00:00:00:05", observed_at=at(t), source="host_state", kind=kind,
                       host=HostRecord(host_key="02:00:00:00:00:05", mac="02:00:00:00:00:05", ip=ip))


async def test_new_host_in_a_static_range_opens_and_resolves_when_gone(tmp_path: Path) -> None:
    sink = await opened(tmp_path)
    assert await sink.write([changed(ChangeKind.NEW, "198.18.0.200", 0)]) == []
    await sink.write([changed(ChangeKind.GONE, "198.18.0.200", 1)])
    assert rules_of(await sink.write([changed(ChangeKind.NEW, "198.18.0.5", 2)])) == [
        ("new-host-in-static-range", "opened")]
    assert rules_of(await sink.write([changed(ChangeKind.GONE, "198.18.0.5", 3)])) == [
        ("new-host-in-static-range", "resolved")]


def test_shipped_rules_parse() -> None:
    from sinks.findings._io import SHIPPED_RULES

    rules = parse_rules(yaml.safe_load(SHIPPED_RULES.read_text()), "rules.yaml")
    assert len(rules) == 15


@pytest.mark.parametrize(("tree", "message"), [
    ({"rules": [{"id": "x", "title": "t", "severity": "high", "category": "c"}]},
     r"rules\[0\] \(x\): give exactly one of `match` or `check`"),
    ({"rules": [{"id": "x", "title": "t", "severity": "bad", "category": "c", "check": "arp_spoof"}]},
     r"Invalid enum value 'bad'"),
    ({"rules": [{"id": "x", "title": "t", "severity": "low", "category": "c", "match": {"ports": ["23"]}}]},
     r"port '23' is not like tcp/23"),
    ({"rules": [{"id": "x", "title": "t", "severity": "low", "category": "c", "match": {"prots": []}}]},
     r"unknown field `prots`"),
])
def test_bad_rules_are_named(tree: Any, message: str) -> None:
    with pytest.raises(RulesError, match=message):
        parse_rules(tree, "rules.yaml")


@pytest.mark.parametrize(("text", "expected"), [
    ("9.2p1", (9, 2, 1)), ("OpenSSH_7.4", (7, 4, 0)), ("8.8", (8, 8, 0)), ("", None), ("x", None),
])
def test_version_tuple(text: str, expected: tuple[int, ...] | None) -> None:
    assert version_tuple(text) == expected


async def test_findings_of_one_state_round_trip_through_the_file(tmp_path: Path) -> None:
    sink = await opened(tmp_path)
    await sink.write([ports_probed(ports=[port(23, service="telnet")], t=0)])
    assert (tmp_path / "findings.json").exists()
    again = await opened(tmp_path)
    assert [f.state for f in again.state.open.values()] == [FindingState.OPENED]


async def test_banner_evidence_is_escaped_once(tmp_path: Path) -> None:
    """A stored banner is already escaped text (`\\r\\n`, `\\xNN`); repr() escaped it again, so
    JSON carried `\\\\r\\\\n` (and a quote pair) where the banner has `\\r\\n`."""
    import msgspec

    banner = "220 (vsFTPd 3.0.3)\\r\\n\\x00"
    sink = await opened(tmp_path)
    [finding] = await sink.write([ports_probed(ports=[port(21, service="ftp", banner=banner)])])
    assert isinstance(finding, Finding)
    assert finding.evidence.endswith(f"banner: {banner}")
    encoded = msgspec.json.encode(finding).decode()
    assert '\\\\r\\\\n\\\\x00' in encoded and '\\\\\\\\r' not in encoded
