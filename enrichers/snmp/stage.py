"""SNMP enricher: what a device's SNMP agent says it is, where a credential is configured.

For each live sighting in scope it asks the address's agent (UDP 161; an SNMPv3
user or a v2c community from config) for the system group — sysName,
sysDescr, sysObjectID, sysServices — its interfaces (IF-MIB) and its LLDP
neighbours (LLDP-MIB lldpRemTable), once per ``refresh_secs`` after an answer,
once per ``negative_secs`` after silence, and emits ``HostAnnotated(
source="snmp", hostname=<sysName>, snmp=SnmpSystem(...))``. No credential
configured: the stage does not run. The credential never appears in events,
logs or errors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from enrichers._asking import Recently, address_to_ask
from lanscope.net.scope import Guard
from lanscope.runtime.stage import StageContext, StageDisabled
from lanscope.settings import NonNegativeFloat, NonNegativeInt, PositiveInt, Problems, Secret
from schemas import Event, HostAnnotated, HostSeen, host_key

from .mib import system_of

SOURCE = "snmp"
log = logging.getLogger(__name__)

Ask = Callable[..., Awaitable[dict[str, Any] | None]]    # (ip, *, timeout_s, retries, max_rows)


class V3User(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """An SNMPv3 user (USM): no auth_key is noAuthNoPriv, no priv_key authNoPriv."""

    user: str = ""
    auth_protocol: Literal["md5", "sha", "sha256", "sha512"] = "sha"
    auth_key: Secret | None = None
    priv_protocol: Literal["des", "aes", "aes256"] = "aes"
    priv_key: Secret | None = None

    def check(self) -> Problems:
        if not self.user:
            yield "user", "required: the SNMPv3 user name"
        if self.priv_key and not self.auth_key:
            yield "priv_key", "privacy needs authentication: set auth_key too"


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """enrichers.snmp in config.yaml (documented in config.sample.yaml)."""

    enabled: bool = True
    community: Secret | None = None      # an SNMPv2c community (or community_file); none and no v3: off
    v3: V3User | None = None             # an SNMPv3 user, asked instead of the community
    timeout_ms: PositiveInt = 1000       # wait this long for an answer ...
    retries: NonNegativeInt = 1          # ... and ask this many more times
    refresh_secs: NonNegativeFloat = 3600.0   # an agent that answered is asked again after this
    negative_secs: NonNegativeFloat = 900.0   # an address that did not, after this
    max_rows: PositiveInt = 64           # interfaces and LLDP neighbours kept per device
    max_remembered: PositiveInt = 100_000
    concurrency: PositiveInt = 16        # agents asked at once per process


class Snmp:
    """Enricher: sysName, sysDescr, sysObjectID, interfaces and LLDP neighbours."""

    def __init__(self, config: Config, *, ask: Ask, guard: Guard,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._ask = ask
        self._guard = guard
        self._clock = clock
        self._asked = Recently(config.refresh_secs, config.negative_secs, config.max_remembered, monotonic)

    async def handle(self, event: Event) -> list[Event]:
        ip = address_to_ask(event, self._asked, self._guard, ipv6=True, stage=SOURCE)
        if ip is None:
            return []
        try:
            values = await self._ask(ip, timeout_s=self.config.timeout_ms / 1000, retries=self.config.retries,
                                     max_rows=self.config.max_rows)
        except Exception as exc:    # a malformed answer: this agent, not the stage
            log.info("snmp: %s: %s", ip, type(exc).__name__)
            values = None
        self._asked.answered(ip, values is not None)
        if not values:
            return []
        system = system_of(values, max_rows=self.config.max_rows)
        mac = event.mac if isinstance(event, HostSeen) else None
        return [HostAnnotated(host_key=host_key(mac, ip), observed_at=self._clock(), source=SOURCE,
                              ip=ip, mac=mac, hostname=system.sys_name, snmp=system)]


def build(config: Config, ctx: StageContext) -> Snmp:
    """Asking agents with the configured credential; every address through the scope check."""
    if not config.community and config.v3 is None:
        raise StageDisabled("no SNMP credential: set enrichers.snmp.community (or community_file) or v3")
    from ._io import Agent

    if config.v3 is not None:
        v3 = config.v3
        agent = Agent(user=v3.user, auth_protocol=v3.auth_protocol, auth_key=v3.auth_key,
                      priv_protocol=v3.priv_protocol, priv_key=v3.priv_key)
    else:
        agent = Agent(community=config.community)
    return Snmp(config, ask=agent.ask, guard=ctx.scope_guard())
