"""Watching the pipeline from the side: what the dashboard asks of NATS.

Read-only views of JetStream (consumer lag, dead letters, each producer's last
sweep) and a follower of the CHANGES stream. Kept here, beside the bus, so the
dashboard's package never talks to NATS itself; it uses only Bus's public
connection (``bus.nc``, ``bus.js``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import msgspec
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from lanscope.runtime.bus import Bus
from schemas import AnyEvent, SweepCompleted, decode
from schemas import subjects as subj

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConsumerLag:
    stream: str
    name: str
    pending: int          # stored, not yet delivered: the lag
    ack_pending: int      # delivered, not yet acknowledged (in flight)
    redelivered: int
    waiting: int          # pull requests waiting: > 0 means a stage is reading


@dataclass(frozen=True)
class StreamUse:
    name: str
    messages: int
    bytes: int


@dataclass(frozen=True)
class SiteCopy:
    """How far a hub's stream has copied a site's sensor stream (a source across a leaf node)."""

    stream: str
    site: str
    lag: int                # messages the sensor holds that the hub has not copied yet
    active_secs: float | None   # since the copy last heard from the sensor; None: never
    error: str | None


@dataclass
class PipelineHealth:
    streams: list[StreamUse] = field(default_factory=list)
    consumers: list[ConsumerLag] = field(default_factory=list)
    dead_letters: dict[str, int] = field(default_factory=dict)   # stage -> messages in its DLQ
    sites: list[SiteCopy] = field(default_factory=list)          # a hub: its sensors' streams


@dataclass(frozen=True)
class LastSweep:
    source: str
    at: datetime
    hosts_found: int
    duration_ms: float
    targets: tuple[str, ...]


async def pipeline_health(bus: Bus) -> PipelineHealth:
    """Every lanscope stream, every consumer's lag, and dead letters per stage."""
    health = PipelineHealth()
    for spec in bus.layout.streams:
        try:
            info = await bus.js.stream_info(spec.name)
        except Exception as exc:      # not provisioned yet
            log.debug("stream %s: %s", spec.name, type(exc).__name__)
            continue
        health.streams.append(StreamUse(spec.name, info.state.messages, info.state.bytes))
        for source in info.sources or ():
            site = subj.site_of_stream(source.name or "")
            if site is not None:
                # nats-py reports `active` in nanoseconds (-1: never)
                active = None if source.active is None or source.active < 0 else source.active / 1e9
                error = source.error.get("description") if isinstance(source.error, dict) else None
                health.sites.append(SiteCopy(spec.name, site, source.lag or 0, active, error))
        for consumer in await bus.js.consumers_info(spec.name):
            name = consumer.config.durable_name
            if not name:
                continue              # ordered/ephemeral followers (watch, this dashboard)
            health.consumers.append(ConsumerLag(
                spec.name, name, consumer.num_pending or 0, consumer.num_ack_pending or 0,
                consumer.num_redelivered or 0, consumer.num_waiting or 0))
    with contextlib.suppress(Exception):
        info = await bus.js.stream_info(subj.DEAD_LETTERS.name, subjects_filter=">")
        # lanscope.dlq.<stage>, or lanscope.<site>.dlq.<stage> (a sensor's stage)
        health.dead_letters = {_dlq_name(s): n for s, n in sorted((info.state.subjects or {}).items())}
    return health


async def last_sweeps(bus: Bus) -> list[LastSweep]:
    """Each producer's latest ``sweep_completed`` (from the FACTS stream)."""
    try:
        info = await bus.js.stream_info(subj.FACTS.name, subjects_filter=">")
    except Exception:
        return []
    sweeps: list[LastSweep] = []
    for subject in sorted(s for s in info.state.subjects or {}
                          if any(subj.matches(p, s) for p in subj.everywhere(subj.SWEEP_COMPLETED))):
        try:
            raw = await bus.js.get_last_msg(subj.FACTS.name, subject)
            event = decode(raw.data or b"")
        except Exception as exc:
            log.debug("last sweep on %s: %s", subject, type(exc).__name__)
            continue
        if isinstance(event, SweepCompleted):
            sweeps.append(LastSweep(event.source, event.observed_at, event.hosts_found,
                                    event.duration_ms, tuple(event.targets)))
    return sweeps


def _dlq_name(subject: str) -> str:
    """``stage``, or ``stage@site`` for a sensor's stage (lanscope.<site>.dlq.<stage>)."""
    site = subj.site_of_subject(subject)
    stage = subject.rsplit(".", 1)[1]
    return f"{stage}@{site}" if site else stage


class Follower:
    """An ordered consumer on ``subjects`` of one stream, from ``backlog`` messages back.

    Ephemeral: nothing is acked and nothing stays on the server after close().
    Undecodable messages are logged and skipped."""

    def __init__(self, bus: Bus, stream: str, subjects: Sequence[str],
                 on_event: Callable[[AnyEvent, str], Awaitable[None]], *, backlog: int = 0) -> None:
        self.bus = bus
        self.stream = stream
        self.subjects = list(subjects)
        self.on_event = on_event
        self.backlog = backlog
        self._sub: object | None = None

    async def start(self) -> None:
        config = ConsumerConfig(filter_subjects=self.subjects, deliver_policy=DeliverPolicy.NEW)
        if self.backlog:
            info = await self.bus.js.stream_info(self.stream)
            last, first = info.state.last_seq or 0, info.state.first_seq or 0
            if last:
                config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
                config.opt_start_seq = max(first, last - self.backlog + 1, 1)
        self._sub = await self.bus.js.subscribe(self.subjects[0], stream=self.stream, cb=self._on_msg,
                                                ordered_consumer=True, config=config)

    async def _on_msg(self, msg: Msg) -> None:
        try:
            event = decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("undecodable event on %s: %s", msg.subject, exc)
            return
        try:
            await self.on_event(event, msg.subject)
        except Exception:
            log.exception("event handler failed for %s", msg.subject)

    async def close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()  # type: ignore[attr-defined]
