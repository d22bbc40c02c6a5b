"""Neighbour table producer: the kernel's IPv4 ARP and IPv6 NDP entries as sightings.

Only REACHABLE and DELAY entries are evidence that a host is up (the kernel
confirmed it within the last reachable time), and they are dated when the
kernel last confirmed them, not when the table was read: an entry stays
REACHABLE for up to ~45 s after its host left, and read as "seen now" it would
bring a host just found gone straight back. STALE, PROBE, FAILED and
PERMANENT entries with a MAC are published with ``alive=False``: a record that a
host was there, never proof that it still is. Entries without a MAC (INCOMPLETE,
most FAILED ones) are skipped: the kernel asked and nobody answered, so nothing
was seen — every address a sweep probes leaves one, and publishing them made a
phantom host of each. Multicast, loopback and NOARP entries are skipped too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import msgspec

from lanscope.runtime.stage import StageContext
from lanscope.settings import PositiveFloat
from producers.neighbours._io import Neighbour, read_neighbours_async
from schemas import Event, HostSeen, host_key

ALIVE_STATES = frozenset({"REACHABLE", "DELAY"})
SOURCE = "neighbour"


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """producers.neighbours in config.yaml (documented in config.sample.yaml)."""

    enabled: bool = True
    interval_secs: PositiveFloat = 30.0
    ipv6: bool = True                    # also the NDP (IPv6) entries
    interfaces: list[str] = []           # empty: every interface


class Neighbours:
    """Producer: one HostSeen per kernel neighbour entry."""

    def __init__(self, config: Config, *, read: Callable[[], Awaitable[list[Neighbour]]],
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config = config
        self.interval_secs = config.interval_secs
        self._read = read
        self._clock = clock

    async def sweep(self) -> list[Event]:
        now = self._clock()
        events: list[Event] = []
        for entry in await self._read():
            address = ipaddress.ip_address(entry.ip)
            if address.is_multicast or address.is_loopback or address.is_unspecified:
                continue
            if address.version == 6 and not self.config.ipv6:
                continue
            if self.config.interfaces and entry.interface not in self.config.interfaces:
                continue
            states = set(entry.state.split("|"))
            if states & {"NOARP", "NONE"}:
                continue
            if not entry.mac:
                continue
            state = entry.state
            alive = bool(states & ALIVE_STATES)
            seen_at = now
            if alive and entry.confirmed_secs is not None:
                seen_at = now - timedelta(seconds=entry.confirmed_secs)
            events.append(HostSeen(host_key=host_key(entry.mac, entry.ip), observed_at=seen_at,
                                   source=SOURCE, ip=entry.ip, mac=entry.mac, alive=alive,
                                   evidence=f"neighbour:{state}", interface=entry.interface,
                                   neighbour_state=state))
        return events


def build(config: Config, ctx: StageContext) -> Neighbours:
    return Neighbours(config, read=read_neighbours_async)
