"""The proxmox_guests producer: known Proxmox VMs and containers reported as sightings.

Each guest NIC (a MAC from the guest's config) becomes a HostSeen with
``source="proxmox"``, the guest attached, its name as the host-name hint, and
``alive`` only while the guest is running. A NIC with known addresses yields
one sighting per address; a guest with addresses but no MAC yields one per
address. Proxmox being unreachable returns no sightings (and is retried with
backoff by the shared GuestCache), never an exception.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec

from enrichers.proxmox_names.inventory import Guest
from enrichers.proxmox_names.stage import FetchGuests, GuestCache
from lanscope.runtime.stage import StageContext, StageDisabled
from lanscope.settings import PositiveFloat
from schemas import Event, HostSeen
from schemas.types import host_key

STAGE = "proxmox_guests"


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """producers.proxmox_guests in config.yaml (documented in config.sample.yaml); the
    cluster is the shared `proxmox:` section."""

    enabled: bool = True
    interval_secs: PositiveFloat = 600.0
    backoff_initial_secs: PositiveFloat = 30.0  # first wait after Proxmox could not be read
    backoff_max_secs: PositiveFloat = 900.0


class ProxmoxGuests:
    """Producer: ``await stage.sweep()`` every ``interval_secs``."""

    def __init__(self, config: Config, *, fetch_guests: FetchGuests, host: str = "proxmox",
                 clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config = config
        self.interval_secs = config.interval_secs
        self.now = now
        # refresh_secs=0: every sweep asks Proxmox again (unless backing off after a failure).
        self.cache = GuestCache(fetch_guests, refresh_secs=0, clock=clock, host=host, stage=STAGE,
                                backoff_initial_secs=config.backoff_initial_secs,
                                backoff_max_secs=config.backoff_max_secs)

    async def sweep(self) -> list[Event]:
        index = await self.cache.get()
        if index is None or self.cache.last_error:
            return []          # no fresh data: a stale guest list is not evidence of anything
        observed = self.now()
        events: list[Event] = []
        for guest in index.guests:
            events.extend(sightings(guest, observed))
        return events


def sightings(found: Guest, observed: datetime) -> list[HostSeen]:
    """One guest's HostSeen events: per (MAC, address), per MAC, or per bare address."""
    guest = found.guest
    alive = guest.status == "running"
    evidence = f"proxmox:{guest.status or 'unknown'}"[:255]

    def seen(mac: str | None, ip: str | None) -> HostSeen:
        return HostSeen(host_key=host_key(mac, ip), observed_at=observed, source="proxmox", ip=ip,
                        mac=mac, alive=alive, evidence=evidence, hostname=guest.name, guest=guest)

    events: list[HostSeen] = []
    for nic in found.nics:
        addresses: list[str | None] = list(nic.ips) or [None]
        events.extend(seen(nic.mac, ip) for ip in addresses)
    if not found.nics:
        events.extend(seen(None, ip) for ip in found.extra_ips)
    return events


def build(config: Config, ctx: StageContext) -> ProxmoxGuests:
    """The producer with its real I/O (proxmoxer in a worker thread)."""
    if not ctx.proxmox.host:
        raise StageDisabled("no proxmox.host")
    from enrichers.proxmox_names._io import ProxmoxClient  # proxmoxer: only with a host

    return ProxmoxGuests(config, fetch_guests=ProxmoxClient(ctx.proxmox).fetch_guests,
                         host=ctx.proxmox.host)
