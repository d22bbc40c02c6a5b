"""Findings and the registry at two sites with the same private range: nothing is shared between them."""

from __future__ import annotations

from pathlib import Path

import msgspec

from schemas import ChangeKind, Event, Finding, HostChanged, HostRecord, RegistryEntry
from sinks.findings import Config as FindingsConfig
from sinks.findings import Findings
from sinks.registry import Config as RegistryConfig
from sinks.registry import Registry
from tests.factories import at, host_seen, port, ports_probed

MAC = "02:00:00:00:00:0a"


async def test_a_port_finding_of_one_site_is_not_resolved_by_the_same_address_at_another(
        tmp_path: Path) -> None:
    sink = Findings(FindingsConfig(state_file=str(tmp_path / "findings.json")))
    await sink.open()
    telnet = [port(23, service="telnet")]
    opened = await sink.write([msgspec.structs.replace(ports_probed("10.20.0.5", MAC, telnet, t=0),
                                                       site=site, id=f"{site}-0")
                               for site in ("paris", "berlin")])
    assert sorted((f.finding_id, f.site, f.ip) for f in opened if isinstance(f, Finding)) == [
        ("telnet-open/berlin/10.20.0.5/tcp/23", "berlin", "10.20.0.5"),
        ("telnet-open/paris/10.20.0.5/tcp/23", "paris", "10.20.0.5")]
    # Berlin's host closes telnet; paris's finding stays open.
    closed = await sink.write([msgspec.structs.replace(ports_probed("10.20.0.5", MAC, [], t=10),
                                                       site="berlin", id="berlin-10")])
    assert [(f.finding_id, f.state.value) for f in closed if isinstance(f, Finding)] == [
        ("telnet-open/berlin/10.20.0.5/tcp/23", "resolved")]
    await sink.close()
    again = Findings(FindingsConfig(state_file=str(tmp_path / "findings.json")))
    await again.open()
    assert list(again.state.open) == ["telnet-open/paris/10.20.0.5/tcp/23"]


async def test_duplicate_ip_is_judged_within_a_site(tmp_path: Path) -> None:
    sink = Findings(FindingsConfig(state_file=str(tmp_path / "findings.json")))
    await sink.open()
    seen: list[Event] = [msgspec.structs.replace(host_seen("10.20.0.5", mac, t=0), site=site, id=site)
                         for site, mac in (("paris", MAC), ("berlin", "02:00:00:00:00:0b"))]
    assert [f for f in await sink.write(seen) if isinstance(f, Finding)] == []


def changed(site: str, ip: str = "10.20.0.5") -> HostChanged:
    key = f"{site}/{MAC}"
    host = HostRecord(host_key=key, mac=MAC, ip=ip, ips=[ip], last_seen=at(0), site=site)
    return HostChanged(host_key=key, observed_at=at(0), source="host_state", kind=ChangeKind.NEW, host=host,
                       site=site, id=f"hc-{site}")


async def test_the_registry_keeps_one_entry_per_site_for_the_same_address(tmp_path: Path) -> None:
    sink = Registry(RegistryConfig(state_file=str(tmp_path / "registry.json")))
    await sink.open()
    written = await sink.write([changed("paris"), changed("berlin")])
    entries = [e for e in written if isinstance(e, RegistryEntry)]
    assert sorted((e.entry_id, e.site, e.action) for e in entries) == [
        (f"berlin/{MAC}", "berlin", "created"), (f"paris/{MAC}", "paris", "created")]
    await sink.close()
