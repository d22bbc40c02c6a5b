"""The passive listener stage on frames from a fake tap: events, storm guard, kinds, roles."""

from __future__ import annotations

import asyncio
import ipaddress
from datetime import UTC, datetime

import msgspec
import pytest

from lanscope.net.interfaces import Interface
from producers.passive.stage import Config, Limiter, Passive
from schemas import Advertised, HostAnnotated, HostSeen
from tests.producers.passive import frames as f

PHONE = "3c:22:fb:12:34:56"
ROUTER = "00:00:0c:00:00:fe"
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


class FakeTap:
    def __init__(self, frames: list[tuple[str, bytes]]) -> None:
        self.frames = list(frames)
        self.dropped = 0
        self.closed = False
        self.more = asyncio.Event()

    async def next(self) -> tuple[str, bytes]:
        while not self.frames:
            self.more.clear()
            await self.more.wait()
        return self.frames.pop(0)

    def pending(self) -> list[tuple[str, bytes]]:
        out, self.frames = self.frames, []
        return out

    def close(self) -> None:
        self.closed = True


def _interface(name: str, address: str, *, up: bool = True,
               mac: str | None = "02:00:00:00:00:01") -> Interface:
    return Interface(name=name, index=1, mac=mac, mtu=1500, state="up" if up else "down", link_type="ether",
                     driver="veth", addresses=[ipaddress.ip_interface(address)])


def _stage(frames: list[tuple[str, bytes]] | None = None, *, found: list[Interface] | None = None,
           now: list[float] | None = None, **config: object) -> tuple[Passive, list[FakeTap]]:
    taps: list[FakeTap] = []
    opened: list[tuple[list[str], bool]] = []

    def open_tap(names: list[str], promiscuous: bool) -> FakeTap:
        opened.append((names, promiscuous))
        taps.append(FakeTap(frames or []))
        return taps[-1]

    async def interfaces() -> list[Interface]:
        return found if found is not None else [_interface("eth0", "192.168.1.5/24")]

    ticks = now if now is not None else [0.0]
    stage = Passive(msgspec.convert(config, Config), open_tap=open_tap, interfaces=interfaces,
                    clock=lambda: NOW, monotonic=lambda: ticks[0])
    return stage, taps


async def test_a_dhcp_discover_is_published_at_once_with_its_fingerprint() -> None:
    discover = f.dhcp_client(PHONE, 1, o12=b"Pixel-7", o60=b"android-dhcp-13", o55=bytes([1, 3, 6]))
    stage, taps = _stage([("eth0", discover)], batch_ms=0)
    stream = stage.listen()
    events = await asyncio.wait_for(anext(stream), 2)
    await stream.aclose()
    assert taps[0].closed
    [seen] = events
    assert isinstance(seen, HostSeen)
    assert (seen.source, seen.evidence, seen.mac, seen.ip, seen.hostname, seen.interface) == (
        "passive", "dhcp-discover", PHONE, None, "Pixel-7", "eth0")
    assert seen.dhcp is not None and seen.dhcp.vendor_class == "android-dhcp-13"
    assert seen.dhcp.parameters == [1, 3, 6]
    assert seen.host_key == PHONE and seen.observed_at == NOW


async def test_frames_that_arrive_together_share_one_batch() -> None:
    frames = [("eth0", f.arp(1, f"3c:22:fb:00:00:{i:02x}", f"192.168.1.{i}", "192.168.1.1"))
              for i in range(1, 6)]
    stage, _ = _stage(frames, batch_ms=5)
    stream = stage.listen()
    events = await asyncio.wait_for(anext(stream), 2)
    await stream.aclose()
    assert [e.ip for e in events] == [f"192.168.1.{i}" for i in range(1, 6)]


