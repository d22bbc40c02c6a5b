"""SSDP messages, UPnP descriptions (hostile ones too), the producer's rules, and minidlna in the lab."""

from __future__ import annotations

import asyncio
import ipaddress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lanscope.net.interfaces import Interface
from lanscope.runtime.stage import StageContext
from producers.ssdp import Config, Ssdp, build
from producers.ssdp.upnp import Description, Message, fetchable, parse_description, parse_message
from schemas import Advertised, HostAnnotated
from tests.lab import Lab

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
TV = "192.168.1.40"
RESPONSE = (b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\n"
            b"ST: urn:schemas-upnp-org:device:MediaRenderer:1"
            b"\r\nUSN: uuid:1234::urn:schemas-upnp-org:device:MediaRenderer:1\r\nSERVER: Linux/4.9 UPnP/1.0"
            b"\r\nLocation: http://192.168.1.40:9197/dmr\r\n\r\n")
DESCRIPTION = b"""<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><device>
<deviceType>urn:schemas-upnp-org:device:MediaRenderer:1</deviceType>
<friendlyName>[TV] Living Room</friendlyName><manufacturer>Samsung Electronics</manufacturer>
<modelName>UE55TU7105</modelName><modelNumber>AllShare1.0</modelNumber>
<deviceList><device><deviceType>urn:samsung.com:device:RemoteControlReceiver:1</deviceType></device></deviceList>
</device></root>"""


@pytest.mark.parametrize(("data", "expected"), [
    (RESPONSE, Message("response", "http://192.168.1.40:9197/dmr",
                       "urn:schemas-upnp-org:device:MediaRenderer:1", "Linux/4.9 UPnP/1.0")),
    (b"NOTIFY * HTTP/1.1\r\nNT: upnp:rootdevice\r\nNTS: ssdp:alive\r\nLOCATION: http://10.0.0.1/x\r\n\r\n",
     Message("alive", "http://10.0.0.1/x", "upnp:rootdevice", None)),
    (b"NOTIFY * HTTP/1.1\r\nNT: upnp:rootdevice\r\nNTS: ssdp:byebye\r\n\r\n",
     Message("byebye", None, "upnp:rootdevice", None)),
    (b"M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\n\r\n", None),
    (b"\xff\xfe garbage", None),
])
def test_parse_message(data: bytes, expected: Message | None) -> None:
    assert parse_message(data) == expected


def test_parse_description_reads_the_root_device_and_every_device_type() -> None:
    assert parse_description(DESCRIPTION) == Description(
        "[TV] Living Room", "Samsung Electronics", "UE55TU7105 AllShare1.0",
        ("urn:schemas-upnp-org:device:MediaRenderer:1", "urn:samsung.com:device:RemoteControlReceiver:1"))


@pytest.mark.parametrize("xml", [
    # Entity expansion ("billion laughs") and external entities: refused, not expanded.
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
    b"<root><device><friendlyName>&b;</friendlyName></device></root>",
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b"<root><device><friendlyName>&x;</friendlyName></device></root>",
    b"<root><nodevice/></root>",
    b"not xml at all",
], ids=["entities", "external-entity", "no-device", "garbage"])
def test_hostile_or_broken_descriptions_are_refused(xml: bytes) -> None:
    with pytest.raises(ValueError, match="not a UPnP description"):
        parse_description(xml)


@pytest.mark.parametrize(("location", "sender", "refused"), [
    ("http://192.168.1.40:9197/dmr", "192.168.1.40", None),
    ("http://192.168.1.41:9197/dmr", "192.168.1.40", "is not on the sender"),
    ("http://printer.local/desc.xml", "192.168.1.40", "does not name an IP address"),
    ("file:///etc/passwd", "192.168.1.40", "does not name an IP address"),
    ("ftp://192.168.1.40/desc.xml", "192.168.1.40", "is not http"),
])
def test_only_a_description_on_the_sender_itself_is_fetched(location: str, sender: str,
                                                            refused: str | None) -> None:
    why = fetchable(location, sender)
    assert why is None if refused is None else refused in (why or "")


class Guard:
    def __init__(self, refused: set[str]) -> None:
        self.refused = refused

    def refusal(self, address: str) -> str | None:
        return "out of scope" if address in self.refused else None


