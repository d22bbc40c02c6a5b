"""The mDNS producer's one I/O primitive: python-zeroconf browsing every service type.

A browser on ``_services._dns-sd._udp.local.`` learns the service types
announced on the segment; each type gets a browser of its own. Their changes
(added, updated, removed) are queued for the stage, which resolves each
instance (SRV, TXT, A records; usually already in zeroconf's cache from the
announcement). Multicast only, on the given interface addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

META_TYPE = "_services._dns-sd._udp.local."
_STATES = {ServiceStateChange.Added: "added", ServiceStateChange.Updated: "updated",
           ServiceStateChange.Removed: "removed"}


@dataclass(frozen=True)
class Change:
    type: str              # "_ipp._tcp.local."
    name: str              # "Lab LaserJet._ipp._tcp.local."
    state: str             # added | updated | removed


@dataclass(frozen=True)
class Resolved:
    server: str | None     # "printer.local."
    addresses: tuple[str, ...]
    port: int | None
    properties: dict[bytes, bytes | None]


class Browser:
    """Every mDNS service on some interfaces, as a queue of changes."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self._changes: asyncio.Queue[Change] = asyncio.Queue(10000)
        self._zc: AsyncZeroconf | None = None
        self._browsers: dict[str, AsyncServiceBrowser] = {}

    async def start(self) -> None:
        self._zc = AsyncZeroconf(interfaces=self.addresses, ip_version=IPVersion.V4Only)
        self._browsers[META_TYPE] = AsyncServiceBrowser(self._zc.zeroconf, META_TYPE,
                                                        handlers=[self._on_type])

    def _on_type(self, zeroconf: Zeroconf, service_type: str, name: str,
                 state_change: ServiceStateChange) -> None:
        # The meta browser's "instances" are service types ("_ipp._tcp.local.").
        if state_change is ServiceStateChange.Added and name not in self._browsers and self._zc:
            self._browsers[name] = AsyncServiceBrowser(self._zc.zeroconf, name, handlers=[self._on_service])

    def _on_service(self, zeroconf: Zeroconf, service_type: str, name: str,
                    state_change: ServiceStateChange) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._changes.put_nowait(Change(service_type, name, _STATES[state_change]))

    async def next(self) -> Change:
        return await self._changes.get()

    async def resolve(self, change: Change, timeout_ms: int) -> Resolved | None:
        assert self._zc is not None
        info = AsyncServiceInfo(change.type, change.name)
        if not await info.async_request(self._zc.zeroconf, timeout_ms):
            return None
        properties: dict[bytes, bytes | None] = dict(info.properties or {})
        return Resolved(info.server, tuple(info.parsed_addresses(IPVersion.V4Only)), info.port, properties)

    async def close(self) -> None:
        browsers, self._browsers = list(self._browsers.values()), {}
        for browser in browsers:
            with contextlib.suppress(Exception):
                await browser.async_cancel()
        if self._zc is not None:
            await self._zc.async_close()
            self._zc = None


def open_browser(addresses: list[str]) -> Any:
    return Browser(addresses)
