"""What the enrichers that send one unicast question per host share (netbios, snmp).

``address_to_ask(event, ...)``: the address of a live sighting to ask now, or
None — not an address worth asking, asked lately (``Recently``), or refused by
the scope check (then nothing is sent). ``Recently.due(ip)`` claims the
address, so sightings of one host that arrive together ask once;
``answered(ip, ok)`` sets when to ask again: ``refresh_secs`` after an answer,
``negative_secs`` after silence.

``act_on_request(...)``: the gate of an explicit request to send (port_probe's
ProbeRequested, presence_check's HostCheckRequested): a stale one is dropped
with a log line, one the scope refuses is unusable.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from datetime import datetime

from lanscope.errors import UnusableEvent
from lanscope.net.scope import Guard
from schemas import Event, HostSeen

log = logging.getLogger(__name__)


class Recently:
    def __init__(self, refresh_secs: float, negative_secs: float, max_remembered: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.refresh_secs = refresh_secs
        self.negative_secs = negative_secs
        self.max_remembered = max_remembered
        self._clock = clock
        self._next: dict[str, float] = {}      # ip -> when it may be asked again

    def due(self, ip: str) -> bool:
        now = self._clock()
        if self._next.get(ip, 0.0) > now:
            return False
        if len(self._next) >= self.max_remembered:
            self._next = {k: t for k, t in self._next.items() if t > now}
            if len(self._next) >= self.max_remembered:
                self._next.clear()
        self._next[ip] = now + self.negative_secs      # claimed until answered
        return True

    def answered(self, ip: str, ok: bool) -> None:
        self._next[ip] = self._clock() + (self.refresh_secs if ok else self.negative_secs)


def address_to_ask(event: Event, asked: Recently, guard: Guard, *, ipv6: bool, stage: str) -> str | None:
    """The address of a live sighting to ask now, or None (see the module docstring)."""
    if not isinstance(event, HostSeen) or not event.alive or not event.ip:
        return None
    try:
        address = ipaddress.ip_address(event.ip)
    except ValueError:
        return None
    if (address.version == 6 and not ipv6) or address.is_multicast or address.is_unspecified \
            or address.is_link_local:
        return None
    ip = str(address)
    if not asked.due(ip):
        return None
    refusal = guard.refusal(ip)
    if refusal is not None:
        log.debug("%s: not asking %s: %s", stage, ip, refusal)
        return None
    return ip


def act_on_request(guard: Guard, ip: str, *, observed_at: datetime, now: datetime, max_age_secs: float,
                   log: logging.Logger, stale: str, stale_args: tuple[object, ...], refused: str) -> bool:
    """Whether to act now on a request, made at ``observed_at``, to send to ``ip``.

    False when it is more than ``max_age_secs`` old (a replay of the stream: what a host says
    now says nothing about then), logged at info on the stage's ``log`` as ``stale`` with
    ``stale_args`` then the age in seconds. UnusableEvent ``"<refused>: <the reason>"`` when
    the scope refuses ``ip``: dead-lettered with the reason, nothing sent."""
    age = (now - observed_at).total_seconds()
    if age > max_age_secs:
        log.info(stale, *stale_args, age)
        return False
    refusal = guard.refusal(ip)
    if refusal is not None:
        raise UnusableEvent(f"{refused}: {refusal}")
    return True
