"""NetBIOS enricher: the NetBIOS name and workgroup of every IPv4 host that answers NBSTAT.

For each live IPv4 sighting it asks the address for its node status (one UDP
packet to port 137, lanscope.net.netbios) — once per ``refresh_secs`` when it
answered, once per ``negative_secs`` when it did not — and emits
``HostAnnotated(source="netbios", hostname=<computer name>, workgroup)``.
Every question goes through the scope check first (an event is not a licence
to send): an address out of scope is skipped. Windows and Samba (nmbd) answer;
most other devices stay silent.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import msgspec

from enrichers._asking import Recently, address_to_ask
from lanscope.net.netbios import NodeStatus
from lanscope.net.scope import Guard
from lanscope.runtime.stage import StageContext
from lanscope.settings import NonNegativeFloat, NonNegativeInt, PositiveInt
from schemas import Event, HostAnnotated, HostSeen, host_key

SOURCE = "netbios"

NodeStatusQuery = Callable[..., Awaitable[NodeStatus | None]]   # (ip, *, timeout_s, retries)


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """enrichers.netbios in config.yaml (documented in config.sample.yaml)."""

    enabled: bool = True
    timeout_ms: PositiveInt = 800              # wait this long for an answer ...
    retries: NonNegativeInt = 1                # ... and ask this many more times
    refresh_secs: NonNegativeFloat = 3600.0    # an address that answered is asked again after this
    negative_secs: NonNegativeFloat = 900.0    # one that did not, after this
    max_remembered: PositiveInt = 100_000      # addresses whose last question is remembered
    concurrency: PositiveInt = 32              # questions in flight per process


class NetBios:
    """Enricher: NBSTAT names of the hosts seen."""

    def __init__(self, config: Config, *, query: NodeStatusQuery, guard: Guard,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._query = query
        self._guard = guard
        self._clock = clock
        self._asked = Recently(config.refresh_secs, config.negative_secs, config.max_remembered, monotonic)

    async def handle(self, event: Event) -> list[Event]:
        ip = address_to_ask(event, self._asked, self._guard, ipv6=False, stage=SOURCE)
        if ip is None:
            return []
        status = await self._query(ip, timeout_s=self.config.timeout_ms / 1000, retries=self.config.retries)
        self._asked.answered(ip, status is not None)
        if status is None or not (status.computer or status.workgroup):
            return []
        mac = event.mac if isinstance(event, HostSeen) else None
        return [HostAnnotated(host_key=host_key(mac, ip), observed_at=self._clock(), source=SOURCE,
                              ip=ip, mac=mac, hostname=status.computer, workgroup=status.workgroup)]


def build(config: Config, ctx: StageContext) -> NetBios:
    """NBSTAT over UDP, every address through the scope check."""
    from lanscope.net.netbios import node_status

    return NetBios(config, query=node_status, guard=ctx.scope_guard())
