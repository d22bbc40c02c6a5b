"""Reverse DNS enricher: a PTR name for every address seen.

Emits HostAnnotated(source="dns", hostname) when a lookup finds a name. A TTL
cache (at most ``cache_secs``, at least the record's TTL when shorter; misses
cached for ``negative_cache_secs``) keeps repeat sightings from hitting the
DNS server: a cached answer was already announced, so it emits nothing. A
timeout returns nothing and caches nothing (the next sighting tries again).
Names are attacker-controlled text: capped at 255 characters, kept as data.
A lookup tells the resolver the address, so an address the scope does not
allow (lanscope.net.scope.ScopeGuard) is not looked up: the event is unusable.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import msgspec

from lanscope.errors import UnusableEvent
from lanscope.net.scope import ScopeGuard
from lanscope.runtime.stage import StageContext
from lanscope.settings import NonNegativeFloat, PositiveInt
from schemas import Event, HostAnnotated, HostSeen, host_key

ReverseLookup = Callable[[str], Awaitable[tuple[str | None, int | None]]]


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """enrichers.dns_names in config.yaml (documented in config.sample.yaml); the servers
    and timeout are the shared `dns:` section."""

    enabled: bool = True
    cache_secs: NonNegativeFloat = 3600.0        # a name is kept at most this long (or its TTL)
    negative_cache_secs: NonNegativeFloat = 300.0  # an address without a name: asked again after
    max_cached: PositiveInt = 100_000            # the cache starts over beyond this many addresses
    concurrency: PositiveInt = 64                # lookups in flight per process


class DnsNames:
    """Enricher: reverse DNS names with a TTL cache."""

    def __init__(self, config: Config, *, lookup: ReverseLookup, scope: ScopeGuard,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config = config
        self.scope = scope
        self._lookup = lookup
        self._clock = clock
        self._cache: dict[str, tuple[float, str | None]] = {}   # ip -> (expires, name)

    async def name_of(self, ip: str) -> tuple[str | None, bool]:
        """(name, fresh): fresh is False when the answer came from the cache."""
        now = self._clock().timestamp()
        cached = self._cache.get(ip)
        if cached is not None and cached[0] > now:
            return cached[1], False
        try:
            name, ttl = await self._lookup(ip)
        except TimeoutError:
            return None, False
        keep = self.config.cache_secs if name else self.config.negative_cache_secs
        if ttl is not None and name:
            keep = min(keep, max(ttl, 60))
        if len(self._cache) >= self.config.max_cached:
            self._cache.clear()
        self._cache[ip] = (now + keep, name)
        return name, True

    async def handle(self, event: Event) -> list[Event]:
        ip = getattr(event, "ip", None)
        if not isinstance(event, HostSeen) or not ip:
            return []
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return []
        if address.is_multicast or address.is_unspecified:
            return []
        refusal = self.scope.refusal(str(address))
        if refusal is not None:
            raise UnusableEvent(refusal)
        name, fresh = await self.name_of(str(address))
        if not name or not fresh:
            return []
        return [HostAnnotated(host_key=host_key(event.mac, ip), observed_at=self._clock(), source="dns",
                              ip=ip, mac=event.mac, hostname=name)]


def build(config: Config, ctx: StageContext) -> DnsNames:
    """Reverse lookups through the shared `dns:` resolver settings."""
    from ._io import make_reverse_lookup  # dnspython: only when the stage is built

    return DnsNames(config, lookup=make_reverse_lookup(ctx.dns.servers, ctx.dns.timeout_ms),
                    scope=ctx.scope_guard())
