"""mDNS / DNS-SD producer: what devices announce about themselves on the attached segments.

A streaming producer: it browses every service type announced by multicast DNS
(python-zeroconf, ``_io.py``), resolves each instance and keeps, per IPv4
address, the services it announces, its ``.local`` name and the model and
maker its TXT records tell (``ty``, ``usb_MDL``, ``md``, ``model``, ``am``,
``product``; ``usb_MFG``, ``manufacturer``, ``vendor``). Whenever that view
of a host changes it publishes ``HostAnnotated(source="mdns", hostname,
advertised=[every service it announces now], model, manufacturer)``.

It only listens and asks by multicast, on the configured interfaces (default:
the attached segments): no unicast packet, so no scope check is needed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import msgspec

from lanscope.net.interfaces import InterfaceList, segment_addresses
from lanscope.runtime.stage import StageContext
from lanscope.settings import PositiveFloat, PositiveInt
from schemas import Advertised, Event, HostAnnotated, host_key

from ._io import Change, Resolved

SOURCE = "mdns"
_MAX_TEXT = 255
_MAX_SERVICES = 64
# TXT keys that name the model (first found wins) and the maker.
MODEL_KEYS = ("ty", "usb_MDL", "md", "model", "am", "product")
MAKER_KEYS = ("usb_MFG", "manufacturer", "vendor", "mfg")

log = logging.getLogger(__name__)


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """producers.mdns in config.yaml (documented in config.sample.yaml)."""

    enabled: bool = True
    interfaces: list[str] = []           # empty: every up Ethernet-like interface on a private network
    resolve_timeout_ms: PositiveInt = 3000   # wait this long for an instance's SRV/TXT/A records
    restart_secs: PositiveFloat = 30.0   # after a failure, listen again after this


class MdnsBrowser(Protocol):
    async def start(self) -> None: ...

    async def next(self) -> Change: ...

    async def resolve(self, change: Change, timeout_ms: int) -> Resolved | None: ...

    async def close(self) -> None: ...


OpenBrowser = Callable[[list[str]], MdnsBrowser]


def _text(raw: bytes | None) -> str | None:
    if not raw:
        return None
    text = raw.decode("utf-8", "replace").strip().strip("()").strip()
    return text[:_MAX_TEXT] or None


def describe_txt(properties: dict[bytes, bytes | None]) -> tuple[str | None, str | None]:
    """(model, maker) from an instance's TXT records."""
    lowered = {k.decode("utf-8", "replace").lower(): v for k, v in properties.items()}

    def first(keys: tuple[str, ...]) -> str | None:
        return next((t for k in keys if (t := _text(lowered.get(k.lower())))), None)

    return first(MODEL_KEYS), first(MAKER_KEYS)


def short_type(service_type: str) -> str:
    """"_ipp._tcp.local." -> "_ipp._tcp"."""
    return service_type.removesuffix(".").removesuffix(".local")


def instance_name(name: str, service_type: str) -> str:
    return name.removesuffix("." + service_type)[:_MAX_TEXT]


@dataclass(frozen=True)
class _Service:
    advertised: Advertised
    server: str | None
    model: str | None
    maker: str | None


@dataclass
class _Host:
    """What one address announces: its services (by instance) and what they say."""

    services: dict[str, _Service] = field(default_factory=dict)
    said: HostAnnotated | None = None     # the last annotation published (without its time)


class Mdns:
    """Producer (streaming): services, names and models announced over mDNS."""

    def __init__(self, config: Config, *, open_browser: OpenBrowser, interfaces: InterfaceList,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config = config
        self.restart_secs = config.restart_secs
        self._open = open_browser
        self._interfaces = interfaces
        self._clock = clock
        self._hosts: dict[str, _Host] = {}

    async def addresses(self) -> list[str]:
        return segment_addresses(await self._interfaces(), self.config.interfaces,
                                 key="producers.mdns.interfaces")

    async def listen(self) -> AsyncIterator[list[Event]]:
        addresses = await self.addresses()
        browser = self._open(addresses)
        await browser.start()
        log.info("mdns: browsing on %s", ", ".join(addresses))
        try:
            while True:
                change = await browser.next()
                resolved = None
                if change.state != "removed":
                    resolved = await browser.resolve(change, self.config.resolve_timeout_ms)
                    if resolved is None:
                        continue
                events = self.apply(change, resolved)
                if events:
                    yield events
        finally:
            await browser.close()

    def apply(self, change: Change, resolved: Resolved | None) -> list[Event]:
        """Fold one change into the per-address view; the annotations that changed."""
        touched: set[str] = set()
        if resolved is None:                  # removed: from every address that had it
            for ip, host in self._hosts.items():
                if host.services.pop(change.name, None) is not None:
                    touched.add(ip)
        else:
            model, maker = describe_txt(resolved.properties)
            server = resolved.server.removesuffix(".")[:_MAX_TEXT] if resolved.server else None
            advertised = Advertised(type=short_type(change.type),
                                    name=instance_name(change.name, change.type), port=resolved.port or None)
            for ip in resolved.addresses:
                host = self._hosts.setdefault(ip, _Host())
                if change.name in host.services or len(host.services) < _MAX_SERVICES:
                    host.services[change.name] = _Service(advertised, server, model, maker)
                    touched.add(ip)
        return [e for ip in sorted(touched) if (e := self._annotation(ip)) is not None]

    def _annotation(self, ip: str) -> HostAnnotated | None:
        host = self._hosts[ip]
        values = sorted(host.services.values(), key=lambda v: (v.advertised.type, v.advertised.name or ""))
        event = HostAnnotated(host_key=host_key(None, ip), observed_at=self._clock(), source=SOURCE, ip=ip,
                              hostname=next((v.server for v in values if v.server), None),
                              advertised=[v.advertised for v in values],
                              model=next((v.model for v in values if v.model), None),
                              manufacturer=next((v.maker for v in values if v.maker), None))
        same = msgspec.structs.replace(event, observed_at=host.said.observed_at) if host.said else None
        if same is not None and same == host.said:
            return None
        host.said = event
        if not host.services:
            del self._hosts[ip]
        return event


def build(config: Config, ctx: StageContext) -> Mdns:
    """Browsing on the configured (else the attached private) interfaces."""
    from lanscope.net.interfaces import interfaces_async

    from ._io import open_browser

    return Mdns(config, open_browser=open_browser, interfaces=interfaces_async)
