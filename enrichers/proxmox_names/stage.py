"""The proxmox_names enricher: Proxmox guest name, vmid, type, node and status for a host.

Every HostSeen is looked up in a cached guest index, by MAC first (guest MACs
come from the VM/container config and are stable), then by IP (agent, LXC
interfaces, static LXC ``ip=``). A match yields HostAnnotated(source="proxmox",
guest=ProxmoxGuest(...), hostname=<guest name>).

The index is refreshed every ``refresh_secs``. When Proxmox is unreachable the
stage keeps answering from the last good index (or returns [] while it has
none) and retries with exponential backoff: an outage never turns into an
exception per event, a crash loop or a request storm.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import msgspec

from lanscope.runtime.stage import StageContext, StageDisabled
from lanscope.settings import PositiveFloat, PositiveInt
from schemas import Event, HostAnnotated, HostSeen

from .inventory import Guest, GuestIndex

log = logging.getLogger(__name__)
STAGE = "proxmox_names"

FetchGuests = Callable[[], Awaitable[list[Guest]]]


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """enrichers.proxmox_names in config.yaml (documented in config.sample.yaml); the
    cluster is the shared `proxmox:` section."""

    enabled: bool = True
    refresh_secs: PositiveFloat = 300.0        # the guest list is read again after this long
    backoff_initial_secs: PositiveFloat = 30.0  # first wait after Proxmox could not be read
    backoff_max_secs: PositiveFloat = 900.0
    concurrency: PositiveInt = 64              # sightings handled at once per process


class ProxmoxError(Exception):
    """Proxmox could not be read. ``str()`` names the host; never a secret."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"proxmox {host}: {reason}")
        self.host = host
        self.reason = reason


class GuestCache:
    """The guest index with a refresh interval and backoff, shared by one stage's handlers."""

    def __init__(self, fetch: FetchGuests, *, refresh_secs: float, backoff_initial_secs: float,
                 backoff_max_secs: float, clock: Callable[[], float] = time.monotonic,
                 host: str = "proxmox", stage: str = STAGE) -> None:
        self._fetch = fetch
        self.refresh_secs = refresh_secs
        self.backoff_initial_secs = backoff_initial_secs
        self.backoff_max_secs = backoff_max_secs
        self.clock = clock
        self.host = host
        self.stage = stage
        self.index: GuestIndex | None = None
        self.fetched_at: float | None = None
        self.failures = 0
        self.next_attempt = 0.0
        self.last_error: str | None = None
        self._lock = asyncio.Lock()

    def _due(self) -> bool:
        now = self.clock()
        if now < self.next_attempt:
            return False
        return self.fetched_at is None or now - self.fetched_at >= self.refresh_secs

    async def get(self, *, force: bool = False) -> GuestIndex | None:
        """The current index, refreshed first when due (and not backing off)."""
        if not force and not self._due():
            return self.index
        async with self._lock:
            if force or self._due():      # another handler may have refreshed meanwhile
                await self._refresh()
        return self.index

    async def _refresh(self) -> None:
        try:
            guests = await self._fetch()
        except Exception as exc:
            # ProxmoxError is the expected failure; anything else is a bug in parsing an odd
            # reply, and must not become an exception per event either.
            if not isinstance(exc, ProxmoxError):
                log.exception("proxmox %s: unexpected error reading guests", self.host,
                              extra={"stage": self.stage})
                exc = ProxmoxError(self.host, f"unexpected {type(exc).__name__}")
            self.failures += 1
            delay = min(self.backoff_max_secs, self.backoff_initial_secs * 2 ** (self.failures - 1))
            self.next_attempt = self.clock() + delay
            self.last_error = str(exc)
            stale = " (using the last good guest list)" if self.index is not None else ""
            log.error("%s; retrying in %.0fs%s", exc, delay, stale, extra={"stage": self.stage})
            return
        if self.failures:
            log.info("proxmox %s: reachable again", self.host, extra={"stage": self.stage})
        self.failures = 0
        self.next_attempt = 0.0
        self.last_error = None
        self.index = GuestIndex(guests)
        self.fetched_at = self.clock()
        log.debug("proxmox %s: %d guests", self.host, len(guests), extra={"stage": self.stage})


class ProxmoxNames:
    """Enricher: ``await stage.handle(host_seen)`` -> [HostAnnotated] or []."""

    def __init__(self, config: Config, *, fetch_guests: FetchGuests, host: str = "proxmox",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.cache = GuestCache(fetch_guests, refresh_secs=config.refresh_secs,
                                backoff_initial_secs=config.backoff_initial_secs,
                                backoff_max_secs=config.backoff_max_secs, clock=clock, host=host)

    async def handle(self, event: Event) -> list[Event]:
        if not isinstance(event, HostSeen) or (event.mac is None and event.ip is None):
            return []
        index = await self.cache.get()
        if index is None:
            return []
        found = index.lookup(event.mac, event.ip)
        if found is None:
            return []
        return [annotation(event, found)]


def annotation(event: HostSeen, found: Guest) -> HostAnnotated:
    """The guest facts for this host, stamped with the sighting's time (redelivery-stable)."""
    return HostAnnotated(
        host_key=event.host_key, observed_at=event.observed_at, source="proxmox", ip=event.ip,
        mac=event.mac, hostname=found.guest.name, guest=found.guest)


def build(config: Config, ctx: StageContext) -> ProxmoxNames:
    """The enricher with its real I/O (proxmoxer in a worker thread)."""
    if not ctx.proxmox.host:
        raise StageDisabled("no proxmox.host")
    from ._io import ProxmoxClient  # proxmoxer and requests: only with a Proxmox host

    return ProxmoxNames(config, fetch_guests=ProxmoxClient(ctx.proxmox).fetch_guests,
                        host=ctx.proxmox.host)
