"""The mDNS producer: its view per address on scripted changes, then on the lab's avahi daemons."""

from __future__ import annotations

import asyncio
import ipaddress
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lanscope.net.interfaces import Interface
from lanscope.runtime.stage import StageContext
from producers.mdns import Config, Mdns, build
from producers.mdns._io import Change, Resolved
from producers.mdns.stage import describe_txt
from schemas import Advertised, HostAnnotated
from tests.lab import Lab

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
IPP = Change("_ipp._tcp.local.", "Office._ipp._tcp.local.", "added")
PDL = Change("_pdl-datastream._tcp.local.", "Office._pdl-datastream._tcp.local.", "added")
PRINTER = Resolved("printer.local.", ("192.168.1.30",), 631,
                   {b"ty": b"HP LaserJet Pro M404dn", b"usb_MFG": b"HP", b"rp": b"ipp/print"})


def _stage() -> Mdns:
    async def interfaces() -> list[Interface]:
        return []
    return Mdns(Config(), open_browser=lambda a: ScriptedBrowser([]), interfaces=interfaces,
                clock=lambda: NOW)


@pytest.mark.parametrize(("txt", "expected"), [
    ({b"ty": b"HP LaserJet Pro M404dn", b"usb_MDL": b"LaserJet Pro M404dn", b"usb_MFG": b"HP"},
     ("HP LaserJet Pro M404dn", "HP")),
    ({b"md": b"Chromecast Ultra", b"fn": b"Living Room"}, ("Chromecast Ultra", None)),
    ({b"vendor": b"Synology", b"model": b"DS920+"}, ("DS920+", "Synology")),
    ({b"model": b"MacBookPro18,3"}, ("MacBookPro18,3", None)),
    ({b"product": b"(Brother MFC-L2710DW series)"}, ("Brother MFC-L2710DW series", None)),
    ({b"MODEL": b"\xff" * 300}, ("\ufffd" * 255, None)),           # hostile: decoded, capped
    ({b"txtvers": b"1", b"empty": None}, (None, None)),
])
def test_model_and_maker_from_txt(txt: dict[bytes, bytes | None],
                                  expected: tuple[str | None, str | None]) -> None:
    assert describe_txt(txt) == expected


def test_an_address_is_annotated_with_every_service_it_announces() -> None:
    stage = _stage()
    [first] = stage.apply(IPP, PRINTER)
    assert isinstance(first, HostAnnotated)
    assert (first.source, first.ip, first.mac, first.hostname, first.model, first.manufacturer) == (
        "mdns", "192.168.1.30", None, "printer.local", "HP LaserJet Pro M404dn", "HP")
    assert first.advertised == [Advertised(type="_ipp._tcp", name="Office", port=631)]
    [second] = stage.apply(PDL, Resolved("printer.local.", ("192.168.1.30",), 9100, {}))
    assert [a.type for a in second.advertised or []] == ["_ipp._tcp", "_pdl-datastream._tcp"]
    # The same announcement again (a periodic re-announce): nothing new to say.
    assert stage.apply(Change(IPP.type, IPP.name, "updated"), PRINTER) == []
    # A goodbye: the address announces one service fewer.
    [gone] = stage.apply(Change(PDL.type, PDL.name, "removed"), None)
    assert [a.type for a in gone.advertised or []] == ["_ipp._tcp"]
    [empty] = stage.apply(Change(IPP.type, IPP.name, "removed"), None)
    assert empty.advertised == [] and empty.hostname is None


class ScriptedBrowser:
    def __init__(self, script: list[tuple[Change, Resolved | None]]) -> None:
        self.script = script
        self.started = self.closed = False

    async def start(self) -> None:
        self.started = True

    async def next(self) -> Change:
        if not self.script:
            await asyncio.Event().wait()
        return self.script[0][0]

    async def resolve(self, change: Change, timeout_ms: int) -> Resolved | None:
        return self.script.pop(0)[1]

    async def close(self) -> None:
        self.closed = True


async def test_listen_resolves_and_publishes_and_an_unresolved_instance_is_skipped() -> None:

    browser = ScriptedBrowser([(PDL, None), (IPP, PRINTER)])
    opened: list[list[str]] = []

    async def interfaces() -> list[Interface]:
        return [Interface("br0", 3, "02:1a:5c:00:00:01", 1500, "up", "ether", "bridge",
                          [ipaddress.ip_interface("198.18.0.1/16"), ipaddress.ip_interface("fe80::1/64")])]

    def open_browser(addresses: list[str]) -> ScriptedBrowser:
        opened.append(addresses)
        return browser

    stage = Mdns(Config(), open_browser=open_browser, interfaces=interfaces, clock=lambda: NOW)
    stream = stage.listen()
    [event] = await asyncio.wait_for(anext(stream), 2)
    await stream.aclose()
    assert opened == [["198.18.0.1"]] and browser.started and browser.closed
    assert isinstance(event, HostAnnotated) and event.hostname == "printer.local"


@pytest.mark.lab
async def test_the_labs_avahi_hosts(lab: Lab, tmp_path: Path) -> None:
    stage = build(Config(), StageContext(data_dir=tmp_path))
    seen: dict[str, HostAnnotated] = {}
    wanted = {
        lab.host("printer").ip: ("printer.local", {"_ipp._tcp", "_pdl-datastream._tcp"},
                                 "HP LaserJet Pro M404dn"),
        lab.host("nas").ip: ("nas.local", {"_smb._tcp", "_http._tcp", "_adisk._tcp"}, "DS920+"),
        lab.host("desktop").ip: ("desktop.local", {"_ssh._tcp", "_sftp-ssh._tcp", "_workstation._tcp"},
                                 None),
    }

    def complete() -> bool:
        return all(ip in seen and {a.type for a in seen[ip].advertised or []} == types
                   for ip, (_, types, _) in wanted.items())

    async def browse() -> None:
        async for batch in stage.listen():
            for event in batch:
                assert isinstance(event, HostAnnotated)
                seen[event.ip or ""] = event
            if complete():
                return
    await asyncio.wait_for(browse(), 20)
    for ip, (name, _, model) in wanted.items():
        assert (seen[ip].hostname, seen[ip].model) == (name, model), seen[ip]
    assert seen[lab.host("nas").ip].manufacturer == "Synology"
