"""Which addresses an enricher asked lately, so a host seen every sweep is asked once.

Shared by the enrichers that send one unicast question per host (netbios, snmp):
``due(ip)`` says whether to ask now (and claims the address, so events of one
host that arrive together ask once); ``answered(ip, ok)`` sets when to ask
again: ``refresh_secs`` after an answer, ``negative_secs`` after silence.
"""

from __future__ import annotations

import time
from collections.abc import Callable


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
