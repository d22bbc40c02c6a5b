"""Passive listener: who speaks on the attached segments, the moment they speak.

A streaming producer (lanscope.runtime.stage.Listener): ``listen()`` reads
ARP, DHCP client messages and IPv6 NDP from an AF_PACKET tap on the
configured interfaces (``packets.py`` parses them) and yields each sighting
at once as ``HostSeen(source="passive", evidence=<kind>)``; a DHCP client's
options travel in ``HostSeen.dhcp`` and its hostname in ``hostname``. A host
that sends router advertisements or DHCP server replies is also annotated
(``HostAnnotated.advertised``: ``ndp-router`` / ``dhcp-server``).

It sends nothing. Two limits keep a broadcast storm off the bus: a sighting
repeats (same MAC, address and kind) at most once per ``coalesce_secs``, and
at most ``max_events_per_sec`` sightings pass (a token bucket); what is
dropped is counted and said once a minute.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Protocol

import msgspec

from lanscope.net.interfaces import InterfaceList, segment_interfaces
from lanscope.runtime.stage import StageContext
from lanscope.settings import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from schemas import Advertised, Event, HostAnnotated, HostSeen, host_key

from .packets import Sighting, parse_frame

SOURCE = "passive"
_KINDS = {"arp": ("arp-", "garp"), "dhcp": ("dhcp-",), "ndp": ("ndp-",)}
_MAX_REMEMBERED = 65536

log = logging.getLogger(__name__)


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """producers.passive in config.yaml (documented in config.sample.yaml)."""

    enabled: bool = True
    interfaces: list[str] = []           # empty: every up Ethernet-like interface on a private network
    promiscuous: bool = False            # also frames addressed to other hosts (not needed for broadcasts)
    arp: bool = True                     # ARP requests, probes, gratuitous ARP
    dhcp: bool = True                    # DHCP DISCOVER/REQUEST/INFORM ... and server replies
    ndp: bool = True                     # IPv6 duplicate address detection, solicitations, RAs
    coalesce_secs: NonNegativeFloat = 10.0   # one sighting per MAC, address and kind in this window
    max_events_per_sec: PositiveInt = 200    # more (a storm) are dropped and counted
    batch_ms: NonNegativeInt = 20        # sightings this close together share one publish
    restart_secs: PositiveFloat = 5.0    # after a failure (interface gone), listen again after this


class FrameTap(Protocol):
    """Where frames come from (``_io.Tap``; a list in the tests)."""

    dropped: int

    async def next(self) -> tuple[str, bytes]: ...

    def pending(self) -> list[tuple[str, bytes]]: ...

    def close(self) -> None: ...


OpenTap = Callable[[list[str], bool], FrameTap]


class Limiter:
    """The storm guard: coalescing of repeats, then a token bucket."""

    def __init__(self, coalesce_secs: float, per_sec: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.coalesce_secs = coalesce_secs
        self.per_sec = per_sec
        self.clock = clock
        self.coalesced = 0
        self.limited = 0
        self._last: dict[tuple[str, str | None, str], float] = {}
        self._tokens = float(per_sec)
        self._filled_at = clock()

    def admit(self, sighting: Sighting) -> bool:
        now = self.clock()
        key = (sighting.mac, sighting.ip, sighting.kind)
        last = self._last.get(key)
        if last is not None and now - last < self.coalesce_secs:
            self.coalesced += 1
            return False
        self._tokens = min(float(self.per_sec), self._tokens + (now - self._filled_at) * self.per_sec)
        self._filled_at = now
        if self._tokens < 1:
            self.limited += 1
            return False
        self._tokens -= 1
        if len(self._last) >= _MAX_REMEMBERED:
            horizon = now - self.coalesce_secs
            self._last = {k: t for k, t in self._last.items() if t >= horizon}
            if len(self._last) >= _MAX_REMEMBERED:
                self._last.clear()
        self._last[key] = now
        return True


class Passive:
    """Producer (streaming): sightings from ARP, DHCP and NDP as they are heard."""

    def __init__(self, config: Config, *, open_tap: OpenTap, interfaces: InterfaceList,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.restart_secs = config.restart_secs
        self._open_tap = open_tap
        self._interfaces = interfaces
        self._clock = clock
        self._monotonic = monotonic
        wanted = {"arp": config.arp, "dhcp": config.dhcp, "ndp": config.ndp}
        self._prefixes = tuple(p for name, prefixes in _KINDS.items() if wanted[name] for p in prefixes)
        self.limiter = Limiter(config.coalesce_secs, config.max_events_per_sec, monotonic)
        self._roles: dict[str, set[str]] = {}     # mac -> what it announced itself to be
        self._said_at = monotonic()

    async def listening_on(self) -> list[str]:
        """The configured interfaces, else every up Ethernet-like one on a private network."""
        found = segment_interfaces(await self._interfaces(), self.config.interfaces,
                                   key="producers.passive.interfaces")
        return [i.name for i in found]

    async def listen(self) -> AsyncIterator[list[Event]]:
        names = await self.listening_on()
        tap = self._open_tap(names, self.config.promiscuous)
        log.info("passive: listening on %s%s", ", ".join(names),
                 " (promiscuous)" if self.config.promiscuous else "")
        try:
            while True:
                frames = [await tap.next()]
                if self.config.batch_ms:
                    await asyncio.sleep(self.config.batch_ms / 1000)
                frames += tap.pending()
                events = self.events(frames)
                self._say_drops(tap)
                if events:
                    yield events
        finally:
            tap.close()

    def events(self, frames: list[tuple[str, bytes]]) -> list[Event]:
        """The events of some frames (interface, bytes), after the storm guard."""
        now = self._clock()
        out: list[Event] = []
        for interface, frame in frames:
            sighting = parse_frame(frame)
            if sighting is None or not sighting.kind.startswith(self._prefixes):
                continue
            if not self.limiter.admit(sighting):
                continue
            dhcp = sighting.dhcp
            out.append(HostSeen(
                host_key=host_key(sighting.mac, sighting.ip), observed_at=now, source=SOURCE,
                ip=sighting.ip, mac=sighting.mac, alive=sighting.alive, evidence=sighting.kind,
                interface=interface, hostname=dhcp.hostname if dhcp else None, dhcp=dhcp))
            role = sighting.role
            if role is not None:
                out += self._announce(sighting, role, now)
        return out

    def _announce(self, sighting: Sighting, role: str, now: datetime) -> list[Event]:
        """The whole list of roles this MAC announced, when it grows."""
        roles = self._roles.setdefault(sighting.mac, set())
        if role in roles:
            return []
        if len(self._roles) > _MAX_REMEMBERED:
            self._roles = {sighting.mac: roles}
        roles.add(role)
        return [HostAnnotated(host_key=host_key(sighting.mac, sighting.ip), observed_at=now,
                              source=SOURCE, ip=sighting.ip, mac=sighting.mac,
                              advertised=[Advertised(type=r) for r in sorted(roles)])]

    def _say_drops(self, tap: FrameTap) -> None:
        now = self._monotonic()
        if now - self._said_at < 60:
            return
        self._said_at = now
        if self.limiter.limited or tap.dropped:
            log.warning("passive: %d sightings over max_events_per_sec and %d frames the queue "
                        "could not hold were dropped in the last minute", self.limiter.limited,
                        tap.dropped)
            self.limiter.limited = 0
            tap.dropped = 0


def build(config: Config, ctx: StageContext) -> Passive:
    """The listener on the configured (else the attached private) interfaces; it sends nothing."""
    from lanscope.net.interfaces import interfaces_async

    from ._io import open_tap

    return Passive(config, open_tap=open_tap, interfaces=interfaces_async)
