"""The SNMP enricher: MIB values into a system, the stage's rules, and the lab's snmpd + lldpd."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from enrichers.snmp import Config, Snmp, build
from enrichers.snmp.mib import system_of
from lanscope.config import parse
from schemas import HostAnnotated, LldpNeighbour, SnmpInterface
from tests.factories import host_seen
from tests.lab import Lab

SWITCH = {
    "1.3.6.1.2.1.1.5.0": b"sw1.example",
    "1.3.6.1.2.1.1.1.0": b"Cisco IOS Software, C2960X Software (C2960X-UNIVERSALK9-M)\r\nCompiled",
    "1.3.6.1.2.1.1.2.0": "1.3.6.1.4.1.9.1.1208",
    "1.3.6.1.2.1.1.7.0": 2,
    "1.3.6.1.2.1.2.2.1.2.1": b"GigabitEthernet1/0/1",
    "1.3.6.1.2.1.2.2.1.3.1": 6,
    "1.3.6.1.2.1.2.2.1.6.1": bytes.fromhex("00000c000001"),
    "1.3.6.1.2.1.31.1.1.1.1.1": b"Gi1/0/1",
    "1.3.6.1.2.1.2.2.1.2.10": b"Vlan1",
    "1.3.6.1.2.1.2.2.1.6.10": b"",
    # lldpRemTable: column.timeMark.localPort.index
    "1.0.8802.1.1.2.1.4.1.1.4.0.1.3": 4,
    "1.0.8802.1.1.2.1.4.1.1.5.0.1.3": bytes.fromhex("00142200001a"),
    "1.0.8802.1.1.2.1.4.1.1.6.0.1.3": 5,
    "1.0.8802.1.1.2.1.4.1.1.7.0.1.3": b"eth0",
    "1.0.8802.1.1.2.1.4.1.1.9.0.1.3": b"desktop",
    "1.0.8802.1.1.2.1.4.1.1.4.0.2.7": 5,
    "1.0.8802.1.1.2.1.4.1.1.5.0.2.7": bytes([1, 198, 18, 0, 30]),
    "1.0.8802.1.1.2.1.3.7.1.4.1": b"Gi1/0/1",
}


def test_system_of_a_switch() -> None:
    system = system_of(SWITCH)
    assert (system.sys_name, system.sys_object_id, system.sys_services) == (
        "sw1.example", "1.3.6.1.4.1.9.1.1208", 2)
    assert system.sys_descr == "Cisco IOS Software, C2960X Software (C2960X-UNIVERSALK9-M)  Compiled"
    assert system.interfaces == [SnmpInterface(index=1, name="Gi1/0/1", mac="00:00:0c:00:00:01", type=6),
                                 SnmpInterface(index=10, name="Vlan1")]
    assert system.neighbours == [
        LldpNeighbour(local_port="Gi1/0/1", chassis_id="00:14:22:00:00:1a", port_id="eth0",
                      system_name="desktop"),
        LldpNeighbour(local_port="2", chassis_id="198.18.0.30")]


def test_hostile_values_are_capped_and_odd_indexes_skipped() -> None:
    system = system_of({"1.3.6.1.2.1.1.5.0": b"\xff" * 1000, "1.3.6.1.2.1.1.2.0": b"not an oid",
                        "1.3.6.1.2.1.2.2.1.2.x": b"eth9", "1.0.8802.1.1.2.1.4.1.1.9.bad": b"x"})
    assert system.sys_name is not None and len(system.sys_name) == 255
    assert system.sys_object_id is None and system.interfaces == [] and system.neighbours == []


class Allow:
    def refusal(self, address: str) -> str | None:
        return "out of scope" if address.startswith("8.") else None


async def test_the_stage_annotates_once_per_refresh_and_skips_out_of_scope() -> None:
    asked: list[str] = []

    async def ask(ip: str, **_: Any) -> dict[str, Any] | None:
        asked.append(ip)
        return SWITCH if ip == "198.18.0.28" else None

    stage = Snmp(Config(community="public"), ask=ask, guard=Allow(), monotonic=lambda: 0.0)  # type: ignore[arg-type]
    [event] = await stage.handle(host_seen("198.18.0.28", "00:00:0c:00:00:1c"))
    assert isinstance(event, HostAnnotated) and event.snmp is not None
    assert (event.source, event.hostname, event.snmp.sys_object_id) == (
        "snmp", "sw1.example", "1.3.6.1.4.1.9.1.1208")
    assert await stage.handle(host_seen("198.18.0.28", "00:00:0c:00:00:1c")) == []
    assert await stage.handle(host_seen("198.18.0.10")) == []
    assert await stage.handle(host_seen("8.8.8.8")) == []
    assert asked == ["198.18.0.28", "198.18.0.10"]


@pytest.mark.lab
async def test_the_labs_snmpd_with_lldp_neighbours(lab: Lab, tmp_path: Path) -> None:
    import asyncio

    config = parse({"enrichers": {"snmp": {"community": "public", "negative_secs": 0, "refresh_secs": 0}}},
                   env={})
    stage = build(config.enrichers.snmp, config.stage_context())
    snmp, desktop = lab.host("snmp"), lab.host("desktop")

    async def with_neighbour() -> HostAnnotated:
        while True:       # lldpd's first LLDP frames may not have been exchanged yet
            [event] = await stage.handle(host_seen(snmp.ip, snmp.mac))
            assert isinstance(event, HostAnnotated)
            if event.snmp and event.snmp.neighbours:
                return event
            await asyncio.sleep(0.5)

    event = await asyncio.wait_for(with_neighbour(), 40)
    system = event.snmp
    assert system is not None
    assert (event.hostname, system.sys_object_id) == ("snmp.lab.test", "1.3.6.1.4.1.8072.3.2.10")
    assert system.sys_descr == "lanscope lab snmpd on snmp.lab.test (Net-SNMP)"
    assert any(i.mac == snmp.mac for i in system.interfaces)
    [neighbour] = system.neighbours
    assert (neighbour.system_name, neighbour.chassis_id, neighbour.port_description) == (
        "desktop", desktop.mac, "eth0")
    # A wrong community is silence, not an error.
    wrong = parse({"enrichers": {"snmp": {"community": "private"}}}, env={})
    stage = build(wrong.enrichers.snmp, wrong.stage_context())
    assert await stage.handle(host_seen(snmp.ip, snmp.mac)) == []
