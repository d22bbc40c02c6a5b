"""SSDP / UPnP producer: what UPnP devices say they are.

A streaming producer. Every ``search_secs`` it sends an SSDP M-SEARCH
(``ssdp:all``) by multicast on the attached segments and it listens for the
devices' NOTIFY announcements. For each device description a device points to
(``LOCATION``) it fetches the XML (httpx; parsed with defusedxml) — only when
the URL is on the very address that sent the message and that address passes
the scope check, at most once per ``refresh_secs`` per URL — and publishes
``HostAnnotated(source="ssdp", ip, hostname=<friendlyName>, model=<modelName
modelNumber>, manufacturer, advertised=[the device types, embedded ones
too])`` whenever what an address says changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

import msgspec

from lanscope.net.interfaces import InterfaceList, segment_addresses
from lanscope.net.scope import Guard
from lanscope.runtime.stage import StageContext
from lanscope.settings import PositiveFloat, PositiveInt
from schemas import Advertised, Event, HostAnnotated, host_key

from .upnp import SEARCH, Description, fetchable, parse_description, parse_message

SOURCE = "ssdp"
log = logging.getLogger(__name__)


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """producers.ssdp in config.yaml (documented in config.sample.yaml)."""

    enabled: bool = True
    interfaces: list[str] = []           # empty: every up Ethernet-like interface on a private network
    search_secs: PositiveFloat = 300.0   # an M-SEARCH this often (devices also announce themselves)
    refresh_secs: PositiveFloat = 3600.0  # a description is fetched again after this long
    fetch_timeout_ms: PositiveInt = 3000
    max_description_bytes: PositiveInt = 262144
    fetches: PositiveInt = 8             # descriptions fetched at once
    restart_secs: PositiveFloat = 30.0   # after a failure, listen again after this


class SsdpSocket(Protocol):
    async def start(self) -> None: ...

    def search(self, message: bytes) -> None: ...

    async def next(self) -> tuple[bytes, str]: ...

    def close(self) -> None: ...


OpenSsdp = Callable[[list[str]], SsdpSocket]
Fetch = Callable[..., Awaitable[bytes]]           # (url, *, timeout_s, max_bytes)


class Ssdp:
    """Producer (streaming): UPnP devices' names, models, makers and device types."""

    def __init__(self, config: Config, *, open_ssdp: OpenSsdp, fetch: Fetch, guard: Guard,
                 interfaces: InterfaceList, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.restart_secs = config.restart_secs
        self._open = open_ssdp
        self._fetch = fetch
        self._guard = guard
        self._interfaces = interfaces
        self._clock = clock
        self._monotonic = monotonic
        self._fetched_at: dict[str, float] = {}                     # url -> when
        self._described: dict[str, dict[str, Description]] = {}    # ip -> url -> description
        self._said: dict[str, HostAnnotated] = {}

    async def addresses(self) -> list[str]:
        return segment_addresses(await self._interfaces(), self.config.interfaces,
                                 key="producers.ssdp.interfaces")

    async def listen(self) -> AsyncIterator[list[Event]]:
        addresses = await self.addresses()
        sock = self._open(addresses)
        await sock.start()
        log.info("ssdp: searching on %s", ", ".join(addresses))
        out: asyncio.Queue[list[Event]] = asyncio.Queue()
        fetching: set[asyncio.Task[None]] = set()
        limit = asyncio.Semaphore(self.config.fetches)

        async def search() -> None:
            while True:
                sock.search(SEARCH)
                await asyncio.sleep(0.5)     # UDP: a second copy, as the UPnP spec suggests
                sock.search(SEARCH)
                await asyncio.sleep(self.config.search_secs)

        async def receive() -> None:
            while True:
                data, sender = await sock.next()
                url = self.to_fetch(data, sender)
                if url is not None:
                    task = asyncio.create_task(self._described_by(url, sender, limit, out))
                    fetching.add(task)
                    task.add_done_callback(fetching.discard)

        helpers = [asyncio.create_task(search()), asyncio.create_task(receive())]
        try:
            while True:
                batch = asyncio.ensure_future(out.get())
                done, _ = await asyncio.wait([batch, *helpers], return_when=asyncio.FIRST_COMPLETED)
                if batch not in done:           # a helper failed: say why (the runtime restarts us)
                    batch.cancel()
                    for helper in helpers:
                        if helper.done():
                            helper.result()
                yield batch.result()
        finally:
            for task in [*helpers, *fetching]:
                task.cancel()
            for task in [*helpers, *fetching]:
                with contextlib.suppress(BaseException):
                    await task
            sock.close()

    def to_fetch(self, data: bytes, sender: str) -> str | None:
        """The description URL a datagram points to, when it is due and may be fetched."""
        message = parse_message(data)
        if message is None or message.kind == "byebye" or not message.location:
            return None
        url = message.location
        last = self._fetched_at.get(url)
        now = self._monotonic()
        if last is not None and now - last < self.config.refresh_secs:
            return None
        why = fetchable(url, sender) or self._guard.refusal(sender)
        self._fetched_at[url] = now        # refused ones too: not asked again at every NOTIFY
        if why is not None:
            log.debug("ssdp: not fetching %s: %s", url, why)
            return None
        return url

    async def _described_by(self, url: str, sender: str, limit: asyncio.Semaphore,
                            out: asyncio.Queue[list[Event]]) -> None:
        async with limit:
            try:
                body = await self._fetch(url, timeout_s=self.config.fetch_timeout_ms / 1000,
                                         max_bytes=self.config.max_description_bytes)
                description = parse_description(body)
            except Exception as exc:       # an unreachable or hostile device: skip it
                log.info("ssdp: %s: %s: %s", url, type(exc).__name__, str(exc)[:200])
                return
        events = self.describe(sender, url, description)
        if events:
            out.put_nowait(events)

    def describe(self, ip: str, url: str, description: Description) -> list[Event]:
        """What ``ip`` says now, with this description: an annotation when it changed."""
        described = self._described.setdefault(ip, {})
        described[url] = description
        ordered = [described[u] for u in sorted(described)]

        def first(name: str) -> str | None:
            return next((v for d in ordered if (v := getattr(d, name))), None)

        types = sorted({t for d in ordered for t in d.device_types})
        event = HostAnnotated(host_key=host_key(None, ip), observed_at=self._clock(), source=SOURCE, ip=ip,
                              hostname=first("friendly_name"), model=first("model"),
                              manufacturer=first("manufacturer"),
                              advertised=[Advertised(type=t) for t in types])
        said = self._said.get(ip)
        if said is not None and msgspec.structs.replace(event, observed_at=said.observed_at) == said:
            return []
        self._said[ip] = event
        return [event]


def build(config: Config, ctx: StageContext) -> Ssdp:
    """Searching on the configured (else the attached private) interfaces; descriptions
    fetched only from addresses in scope."""
    from lanscope.net.interfaces import interfaces_async

    from ._io import fetch, open_ssdp

    return Ssdp(config, open_ssdp=open_ssdp, fetch=fetch, guard=ctx.scope_guard(),
                interfaces=interfaces_async)
