"""The passive listener on the lab's bridge: real frames from a real DHCP client and kernel."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Callable

import pytest

from lanscope.runtime.stage import StageContext
from producers.passive.stage import Config, build
from schemas import Event, HostSeen
from tests.lab import Lab
from tests.lab.join import join, leave

pytestmark = pytest.mark.lab


@contextlib.asynccontextmanager
async def listening(tmp_path: object, **config: object) -> AsyncIterator[list[Event]]:
    stage = build(Config(**config), StageContext(data_dir=tmp_path))  # type: ignore[arg-type]
    heard: list[Event] = []

    async def run() -> None:
        async for batch in stage.listen():
            heard.extend(batch)

    task = asyncio.create_task(run())
    try:
        yield heard
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def heard_one(heard: list[Event], match: Callable[[HostSeen], bool], timeout: float = 10) -> HostSeen:
    async with asyncio.timeout(timeout):
        while True:
            for event in heard:
                if isinstance(event, HostSeen) and match(event):
                    return event
            await asyncio.sleep(0.02)


async def test_a_joining_host_is_heard_by_dhcp_dad_and_arp(lab: Lab, tmp_path: object) -> None:
    async with listening(tmp_path, batch_ms=0) as heard:
        joined = await asyncio.to_thread(join, lab, 901, hostname="sensor-901", configure=True)
        try:
            mac = joined.mac
            discover = await heard_one(heard, lambda e: e.mac == mac and e.evidence == "dhcp-discover")
            assert discover.hostname == "sensor-901" and discover.interface == "br0"
            assert discover.dhcp is not None and discover.dhcp.vendor_class.startswith("udhcp ")  # type: ignore[union-attr]
            assert discover.dhcp.parameters[:3] == [1, 3, 6]
            request = await heard_one(heard, lambda e: e.mac == mac and e.evidence == "dhcp-request")
            assert request.ip == joined.ip
            # The kernel checks an address before using it: duplicate address detection (its
            # link-local one at link up: the MAC only; then a ULA, which is reported).
            await heard_one(heard, lambda e: e.mac == mac and e.evidence == "ndp-dad" and e.ip is None)
            subprocess.run(["ip", "-n", joined.ns, "addr", "add", "fd00:1a5::901/64", "dev", "eth0"],
                           check=True, timeout=10)
            await heard_one(heard, lambda e: e.mac == mac and e.evidence == "ndp-dad"
                            and e.ip == "fd00:1a5::901")
            # Talking to the scanner, it asks for the scanner's MAC first.
            subprocess.run(["ip", "netns", "exec", joined.ns, "python3", "-c",
                            "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                            f"s.sendto(b'x', ('{lab.SCANNER_IP}', 9))"], check=True, timeout=10)
            arp = await heard_one(heard, lambda e: e.mac == mac and e.evidence == "arp-request")
            assert arp.ip == joined.ip and arp.alive
        finally:
            leave(lab, 901)
    # Nothing this machine sent itself is a sighting of someone.
    assert not [e for e in heard if isinstance(e, HostSeen) and e.mac == "02:1a:5c:00:00:01"]


async def test_promiscuous_hears_the_dhcp_servers_unicast_reply(lab: Lab, tmp_path: object) -> None:
    # dnsmasq answers udhcpc (no broadcast flag) by unicast: only a promiscuous tap hears it.
    async with listening(tmp_path, batch_ms=0, promiscuous=True) as heard:
        joined = await asyncio.to_thread(join, lab, 902)
        try:
            dns = lab.host("dns")
            server = await heard_one(heard, lambda e: e.evidence == "dhcp-server")
            assert (server.mac, server.ip) == (dns.mac, dns.ip)
            assert joined.ip is not None
        finally:
            leave(lab, 902)
