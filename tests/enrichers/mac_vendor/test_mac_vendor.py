"""MAC vendors from netaddr's bundled OUI data; randomised MACs flagged; no MAC, no event."""

from __future__ import annotations

from datetime import timedelta

import pytest

from enrichers.mac_vendor import Config, MacVendor
from enrichers.mac_vendor._io import oui_vendor_async
from schemas import HostAnnotated
from tests.factories import T0, host_seen
from tests.lab import topology


def _stage(**config: float) -> tuple[MacVendor, list]:
    now = [T0]
    return MacVendor(Config(**config), lookup=oui_vendor_async, clock=lambda: now[0]), now


@pytest.mark.parametrize(("oui", "vendor"), [
    topology.PROXMOX, topology.RPI_FOUNDATION, topology.RPI_TRADING, topology.INTEL, topology.CISCO,
    topology.DELL, topology.VMWARE, topology.VMWARE_GUEST,
])
async def test_lab_vendors(oui: str, vendor: str) -> None:
    stage, _ = _stage()
    [event] = await stage.handle(host_seen(mac=f"{oui}:12:34:56"))
    assert isinstance(event, HostAnnotated)
    assert (event.source, event.vendor, event.mac_randomized) == ("oui", vendor, False)
    assert event.host_key == f"{oui}:12:34:56"


@pytest.mark.parametrize("mac", ["02:1a:5c:00:00:fa", "da:a1:19:00:00:01", "3e:00:00:00:00:01"])
async def test_locally_administered_is_flagged_randomised(mac: str) -> None:
    stage, _ = _stage()
    [event] = await stage.handle(host_seen(mac=mac))
    assert isinstance(event, HostAnnotated)
    assert event.vendor is None and event.mac_randomized is True


async def test_unregistered_oui_has_no_vendor() -> None:
    stage, _ = _stage()
    [event] = await stage.handle(host_seen(mac="fc:ff:ff:00:00:01"))
    assert isinstance(event, HostAnnotated) and event.vendor is None and event.mac_randomized is False


async def test_events_without_mac_or_multicast_are_skipped() -> None:
    stage, _ = _stage()
    assert await stage.handle(host_seen(mac=None)) == []
    assert await stage.handle(host_seen(mac="01:00:5e:00:00:fb")) == []


async def test_announced_once_per_period() -> None:
    stage, now = _stage(reannounce_secs=60)
    event = host_seen(mac="bc:24:11:00:00:0a")
    assert len(await stage.handle(event)) == 1
    assert await stage.handle(event) == []
    now[0] = T0 + timedelta(seconds=61)
    assert len(await stage.handle(event)) == 1
