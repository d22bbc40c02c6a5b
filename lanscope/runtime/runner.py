"""Binds stages to the bus: producers on a schedule, enrichers and sinks on their feeds.

``runner.add(spec, stage)`` for each stage of the process, then ``await
runner.run()`` until ``stop()`` (SIGTERM/SIGINT) or, with ``once``, until every
producer swept once and every consumer is idle. The delivery contract is
lanscope.runtime.delivery's; how enrichers and sinks receive is
lanscope.runtime.consume's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from lanscope.runtime.bus import Bus
from lanscope.runtime.consume import ConsumerRunner, EnricherRunner, FeedRunner, SinkRunner
from lanscope.runtime.delivery import Counters, RunnerOptions
from lanscope.runtime.sinkbatches import SinkBatches
from lanscope.runtime.stage import Listener
from lanscope.runtime.stagerun import ListenerRunner, ProducerRunner, StageRunner
from lanscope.runtime.topology import Feed, Kind, StageSpec, own_feeds, sink_feeds

log = logging.getLogger(__name__)

__all__ = ["Counters", "Runner", "RunnerOptions"]


@dataclass
class _Entry:
    spec: StageSpec
    runner: StageRunner
    task: asyncio.Task[None] | None = None


@dataclass
class Runner:
    """Runs stages until stop(): ``runner.add(spec, stage)``, then ``await runner.run()``."""

    bus: Bus
    options: RunnerOptions = field(default_factory=RunnerOptions)
    on_stopped: Callable[[], Awaitable[None]] | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _entries: list[_Entry] = field(default_factory=list)
    _started: bool = False

    def add(self, spec: StageSpec, stage: Any, *, flush_ms: int | None = None) -> StageRunner:
        runner: StageRunner
        args = (spec, stage, self.bus, self.options, self.stopping)
        if spec.kind is Kind.PRODUCER:
            runner = ListenerRunner(*args) if isinstance(stage, Listener) else ProducerRunner(*args)
        elif spec.kind is Kind.ENRICHER:
            runner = EnricherRunner(*args)
        else:
            runner = SinkRunner(*args, flush_ms=flush_ms)
        self._entries.append(_Entry(spec, runner))
        return runner

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("stopping: no new fetches; in-flight work has %gs", self.options.grace_secs)
            self.stopping.set()

    def counters(self) -> dict[str, Counters]:
        return {e.spec.name: e.runner.counters for e in self._entries}

    async def start(self) -> None:
        """Open every stage (a sink's store, the query subscription); on a failure the ones
        opened are closed again and it is raised. ``run()`` starts them if this was not called."""
        if self._started:
            return
        self._started = True
        opened: list[_Entry] = []
        try:
            for entry in self._entries:
                await entry.runner.start()
                opened.append(entry)
        except BaseException:
            for entry in reversed(opened):
                with contextlib.suppress(Exception):
                    await entry.runner.stop_serving()
                    await entry.runner.finish()
            raise

    async def run(self) -> None:
        feeds = self._feeds()
        await self.start()
        for feed in feeds:
            feed.task = asyncio.create_task(feed.run(), name=f"feed:{feed.feed.stream}/{feed.feed.spec.name}")
        for entry in self._entries:
            entry.task = asyncio.create_task(entry.runner.run(), name=f"stage:{entry.spec.name}")
        helpers = [asyncio.create_task(self._report())]
        if self.options.once:
            helpers.append(asyncio.create_task(self._stop_when_idle()))
        stages = [e.task for e in self._entries if e.task is not None]
        stages += [f.task for f in feeds if f.task is not None]
        everything = asyncio.gather(*stages, return_exceptions=True)
        stop_requested = asyncio.create_task(self.stopping.wait())
        try:
            await asyncio.wait([everything, stop_requested],  # type: ignore[type-var]
                               return_when=asyncio.FIRST_COMPLETED)
            if not everything.done():
                _, late = await asyncio.wait(stages, timeout=self.options.grace_secs + 1.0)
                for task in late:
                    task.cancel()
            results = await everything
            for entry, result in zip(self._entries, results[:len(self._entries)], strict=True):
                if isinstance(result, asyncio.CancelledError):
                    entry.runner.log.warning("stage did not finish within the grace period")
                elif isinstance(result, BaseException):
                    entry.runner.log.error("stage stopped: %s: %s", type(result).__name__, result,
                                           exc_info=result)
        finally:
            stop_requested.cancel()
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            for entry in self._entries:
                await entry.runner.stop_serving()
                entry.runner.log.info("final counters: %s", entry.runner.counters.line())

    def _feeds(self) -> list[FeedRunner]:
        """Each enricher's own feed per stream it reads; one feed per stream the sinks read,
        shared by the sinks that read it (its consumer is provisioned by the caller, as
        every other: bus.provision(feeds=sink_feeds(...)))."""
        consumers = {e.spec.name: e.runner for e in self._entries if isinstance(e.runner, ConsumerRunner)}
        feeds: list[FeedRunner] = []

        def add(plan: Feed, dispatch: Any, members: list[ConsumerRunner]) -> None:
            feed = FeedRunner(plan, dispatch, self.bus, self.options, self.stopping)
            for member in members:
                member.feeds.append(feed)
            feeds.append(feed)

        streams = self.bus.layout.streams
        for runner in consumers.values():
            if isinstance(runner, EnricherRunner):
                for plan in own_feeds(runner.spec, streams):
                    add(plan, runner, [runner])
        sinks = {name: r for name, r in consumers.items() if isinstance(r, SinkRunner)}
        for plan in sink_feeds((runner.spec for runner in sinks.values()), streams):
            if plan.shared:
                log.info("sinks %s read %s through one consumer, %s", ", ".join(plan.members),
                         plan.stream, plan.spec.durable)
            members = [sinks[name] for name in plan.members]
            add(plan, SinkBatches(plan, members, self.bus, self.options), list(members))
        return feeds

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(self.options.stats_every_secs)
            for entry in self._entries:
                entry.runner.log.info("%s", entry.runner.counters.line())

    async def _stop_when_idle(self) -> None:
        """--once: stop after every producer swept and every consumer is idle twice in a row."""
        quiet = 0
        while not self.stopping.is_set():
            await asyncio.sleep(0.3)
            try:
                idle = all([await e.runner.idle() for e in self._entries])
            except Exception:
                idle = False
            quiet = quiet + 1 if idle else 0
            if quiet >= 2:
                self.stop()
