"""Neighbour table: the scanner namespace's real table; STALE/FAILED never mean "up"."""

from __future__ import annotations

from typing import Any

import pytest

from producers.neighbours import Config, Neighbours
from producers.neighbours._io import Neighbour, read_neighbours_async
from producers.ping_sweep import is_alive
from schemas import HostSeen
from tests.factories import T0, at


@pytest.mark.lab
async def test_reads_the_scanner_namespace_table(lab: Any) -> None:
    nginx = lab.host("nginx")
    assert is_alive(nginx.ip)                 # the kernel resolves it: a REACHABLE entry
    is_alive(lab.DOWN_IP, timeout_secs=0.2)   # an unresolved entry (INCOMPLETE, later FAILED)
    events = await Neighbours(Config(), read=read_neighbours_async).sweep()
    seen = {e.ip: e for e in events if isinstance(e, HostSeen)}
    entry = seen[nginx.ip]
    assert entry.mac == nginx.mac and entry.interface == "br0" and entry.source == "neighbour"
    assert entry.neighbour_state in {"REACHABLE", "DELAY", "STALE", "PROBE"}
    assert entry.alive == (entry.neighbour_state in {"REACHABLE", "DELAY"})
    # Confirmed by the kernel moments ago, and dated so (the table is read later).
    [record] = [n for n in await read_neighbours_async() if n.ip == nginx.ip]
    assert record.confirmed_secs is not None and 0 <= record.confirmed_secs < 30
    assert lab.DOWN_IP not in seen            # nobody answered: nothing was seen


async def _fixed(entries: list[Neighbour]) -> Neighbours:
    async def read() -> list[Neighbour]:
        return entries

    return Neighbours(Config(), read=read, clock=lambda: T0)


@pytest.mark.parametrize(("state", "mac", "alive"), [
    ("REACHABLE", "02:00:00:00:00:01", True),
    ("DELAY", "02:00:00:00:00:01", True),
    ("STALE", "02:00:00:00:00:01", False),
    ("PROBE", "02:00:00:00:00:01", False),
    ("PERMANENT", "02:00:00:00:00:01", False),
    ("FAILED", "02:00:00:00:00:01", False),
])
async def test_only_confirmed_states_are_alive(state: str, mac: str, alive: bool) -> None:
    stage = await _fixed([Neighbour("10.0.0.5", mac, state, "eth0")])
    [event] = await stage.sweep()
    assert isinstance(event, HostSeen)
    assert (event.alive, event.neighbour_state, event.evidence) == (alive, state, f"neighbour:{state}")
    assert event.host_key == mac


@pytest.mark.parametrize("state", ["INCOMPLETE", "FAILED"])
async def test_unresolved_entries_are_not_sightings(state: str) -> None:
    stage = await _fixed([Neighbour("10.0.0.5", None, state, "eth0")])
    assert await stage.sweep() == []


async def test_multicast_loopback_and_noarp_are_skipped() -> None:
    stage = await _fixed([Neighbour("224.0.0.251", "01:00:5e:00:00:fb", "NOARP", "eth0"),
                          Neighbour("ff02::1", "33:33:00:00:00:01", "NOARP", "eth0"),
                          Neighbour("127.0.0.1", None, "NOARP", "lo"),
                          Neighbour("fe80::1", "02:00:00:00:00:09", "STALE", "eth0")])
    assert [e.ip for e in await stage.sweep() if isinstance(e, HostSeen)] == ["fe80::1"]


async def test_a_live_entry_is_dated_when_the_kernel_confirmed_it() -> None:
    """A REACHABLE entry outlives its host by up to ~45 s: read as "seen now" it would bring a
    host that was just found gone straight back."""
    stage = await _fixed([Neighbour("10.0.0.5", "02:00:00:00:00:01", "REACHABLE", "eth0", 40.0),
                          Neighbour("10.0.0.6", "02:00:00:00:00:02", "STALE", "eth0", 90.0)])
    reachable, stale = await stage.sweep()
    assert reachable.observed_at == at(-40) and reachable.alive
    assert stale.observed_at == T0 and not stale.alive      # a record, not evidence: read now