def test_repeats_are_coalesced_new_kinds_pass() -> None:
    now = [0.0]
    stage, _ = _stage(now=now, coalesce_secs=10)
    request = ("eth0", f.arp(1, PHONE, "192.168.1.20", "192.168.1.1"))
    garp = ("eth0", f.arp(1, PHONE, "192.168.1.20", "192.168.1.20"))
    kinds = []
    for at, frame in zip((0.0, 1.0, 2.0, 3.0, 12.0), (request, request, garp, request, request), strict=True):
        now[0] = at
        kinds.append([e.evidence for e in stage.events([frame]) if isinstance(e, HostSeen)])
    assert kinds == [["arp-request"], [], ["garp"], [], ["arp-request"]]
    assert stage.limiter.coalesced == 2


def test_a_broadcast_storm_is_held_to_max_events_per_sec() -> None:
    limiter = Limiter(coalesce_secs=10, per_sec=50, clock=lambda: 100.0)
    storm = [f.arp(1, f"3c:22:fb:00:{i >> 8:02x}:{i & 0xFF:02x}", "192.168.1.20", "192.168.1.1")
             for i in range(1000)]
    from producers.passive.packets import parse_frame
    admitted = sum(limiter.admit(s) for s in (parse_frame(frame) for frame in storm) if s is not None)
    assert admitted == 50 and limiter.limited == 950


def test_the_bucket_refills_with_time() -> None:
    now = [0.0]
    limiter = Limiter(coalesce_secs=0, per_sec=10, clock=lambda: now[0])
    from producers.passive.packets import Sighting
    assert sum(limiter.admit(Sighting("arp-request", PHONE, f"10.0.0.{i}")) for i in range(20)) == 10
    now[0] = 0.5
    assert sum(limiter.admit(Sighting("arp-request", PHONE, f"10.0.1.{i}")) for i in range(20)) == 5


def test_a_router_announces_its_roles_once_each() -> None:
    stage, _ = _stage()
    ra = ("eth0", f.router_advertisement(ROUTER, "fe80::1"))
    offer = ("eth0", f.dhcp_server(ROUTER, "192.168.1.1", PHONE))
    first = stage.events([ra])
    assert [type(e) for e in first] == [HostSeen, HostAnnotated]
    assert first[1].advertised == [Advertised(type="ndp-router")]    # type: ignore[union-attr]
    second = stage.events([offer])
    assert second[1].advertised == [Advertised(type="dhcp-server"), Advertised(type="ndp-router")]  # type: ignore[union-attr]
    # The server's next reply (to another client) is a repeat: coalesced, no announcement.
    assert stage.events([("eth0", f.dhcp_server(ROUTER, "192.168.1.1", "3c:22:fb:00:00:09"))]) == []


def test_kinds_can_be_switched_off() -> None:
    stage, _ = _stage(arp=False, ndp=False)
    frames = [("eth0", f.arp(1, PHONE, "192.168.1.20", "192.168.1.1")),
              ("eth0", f.router_advertisement(ROUTER, "fe80::1")),
              ("eth0", f.dhcp_client(PHONE, 3, ciaddr="192.168.1.20"))]
    assert [e.evidence for e in stage.events(frames) if isinstance(e, HostSeen)] == ["dhcp-request"]


async def test_interfaces_default_to_the_attached_private_ones() -> None:
    found = [_interface("eth0", "192.168.1.5/24"), _interface("wan0", "93.184.216.9/24"),
             _interface("down0", "10.0.0.5/8", up=False), _interface("lo", "127.0.0.1/8", mac=None)]
    stage, _ = _stage(found=found)
    assert await stage.listening_on() == ["eth0"]


async def test_a_configured_interface_that_does_not_exist_is_an_error() -> None:
    stage, _ = _stage(interfaces=["eth7"])
    with pytest.raises(OSError, match=r"producers\.passive\.interfaces: no interface eth7"):
        await anext(stage.listen())


async def test_no_interface_to_listen_on_says_so() -> None:
    stage, _ = _stage(found=[_interface("wan0", "93.184.216.9/24")])
    with pytest.raises(OSError, match=r"no interface on an attached segment.*producers\.passive\.interfaces"):
        await anext(stage.listen())
