"""MAC vendor enricher: the IEEE OUI owner of every sighting's MAC, offline.

Emits HostAnnotated(source="oui", vendor, mac_randomized). A locally
administered MAC (second-lowest bit of the first octet set: phones' private
Wi-Fi addresses, VMs, containers) has no registered vendor and is flagged
``mac_randomized=True``. Events without a MAC, and multicast MACs, are
skipped. A MAC is announced once per ``reannounce_secs`` per process: the
host_state sink keeps the vendor, so repeating it on every sweep is noise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import msgspec

from lanscope.runtime.stage import StageContext
from lanscope.settings import NonNegativeFloat, PositiveInt
from schemas import Event, HostAnnotated, HostSeen, host_key, normalize_mac

VendorLookup = Callable[[str], Awaitable[str | None]]


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """enrichers.mac_vendor in config.yaml (documented in config.sample.yaml)."""

    enabled: bool = True
    reannounce_secs: NonNegativeFloat = 3600.0  # a MAC's vendor is announced again after this long
    max_remembered: PositiveInt = 100_000  # MACs whose last announcement is remembered
    concurrency: PositiveInt = 64        # sightings handled at once per process


def is_locally_administered(mac: str) -> bool:
    return bool(int(mac[:2], 16) & 0x02)


def is_multicast(mac: str) -> bool:
    return bool(int(mac[:2], 16) & 0x01)


class MacVendor:
    """Enricher: vendor and randomised-MAC flag for each MAC seen."""

    def __init__(self, config: Config, *, lookup: VendorLookup,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config = config
        self._lookup = lookup
        self._clock = clock
        self._announced: dict[str, tuple[datetime, str | None]] = {}

    async def vendor_of(self, mac: str) -> tuple[str | None, bool]:
        """(vendor, randomised) for one MAC."""
        mac = normalize_mac(mac)
        if is_locally_administered(mac):
            return None, True
        return await self._lookup(mac[:8]), False

    async def handle(self, event: Event) -> list[Event]:
        mac = getattr(event, "mac", None)
        if not isinstance(event, HostSeen) or not mac:
            return []
        try:
            mac = normalize_mac(mac)
        except ValueError:
            return []
        if is_multicast(mac):
            return []
        vendor, randomized = await self.vendor_of(mac)
        now = self._clock()
        last = self._announced.get(mac)
        if last is not None and last[1] == vendor \
                and (now - last[0]).total_seconds() < self.config.reannounce_secs:
            return []
        if len(self._announced) >= self.config.max_remembered:
            self._announced.clear()
        self._announced[mac] = (now, vendor)
        return [HostAnnotated(host_key=host_key(mac, event.ip), observed_at=now, source="oui",
                              ip=event.ip, mac=mac, vendor=vendor, mac_randomized=randomized)]


def build(config: Config, ctx: StageContext) -> MacVendor:
    from ._io import oui_vendor_async  # netaddr's OUI data: only when the stage is built

    return MacVendor(config, lookup=oui_vendor_async)