class FakeSsdp:
    def __init__(self, datagrams: list[tuple[bytes, str]]) -> None:
        self.datagrams = datagrams
        self.searched = 0
        self.closed = False

    async def start(self) -> None:
        pass

    def search(self, message: bytes) -> None:
        self.searched += 1

    async def next(self) -> tuple[bytes, str]:
        if not self.datagrams:
            await asyncio.Event().wait()
        return self.datagrams.pop(0)

    def close(self) -> None:
        self.closed = True


def _stage(datagrams: list[tuple[bytes, str]], fetched: list[str], *, refused: set[str] = set(),  # noqa: B006
           now: list[float] | None = None) -> tuple[Ssdp, FakeSsdp]:
    sock = FakeSsdp(datagrams)

    async def fetch(url: str, **_: Any) -> bytes:
        fetched.append(url)
        return DESCRIPTION

    async def interfaces() -> list[Interface]:
        return [Interface("eth0", 2, "02:00:00:00:00:01", 1500, "up", "ether", "veth",
                          [ipaddress.ip_interface("192.168.1.5/24")])]

    ticks = now if now is not None else [0.0]
    stage = Ssdp(Config(), open_ssdp=lambda a: sock, fetch=fetch, guard=Guard(refused), interfaces=interfaces,
                 clock=lambda: NOW, monotonic=lambda: ticks[0])
    return stage, sock


async def test_a_response_is_described_once_per_refresh() -> None:
    fetched: list[str] = []
    stage, sock = _stage([(RESPONSE, TV), (RESPONSE, TV)], fetched)
    stream = stage.listen()
    [event] = await asyncio.wait_for(anext(stream), 2)
    await stream.aclose()
    assert sock.closed and sock.searched >= 1
    assert isinstance(event, HostAnnotated)
    assert (event.source, event.ip, event.hostname, event.model, event.manufacturer) == (
        "ssdp", TV, "[TV] Living Room", "UE55TU7105 AllShare1.0", "Samsung Electronics")
    assert event.advertised == [Advertised(type="urn:samsung.com:device:RemoteControlReceiver:1"),
                                Advertised(type="urn:schemas-upnp-org:device:MediaRenderer:1")]
    assert fetched == ["http://192.168.1.40:9197/dmr"]


def test_out_of_scope_or_foreign_locations_are_not_fetched() -> None:
    fetched: list[str] = []
    now = [0.0]
    stage, _ = _stage([], fetched, refused={TV}, now=now)
    assert stage.to_fetch(RESPONSE, TV) is None                     # the sender is out of scope
    assert stage.to_fetch(RESPONSE, "192.168.1.41") is None         # not the sender's own URL
    now[0] = 4000
    stage._guard = Guard(set())                                      # in scope now; due again
    assert stage.to_fetch(RESPONSE, TV) == "http://192.168.1.40:9197/dmr"
    assert stage.to_fetch(RESPONSE, TV) is None                     # fetched within refresh_secs


def test_the_same_description_again_says_nothing_new() -> None:
    stage, _ = _stage([], [])
    description = parse_description(DESCRIPTION)
    assert len(stage.describe(TV, "http://192.168.1.40:9197/dmr", description)) == 1
    assert stage.describe(TV, "http://192.168.1.40:9197/dmr", description) == []
    # A second root device on the same address adds its types.
    [more] = stage.describe(TV, "http://192.168.1.40:7676/igd", Description(
        None, None, None, ("urn:schemas-upnp-org:device:InternetGatewayDevice:1",)))
    assert "urn:schemas-upnp-org:device:InternetGatewayDevice:1" in [a.type for a in more.advertised or []]
    assert more.hostname == "[TV] Living Room"


@pytest.mark.lab
async def test_minidlna_in_the_lab(lab: Lab, tmp_path: Path) -> None:
    stage = build(Config(), StageContext(data_dir=tmp_path))
    media = lab.host("media")

    async def described() -> HostAnnotated:
        async for batch in stage.listen():
            for event in batch:
                if isinstance(event, HostAnnotated) and event.ip == media.ip:
                    return event
        raise AssertionError("the listener ended")

    event = await asyncio.wait_for(described(), 15)
    assert (event.hostname, event.model, event.manufacturer) == ("Lab Media Server", "MiniDLNA 1.3.0",
                                                                 "Justin Maggard")
    assert [a.type for a in event.advertised or []] == ["urn:schemas-upnp-org:device:MediaServer:1"]
