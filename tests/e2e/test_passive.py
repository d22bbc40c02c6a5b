"""End to end: the passive sources and device types through `lanscope run` on the lab.

One `lanscope run` process with the passive listener, mDNS, SSDP, the ARP
sweep, NetBIOS, SNMP, MAC vendors, DNS names and host_state, on a real
nats-server and DuckDB file. Every lab host that declares a device type must
get it, with the names each source gives (mDNS, NetBIOS, SSDP, SNMP, the DHCP
client's own) and the services it announces; a host that joins by DHCP must
be `new` within seconds of its first packet. Waits poll with deadlines.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from lanscope.config import NatsConfig
from lanscope.runtime.bus import Bus
from lanscope.runtime.embedded import EmbeddedNats
from schemas import ChangeKind, HostChanged, decode
from tests.e2e.harness import Lanscope, fresh_streams, lab_config, sql
from tests.lab import Lab
from tests.lab.join import join, leave
from tests.runtime.stages import eventually

pytestmark = [pytest.mark.lab, pytest.mark.nats, pytest.mark.slow]
STAGES = ("passive", "mdns", "ssdp", "arp_sweep", "netbios", "snmp", "mac_vendor", "dns_names", "host_state")
JOIN = 951


def config_text(lab: Lab, data_dir: Path, url: str) -> str:
    return lab_config(lab, data_dir, url, offlink=False) + """\
producers:
  arp_sweep: {interval_secs: 5}
  ssdp: {search_secs: 10}
enrichers:
  snmp: {community: public, negative_secs: 5, refresh_secs: 5}
  netbios: {negative_secs: 5}
sinks:
  host_state: {flush_ms: 100}
"""


@pytest.fixture(scope="module")
def running(lab: Lab, natsd: EmbeddedNats,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Lanscope]]:
    url = natsd.start()
    tmp = tmp_path_factory.mktemp("passive")
    config = tmp / "config.yaml"
    config.write_text(config_text(lab, tmp / "var", url))

    asyncio.run(fresh_streams(url))
    process = Lanscope(config, STAGES, tmp / "lanscope.log")
    process.start()
    try:
        yield url, process
    finally:
        process.stop()
        leave(lab, JOIN)


@pytest.fixture
async def bus(running: tuple[str, Lanscope]) -> AsyncIterator[Bus]:
    async with await Bus.connect(NatsConfig(url=running[0]), name="lanscope-e2e-passive") as connected:
        yield connected


async def test_a_host_joining_by_dhcp_is_new_within_seconds(lab: Lab, bus: Bus,
                                                            running: tuple[str, Lanscope]) -> None:
    new: dict[str, float] = {}

    async def collect(msg: Any) -> None:
        event = decode(msg.data)
        if isinstance(event, HostChanged) and event.kind is ChangeKind.NEW:
            new.setdefault(event.host_key, time.time())

    sub = await bus.nc.subscribe("lanscope.host.changed.new", cb=collect)
    try:
        # The pipeline is listening once the lab's own hosts start to appear.
        await eventually(lambda: len(new) > 5, timeout=30, what="the lab's hosts", context=running[1].tail)
        joined = await asyncio.to_thread(join, lab, JOIN, hostname="join-951")
        await eventually(lambda: joined.mac in new, timeout=10, what="new for the joined host",
                         context=running[1].tail)
        took = new[joined.mac] - joined.asked_at
        assert took < 5, f"join -> new took {took:.2f}s"
    finally:
        await sub.unsubscribe()
        leave(lab, JOIN)


async def test_every_lab_device_gets_its_type_and_its_names(lab: Lab, bus: Bus,
                                                            running: tuple[str, Lanscope]) -> None:
    # The DHCP host asks for its lease again now that the listener is there (a device joining).
    lab.stop_service("udhcpc")
    lab.start_service("udhcpc")
    typed = {h.mac: h for h in lab.live_hosts(lab.LIVE_24) if h.device_type}
    assert len(typed) >= 20
    rows: dict[str, dict[str, Any]] = {}
    wrong: list[str] = []

    def row(host: str) -> dict[str, Any]:
        return rows.get(lab.host(host).mac) or {}

    def names(host: str) -> dict[str, str]:
        value = row(host).get("names") or {}
        return json.loads(value) if isinstance(value, str) else value

    def check() -> list[str]:
        problems = [f"{h.name}: {rows.get(mac, {}).get('device_type')} is not {h.device_type}"
                    for mac, h in typed.items() if rows.get(mac, {}).get("device_type") != h.device_type]
        printer, nas, media, desktop, snmp, iot = (row(n) for n in (
            "printer", "nas", "media", "desktop", "snmp", "iot"))
        facts = {
            "printer mdns name": names("printer").get("mdns") == "printer.local",
            "printer hostname from DNS": printer.get("hostname") == "printer.lab.test",
            "printer announces IPP": "_ipp._tcp" in (printer.get("advertised") or []),
            "printer model": printer.get("model") == "HP LaserJet Pro M404dn",
            "nas names": (names("nas").get("mdns"), names("nas").get("netbios")) == ("nas.local", "NAS"),
            "nas model, maker, workgroup": (nas.get("model"), nas.get("manufacturer"), nas.get("workgroup"))
            == ("DS920+", "Synology", "LAB"),
            "media ssdp name": names("media").get("ssdp") == "Lab Media Server",
            "media UPnP type": "urn:schemas-upnp-org:device:MediaServer:1" in (media.get("advertised") or []),
            "desktop netbios name": names("desktop").get("netbios") == "DESKTOP",
            "desktop workstation": "_workstation._tcp" in (desktop.get("advertised") or []),
            "snmp sysName": names("snmp").get("snmp") == "snmp.lab.test",
            "snmp sysObjectID": snmp.get("sys_object_id") == "1.3.6.1.4.1.8072.3.2.10",
            "snmp LLDP neighbour": any("desktop" in n for n in snmp.get("neighbours") or []),
            "iot DHCP name": names("iot").get("passive") == "thermostat",
            "iot DHCP client": (iot.get("dhcp_vendor_class") or "").startswith("udhcp "),
        }
        problems += [what for what, ok in facts.items() if not ok]
        for host in ("printer", "nas", "media", "desktop", "iot"):
            if (row(host).get("device_type_confidence") or 0) < 4 or not row(host).get("device_type_reasons"):
                problems.append(f"{host}: confidence and reasons")
        return problems

    async def converged() -> bool:
        found = await sql(bus, "SELECT mac, hostname, names, device_type, device_type_confidence, "
                               "device_type_reasons, advertised, model, manufacturer, workgroup, neighbours, "
                               "dhcp_vendor_class, sys_object_id FROM hosts WHERE mac IS NOT NULL")
        if found is None:
            return False
        rows.clear()
        rows.update({r["mac"]: r for r in found})
        wrong[:] = check()
        return not wrong

    await eventually(converged, timeout=90, what="every declared device type and name", interval=1,
                     context=lambda: running[1].tail() + "\nstill wrong: " + "; ".join(wrong))
    # The device type is a fact with history: the printer's came to printer, from unknown or
    # a weaker guess, and the row says which source brought it.
    history = await sql(bus, f"SELECT old, new, source FROM history WHERE host_key = "
                             f"'{lab.host('printer').mac}' AND field = 'device_type' ORDER BY observed_at")
    assert history and json.loads(history[-1]["new"]) == "printer"
